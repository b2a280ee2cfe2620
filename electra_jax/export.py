"""The discriminator alone: what an ELECTRA user keeps after pretraining.

The paper fine-tunes the discriminator and throws the generator away (Clark et al.
2020, section 2; the released checkpoints' `electra/` scope holds the discriminator
with the shared embeddings). Here that is the 'embeddings' and 'discriminator' subtrees
of an `ElectraModel`, which together are exactly the params of a plain
`common.model.encoder.Encoder(config.model)`:

  params = export.discriminator_params(state.params)
  hidden_BxLxH = encoder.Encoder(config.model).apply({'params': params}, ids_BxL)

`save_discriminator(workdir, out_dir)` writes the latest (or a given) checkpoint's
discriminator to `out_dir` as a model directory (common/interop/model_dir.py): `params/` (the
'embeddings', 'discriminator' and 'discriminator_head' subtrees, named as in
`ElectraModel`, so `train.init_from` can start an ELECTRA run from it),
`model_config.json`, `source.json` and the workdir's tokenizer file.
`load_discriminator(out_dir)` reads it back as {'encoder': ..., 'rtd_head': ...}.
"""

import os
import shutil
from typing import Any

import ml_collections

from common.interop import model_dir
from common.errors import UserError

# Encoder parameters that live at the top of the ELECTRA tree (shared with the generator).
_SHARED = ('embeddings',)
# A run's tokenizer: trained sentencepiece or imported from HF (common/interop/hf_tokenizer.py).
_TOKENIZER_FILES = ('tokenizer.model', 'hf_tokenizer.json')


def discriminator_params(params: Any) -> dict[str, Any]:
  """ElectraModel params -> the params of a plain `Encoder(config.model)` (no copy)."""
  return {**{k: params[k] for k in _SHARED}, **params['discriminator']}


def discriminator_encoder(params: Any) -> dict[str, Any]:
  """The discriminator as the encoder a task head sits on (no pooler), for fine-tuning
  (common/train/objectives.py `ENCODERS`)."""
  return {'encoder': discriminator_params(params)}


def discriminator_head_params(params: Any) -> dict[str, Any]:
  """The replaced-token detector's params, for `model.ReplacedTokenHead(config.model)`."""
  return params['discriminator_head']


restore_params = model_dir.restore_params


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
  if os.path.exists(os.path.join(out_dir, model_dir.PARAMS)):
    raise UserError(f'{out_dir} already holds an export; choose another directory')
  params, step = restore_params(workdir, step)
  if 'discriminator' not in params:
    raise UserError(f'{workdir} is not an ELECTRA run: its model has no discriminator')
  config = model_dir.read_json(os.path.join(workdir, 'config.json'))
  with model_dir.atomic_directory(out_dir) as tmp:
    model_dir.write_contents(
        tmp, {k: params[k] for k in (*_SHARED, 'discriminator', 'discriminator_head')},
        {**config['model'], 'source_workdir': os.path.abspath(workdir),
         'source_step': step},
        {'from': 'workdir', 'path': os.path.abspath(workdir), 'step': step,
         'objective': 'electra', 'heads': {'rtd': True, 'generator': False}})
    for name in _TOKENIZER_FILES:
      if os.path.exists(os.path.join(workdir, name)):
        shutil.copy(os.path.join(workdir, name), os.path.join(tmp, name))
  return out_dir


def load_discriminator(out_dir: str) -> tuple[ml_collections.ConfigDict, dict[str, Any]]:
  """Reads an export: (model config for `Encoder`, {'encoder': ..., 'rtd_head': ...})."""
  model_config, params, _ = model_dir.read(out_dir)
  return ml_collections.ConfigDict(model_dir.model_fields(model_config)), {
      'encoder': discriminator_params(params),
      'rtd_head': discriminator_head_params(params)}
