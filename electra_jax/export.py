"""The discriminator alone: what an ELECTRA user keeps after pretraining.

The paper fine-tunes the discriminator and throws the generator away (Clark et al.
2020, section 2; the released checkpoints' `electra/` scope holds the discriminator
with the shared embeddings). Here that is the 'embeddings' and 'discriminator' subtrees
of an `ElectraModel`, which together are exactly the params of a plain
`common.encoder.Encoder(config.model)`:

  params = export.discriminator_params(state.params)
  hidden_BxLxH = encoder.Encoder(config.model).apply({'params': params}, ids_BxL)

`save_discriminator(workdir, out_dir)` writes the latest (or a given) checkpoint's
discriminator to `out_dir`: `params/` (orbax, {'encoder': ..., 'rtd_head': ...}),
`model_config.json` and, when the workdir has one, `tokenizer.model`.
`load_discriminator(out_dir)` reads them back.
"""

import json
import os
import shutil
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp

from common.errors import UserError

# Encoder parameters that live at the top of the ELECTRA tree (shared with the generator).
_SHARED = ('embeddings',)


def discriminator_params(params: Any) -> dict[str, Any]:
  """ElectraModel params -> the params of a plain `Encoder(config.model)` (no copy)."""
  return {**{k: params[k] for k in _SHARED}, **params['discriminator']}


def discriminator_head_params(params: Any) -> dict[str, Any]:
  """The replaced-token detector's params, for `model.ReplacedTokenHead(config.model)`."""
  return params['discriminator_head']


def _checkpoint_state_dir(workdir: str, step: int | None) -> tuple[str, int]:
  root = os.path.join(workdir, 'checkpoints')
  steps = []
  if os.path.isdir(root):
    steps = sorted(int(d) for d in os.listdir(root) if d.isdigit())
  if not steps:
    raise UserError(f'no checkpoints under {root}')
  if step is None:
    step = steps[-1]
  elif step not in steps:
    raise UserError(f'no checkpoint for step {step} under {root}; have {steps}')
  return os.path.join(root, str(step), 'state'), step


def _abstract_on_device(metadata_tree: Any) -> Any:
  """Saved array metadata -> ShapeDtypeStructs on the first local device."""
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  return jax.tree.map(
      lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), metadata_tree)


def restore_params(workdir: str, step: int | None = None) -> tuple[Any, int]:
  """The trained params of a training workdir's checkpoint (latest when step is None).

  Only the params are read (not the optimizer state), onto the first local device.
  """
  path, step = _checkpoint_state_dir(workdir, step)
  # PyTreeRestore can restore a subtree (partial_restore); StandardRestore cannot.
  checkpointer = ocp.PyTreeCheckpointer()
  target = {'params': _abstract_on_device(checkpointer.metadata(path).item_metadata.tree[
      'params'])}
  restored = checkpointer.restore(path, args=ocp.args.PyTreeRestore(
      item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target),
      partial_restore=True))
  checkpointer.close()
  return restored['params'], step


def save_discriminator(workdir: str, out_dir: str, *, step: int | None = None) -> str:
  """Writes the discriminator of a training workdir's checkpoint to `out_dir`.

  Args:
    workdir: a `launch.train` workdir of an ELECTRA run (has config.json, checkpoints/).
    out_dir: created; must not already hold an export.
    step: which checkpoint (default: the latest).

  Returns:
    out_dir (absolute).
  """
  out_dir = os.path.abspath(out_dir)
  if os.path.exists(os.path.join(out_dir, 'params')):
    raise UserError(f'{out_dir} already holds an export; choose another directory')
  params, step = restore_params(workdir, step)
  if 'discriminator' not in params:
    raise UserError(f'{workdir} is not an ELECTRA run: its model has no discriminator')
  with open(os.path.join(workdir, 'config.json')) as f:
    config = json.load(f)
  os.makedirs(out_dir, exist_ok=True)
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(os.path.join(out_dir, 'params'),
                    {'encoder': discriminator_params(params),
                     'rtd_head': discriminator_head_params(params)})
  checkpointer.wait_until_finished()
  checkpointer.close()
  with open(os.path.join(out_dir, 'model_config.json'), 'w') as f:
    json.dump({**config['model'], 'source_workdir': os.path.abspath(workdir),
               'source_step': step}, f, indent=2, sort_keys=True)
  tokenizer = os.path.join(workdir, 'tokenizer.model')
  if os.path.exists(tokenizer):
    shutil.copy(tokenizer, os.path.join(out_dir, 'tokenizer.model'))
  return out_dir


def load_discriminator(out_dir: str) -> tuple[ml_collections.ConfigDict, dict[str, Any]]:
  """Reads an export: (model config for `Encoder`, {'encoder': ..., 'rtd_head': ...})."""
  with open(os.path.join(out_dir, 'model_config.json')) as f:
    model_config = json.load(f)
  for key in ('source_workdir', 'source_step'):
    model_config.pop(key, None)
  path = os.path.abspath(os.path.join(out_dir, 'params'))
  checkpointer = ocp.StandardCheckpointer()
  params = checkpointer.restore(
      path, _abstract_on_device(checkpointer.metadata(path).item_metadata.tree))
  checkpointer.close()
  return ml_collections.ConfigDict(model_config), params
