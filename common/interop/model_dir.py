"""A model directory: parameters with the model config that built them, and a tokenizer.

What an HF import (`launch.convert --from=hf`) and an ELECTRA discriminator export
(electra_jax/export.py) write, what `train.init_from` starts a run from and what
`launch.convert --from=ours` exports:

  params/            orbax pytree (float32), a subset of the recipe's pretraining model's
                     params with the same names and nesting (e.g. MaskedLMModel's
                     'encoder', 'mlm_head', 'pooler', 'sentence_head'); layers stacked
                     ('layers', leading axis L) when model_config says scan_layers
  model_config.json  the `config.model` fields that built them (+ 'source_*' provenance)
  source.json        where they came from: {'from': 'hf' | 'workdir', 'objective': ...}
  tokenizer file(s)  as the tokenizer writer left them

Directories are written whole or not at all (`atomic_directory`): into a temporary
sibling that is renamed into place at the end, so a failed write leaves no partial
directory, and an existing non-empty destination is never touched.
"""

import contextlib
import dataclasses
import json
import os
import re
import shutil
import tempfile
from typing import Any, Iterator

import jax
import numpy as np
import orbax.checkpoint as ocp

from common.model import encoder as encoder_lib
from common.errors import UserError

PARAMS, MODEL_CONFIG, SOURCE = 'params', 'model_config.json', 'source.json'
# Model fields that change how a run computes, not what the parameters mean: they may
# differ between a model directory and the run it initialises.
_LAYER = re.compile(r'layer_\d+')
RUNTIME_FIELDS = ('dropout_rate', 'attention_dropout_rate', 'scan_layers',
                  'remat_policy', 'dtype', 'attention_impl', 'initializer_range')


def is_model_dir(path: str) -> bool:
  return (os.path.isdir(os.path.join(path, PARAMS)) and
          os.path.isfile(os.path.join(path, MODEL_CONFIG)))


def check_new_directory(dst: str) -> str:
  """UserError unless `dst` is absent or an empty directory; returns it absolute."""
  dst = os.path.abspath(dst)
  if os.path.exists(dst) and (not os.path.isdir(dst) or os.listdir(dst)):
    raise UserError(f'{dst} already exists and is not empty; choose a new directory')
  return dst


@contextlib.contextmanager
def atomic_directory(dst: str) -> Iterator[str]:
  """Yields a temporary directory that becomes `dst` when the block ends without error.

  Raises UserError, before anything is written, if `dst` exists and is not an empty
  directory. On an exception the temporary directory is removed and `dst` not created.
  """
  dst = check_new_directory(dst)
  parent = os.path.dirname(dst)
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(dir=parent, prefix=f'.{os.path.basename(dst)}.tmp-')
  try:
    yield tmp
    if os.path.isdir(dst):
      os.rmdir(dst)  # Empty (checked above); os.rename cannot replace it otherwise.
    os.rename(tmp, dst)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise


def _abstract_on_device(metadata_tree: Any) -> Any:
  """Saved array metadata -> ShapeDtypeStructs on the first local device."""
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  return jax.tree.map(
      lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), metadata_tree)


def write_json(path: str, record: dict) -> None:
  with open(path, 'w') as f:
    json.dump(record, f, indent=2, sort_keys=True)
    f.write('\n')


def read_json(path: str) -> dict:
  try:
    with open(path) as f:
      return json.load(f)
  except OSError as e:
    raise UserError(f'cannot read {path}: {e.strerror or e}') from e
  except ValueError as e:
    raise UserError(f'{path} is not valid JSON: {e}') from e


def write_contents(directory: str, params: Any, model_config: dict,
                   source: dict) -> None:
  """Writes params/, model_config.json and source.json into an existing directory."""
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(os.path.join(os.path.abspath(directory), PARAMS),
                    jax.tree.map(np.asarray, params))
  checkpointer.wait_until_finished()
  checkpointer.close()
  write_json(os.path.join(directory, MODEL_CONFIG), model_config)
  write_json(os.path.join(directory, SOURCE), source)


def read(path: str) -> tuple[dict, Any, dict]:
  """A model directory -> (model_config dict, params as numpy arrays, source dict).

  model_config keeps its 'source_*' provenance keys; `model_fields` drops them.
  """
  if not is_model_dir(path):
    raise UserError(f'{path} is not a model directory (needs {PARAMS}/ and {MODEL_CONFIG})')
  model_config = read_json(os.path.join(path, MODEL_CONFIG))
  source_path = os.path.join(path, SOURCE)
  source = read_json(source_path) if os.path.exists(source_path) else {}
  params_path = os.path.abspath(os.path.join(path, PARAMS))
  checkpointer = ocp.StandardCheckpointer()
  params = checkpointer.restore(
      params_path, _abstract_on_device(checkpointer.metadata(params_path).item_metadata.tree))
  checkpointer.close()
  return model_config, jax.tree.map(np.asarray, params), source


def model_fields(model_config: dict) -> dict:
  """model_config.json without its provenance keys: the `config.model` fields."""
  return {k: v for k, v in model_config.items() if not k.startswith('source_')}


def checkpoint_state_dir(workdir: str, step: int | None) -> tuple[str, int]:
  """The state directory of a workdir's checkpoint `step`, or of its newest one that
  passes verification (common/train/checkpoint.py) when `step` is None."""
  from common.train import checkpoint  # pylint: disable=g-import-not-at-top
  root = os.path.join(workdir, 'checkpoints')
  steps = checkpoint.steps_on_disk(root)
  if not steps:
    raise UserError(f'no checkpoints under {root}')
  if step is not None and step not in steps:
    raise UserError(f'no checkpoint for step {step} under {root}; have {sorted(steps)}')
  damaged = []
  for candidate in [step] if step is not None else steps:
    reason = checkpoint.verify(os.path.join(root, str(candidate)))
    if reason is None:
      return os.path.join(root, str(candidate), 'state'), candidate
    damaged.append(f'step {candidate}: {reason}')
  raise UserError(f'no usable checkpoint under {root}: {"; ".join(damaged)}')


def restore_params(workdir: str, step: int | None = None) -> tuple[Any, int]:
  """The trained params of a training workdir's checkpoint (latest when step is None).

  Only the params are read (not the optimizer state), onto the first local device.
  """
  path, step = checkpoint_state_dir(workdir, step)
  # PyTreeRestore can restore a subtree (partial_restore); StandardRestore cannot.
  checkpointer = ocp.PyTreeCheckpointer()
  target = {'params': _abstract_on_device(checkpointer.metadata(path).item_metadata.tree[
      'params'])}
  restored = checkpointer.restore(path, args=ocp.args.PyTreeRestore(
      item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target),
      partial_restore=True))
  checkpointer.close()
  return restored['params'], step


def set_layer_layout(params: Any, scanned: bool) -> Any:
  """Converts every encoder in `params` between the two layer layouts, exactly.

  scanned=True: 'layer_0' .. 'layer_{L-1}' subtrees become one 'layers' subtree whose
  leaves are stacked on a new leading axis (what `nn.scan` creates); scanned=False
  splits them again. Subtrees already in the asked layout are left as they are.
  """
  if not isinstance(params, dict):
    return params
  unrolled = sorted((int(k[len('layer_'):]), v) for k, v in params.items()
                    if _LAYER.fullmatch(k))
  out = {k: set_layer_layout(v, scanned) for k, v in params.items()
         if k != 'layers' and not _LAYER.fullmatch(k)}
  if 'layers' in params:
    if scanned:
      out['layers'] = params['layers']
    else:
      stacked = params['layers']
      n = jax.tree.leaves(stacked)[0].shape[0]
      for i in range(n):
        out[f'layer_{i}'] = jax.tree.map(lambda x, i=i: np.asarray(x)[i], stacked)
  if unrolled:
    if scanned:
      out['layers'] = jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]),
                                   *[v for _, v in unrolled])
    else:
      out.update({f'layer_{i}': v for i, v in unrolled})
  return out


def flatten(tree: Any) -> dict[str, Any]:
  """{'a': {'b': x}} -> {'a/b': x}."""
  flat = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    flat['/'.join(str(getattr(k, 'key', k)) for k in path)] = leaf
  return flat


def unflatten(flat: dict[str, Any]) -> dict[str, Any]:
  """{'a/b': x} -> {'a': {'b': x}}."""
  tree: dict[str, Any] = {}
  for name, leaf in flat.items():
    node = tree
    *scopes, last = name.split('/')
    for scope in scopes:
      node = node.setdefault(scope, {})
    node[last] = leaf
  return tree


def _resolved(fields: dict) -> dict:
  """Field values as they take effect: embedding_size 0 / None means hidden_size."""
  fields = dict(fields)
  if 'embedding_size' in fields and not fields['embedding_size']:
    fields['embedding_size'] = fields.get('hidden_size')
  return fields


def check_model_config(saved: dict, model_config: Any, where: str) -> None:
  """Raises UserError naming the first field that gives the parameters another meaning.

  Args:
    saved: model_config.json of a model directory (provenance keys are skipped).
    model_config: the run's `config.model`.
    where: the directory, for the message.
  """
  current = _resolved(model_config.to_dict() if hasattr(model_config, 'to_dict')
                      else dict(model_config))
  saved = _resolved(model_fields(saved))
  # The encoder's fields in their order (hidden_size before embedding_size, which
  # may be derived from it), then the rest.
  order = [f.name for f in dataclasses.fields(encoder_lib.EncoderSpec)]
  for key in sorted(saved, key=lambda k: (order.index(k) if k in order else len(order), k)):
    value = saved[key]
    if key in RUNTIME_FIELDS:
      continue
    if key not in current:
      raise UserError(f'{where}/{MODEL_CONFIG} sets model.{key}={value!r}, a field this '
                      "experiment's config does not have")
    if current[key] != value:
      raise UserError(f'{where}/{MODEL_CONFIG} has model.{key}={value!r} but the config '
                      f'has {current[key]!r}; set --config.model.{key}={value!r}')


def overlay(path: str, model_config: Any, params: Any,
            shardings: Any) -> tuple[Any, list[str], list[str]]:
  """Params of a fresh run with the model directory's values wherever it has them.

  Used by pretraining's `train.init_from` (common/train/pretraining.py). Every leaf
  the directory has must have the run's shape; leaves it lacks keep their fresh
  initialisation.

  Args:
    path: a model directory.
    model_config: the run's `config.model` (checked with `check_model_config`).
    params: the run's freshly initialised params (jax.Arrays).
    shardings: their shardings (same tree); loaded values are placed there.

  Returns:
    (params, names of subtrees kept fresh, names of the directory's unused subtrees).
  """
  saved_config, saved, _ = read(path)
  check_model_config(saved_config, model_config, path)
  saved = flatten(set_layer_layout(saved, model_config.get('scan_layers', True)))
  ours = set(flatten(params))
  params = lay_in(saved, params, shardings, path, 'the config')
  return (params, _scopes(ours - set(saved), ours),
          _scopes(set(saved) - ours, set(saved)))


def lay_in(saved: dict[str, np.ndarray], params: Any, shardings: Any, where: str,
           builder: str) -> Any:
  """`params` with the leaves `saved` ({flat name: value}) has, placed on their
  shardings; other leaves stay as they are. A shape that differs is a UserError naming
  `where` and the parameter (`builder` says what built the fresh one)."""
  ours = flatten(params)
  flat_shardings = flatten(shardings)
  for name, leaf in ours.items():
    if name in saved and tuple(saved[name].shape) != tuple(leaf.shape):
      raise UserError(f'{where}: parameter {name} has shape {tuple(saved[name].shape)} '
                      f'but {builder} builds {tuple(leaf.shape)}')
  merged = {name: jax.make_array_from_callback(
      leaf.shape, flat_shardings[name],
      lambda index, v=np.asarray(saved[name], leaf.dtype): v[index])
            if name in saved else leaf for name, leaf in ours.items()}
  return jax.tree.unflatten(jax.tree.structure(params), [merged[n] for n in ours])


def _scopes(names: set[str], every: set[str]) -> list[str]:
  """`names` summarised by the widest scopes all of whose leaves (of `every`) are in it.

  E.g. every 'pooler/...' and 'sentence_head/...' leaf -> ['pooler', 'sentence_head'].
  """
  out = set()
  for name in names:
    parts = name.split('/')
    for k in range(1, len(parts) + 1):
      prefix = '/'.join(parts[:k])
      if all(n in names for n in every if n == prefix or n.startswith(prefix + '/')):
        out.add(prefix)
        break
  return sorted(out)
