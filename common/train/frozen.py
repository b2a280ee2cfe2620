"""Frozen parameters: read by the loss, never updated, never copied into checkpoints.

A distillation teacher or a frozen encoder is a second set of parameters that the loss
reads and the optimizer never touches. An objective that needs one names it with a
`FrozenParams` (where the values come from, and the Flax module they belong to); the
train state then carries the values in `TrainState.frozen`, sharded by the same
logical-axis rules as the trained parameters, absent from the gradients and the
optimizer state (common/train/train_step.py).

They are not written into every checkpoint: they can be as large as the model being
trained and they never change. Instead the run records in `<workdir>/frozen.json`
where they came from and a fingerprint of the source's files; a resumed run reloads
them from there and refuses, with one line, if the source vanished or changed.

Sources: a model directory (common/interop/model_dir.py: an HF import, an exported
model) or a `launch.train` workdir (its latest checkpoint's parameters when the run
starts; that step is recorded and reloaded on resume).
"""

import dataclasses
import hashlib
import json
import os
from typing import Any

import flax.linen as nn
import jax
import numpy as np

from common import atomic_files
from common.errors import UserError
from common.interop import model_dir
from common.train import sharding

RECORD = 'frozen.json'


@dataclasses.dataclass(frozen=True)
class FrozenParams:
  """Where an objective's frozen parameters come from.

  Attributes:
    name: what they are, for messages and the record ('teacher').
    source: a model directory or a training workdir.
    model: the Flax module the values belong to; `model.init(rngs, batch)` gives their
      structure and logical axis names (so they shard like any parameters).
  """
  name: str
  source: str
  model: nn.Module


def _state_dir(workdir: str, step: int) -> str:
  return os.path.join(workdir, 'checkpoints', str(step), 'state')


def resolve(frozen: FrozenParams, step: int | None = None) -> dict:
  """The record of a source: {'source', 'kind', 'step', 'fingerprint'}.

  A workdir source is pinned to `step` (default: its latest checkpoint), so a run that
  continues training the teacher's workdir does not change what this run reads.
  """
  source = os.path.abspath(frozen.source)
  if not os.path.exists(source):
    raise UserError(f'{frozen.name} parameters: {source} does not exist')
  if model_dir.is_model_dir(source):
    return {'source': source, 'kind': 'model_dir', 'step': None,
            'fingerprint': fingerprint([source])}
  if os.path.isdir(os.path.join(source, 'checkpoints')):
    _, step = model_dir.checkpoint_state_dir(source, step)
    return {'source': source, 'kind': 'workdir', 'step': step,
            'fingerprint': fingerprint([_state_dir(source, step)])}
  raise UserError(f'{frozen.name} parameters: {source} is neither a model directory '
                  '(params/, model_config.json) nor a training workdir (checkpoints/)')


def fingerprint(paths: list[str]) -> str:
  """sha256 over every file under `paths`: relative name, size and contents."""
  digest = hashlib.sha256()
  for root in paths:
    files = []
    for directory, _, names in os.walk(root):
      files += [os.path.join(directory, n) for n in names]
    for path in sorted(files):
      digest.update(os.path.relpath(path, root).encode() + b'\0')
      digest.update(str(os.path.getsize(path)).encode() + b'\0')
      with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
          digest.update(block)
  return digest.hexdigest()


def load_values(record: dict) -> Any:
  """The source's parameters as numpy arrays (nested dicts, unrolled layer layout)."""
  if record['kind'] == 'model_dir':
    _, params, _ = model_dir.read(record['source'])
  else:
    params, _ = model_dir.restore_params(record['source'], record['step'])
  return model_dir.set_layer_layout(jax.tree.map(np.asarray, params), False)


def check_record(workdir: str, frozen: FrozenParams, resuming: bool) -> dict:
  """This run's record of `frozen`: written on a fresh start, checked on resume.

  Raises UserError, before anything is loaded, if a resumed run's config names another
  source, or the recorded source vanished or changed since the run started.
  """
  path = os.path.join(workdir, RECORD)
  records = model_dir.read_json(path) if os.path.exists(path) else {}
  old = records.get(frozen.name)
  if not resuming or old is None:
    if resuming:
      raise UserError(f'{workdir} has checkpoints but no record of {frozen.name} '
                      f'parameters ({RECORD}): it was trained without them; use a new '
                      'workdir')
    return resolve(frozen)
  if os.path.abspath(frozen.source) != old['source']:
    raise UserError(f'this run was started with {frozen.name} {old["source"]}, but the '
                    f'config now names {os.path.abspath(frozen.source)}; resume with the '
                    'original or use a new workdir')
  if not os.path.exists(old['source']):
    raise UserError(f'{frozen.name} {old["source"]}, which this run was started with, no '
                    'longer exists; restore it to resume')
  try:
    now = resolve(frozen, old['step'])
  except UserError as e:
    raise UserError(f'{frozen.name} {old["source"]} changed since this run started '
                    f'({e})') from e
  if now['fingerprint'] != old['fingerprint']:
    raise UserError(f'{frozen.name} {old["source"]} changed since this run started '
                    f'(fingerprint {now["fingerprint"][:12]}, recorded '
                    f'{old["fingerprint"][:12]}); restore it or use a new workdir')
  return old


def write_record(workdir: str, name: str, record: dict) -> None:
  path = os.path.join(workdir, RECORD)
  records = model_dir.read_json(path) if os.path.exists(path) else {}
  records[name] = record
  atomic_files.write_text(path, json.dumps(records, indent=2, sort_keys=True) + '\n')


def place(frozen: FrozenParams, record: dict, example_batch: dict, mesh) -> tuple[Any, Any]:
  """Loads the recorded source onto the mesh: (values, shardings).

  The structure and logical axis names come from `frozen.model.init` (traced, never
  run); every leaf must be in the source with that shape, and leaves the source has
  beyond them (e.g. heads the loss does not read) are left out. Call it under
  `sharding.mesh_context(mesh)`.
  """
  def init():
    rngs = {'params': jax.random.key(0), 'dropout': jax.random.key(0)}
    return frozen.model.init(rngs, example_batch, deterministic=True)['params']

  shardings = sharding.logical_shardings(jax.eval_shape(init), mesh)
  abstract = jax.eval_shape(lambda: nn.unbox(init()))
  scanned = any('layers' in name.split('/') for name in model_dir.flatten(abstract))
  saved = model_dir.flatten(model_dir.set_layer_layout(load_values(record), scanned))
  flat_shardings = model_dir.flatten(shardings)
  values = {}
  for name, leaf in model_dir.flatten(abstract).items():
    if name not in saved:
      raise UserError(f'{frozen.name} {record["source"]} has no parameter {name}')
    value = saved[name]
    if tuple(value.shape) != tuple(leaf.shape):
      raise UserError(f'{frozen.name} {record["source"]}: parameter {name} has shape '
                      f'{tuple(value.shape)} but the model builds {tuple(leaf.shape)}')
    value = value.astype(leaf.dtype)
    values[name] = jax.make_array_from_callback(
        value.shape, flat_shardings[name], lambda index, v=value: v[index])
  tree = jax.tree.structure(abstract)
  return (jax.tree.unflatten(tree, [values[n] for n in model_dir.flatten(abstract)]),
          shardings)
