"""Checkpoints with orbax: train state, data-iterator state and loop state together.

One orbax `CheckpointManager` under `<workdir>/checkpoints` saves asynchronously every
`train.checkpoint_every` steps and keeps the newest `train.keep_checkpoints`. Each step
directory holds three items:
- 'state': the `TrainState` (step, params, optimizer state), restored straight onto the
  current mesh's shardings, which may differ from the mesh it was saved under; its
  frozen parameters are left out (common/train/frozen.py reloads them from their
  recorded source);
- 'data': the grain iterator's position (one file per process), so a resumed run reads
  exactly the batches an uninterrupted one would;
- 'loop': JSON with the loop's rng key and bookkeeping (the metrics averaged since the
  last logged step, the non-finite step counters).

Integrity: once orbax has finished a step (the next save, or the end of the run),
process 0 writes `<step>/manifest.sha256`, the sha256 of every file of the step in
`sha256sum` format (`cd checkpoints/<step> && sha256sum -c manifest.sha256` checks it
by hand). On resume the newest step is verified against it (a step killed before its
manifest was written is checked by restoring it), restored, and its values checked to
be finite; a step that is incomplete, unreadable, fails verification or holds NaN/inf
is reported in one line and the next older one tried. Damaged steps newer than the one
resumed from are renamed `<step>.damaged` (kept for inspection, never deleted) so the
run can write that step again. Directories whose names are not step numbers (orbax's
`<step>.orbax-checkpoint-tmp-*` left by a kill, `.damaged` ones) are ignored.

Resume order: the workdir's newest usable checkpoint, else a fresh start. Nothing here
writes before `open()`: reading and verifying leave the filesystem as it was.
"""

import hashlib
import os
import re
from typing import Any

import grain
import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from common import atomic_files
from common.errors import UserError

MANIFEST = 'manifest.sha256'
ITEMS = ('state', 'data', 'loop')
_STEP_NAME = re.compile(r'(0|[1-9][0-9]*)')


def steps_on_disk(directory: str) -> list[int]:
  """The step numbers of the checkpoint directories under `directory`, newest first."""
  if not os.path.isdir(directory):
    return []
  return sorted((int(name) for name in os.listdir(directory)
                 if _STEP_NAME.fullmatch(name)
                 and os.path.isdir(os.path.join(directory, name))), reverse=True)


def _files(step_dir: str) -> list[str]:
  out = []
  for root, _, names in os.walk(step_dir):
    for name in names:
      rel = os.path.relpath(os.path.join(root, name), step_dir)
      if not rel.startswith(MANIFEST):
        out.append(rel)
  return sorted(out)


def _sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      digest.update(block)
  return digest.hexdigest()


def write_manifest(step_dir: str) -> None:
  """Writes `<step_dir>/manifest.sha256` over every file of the finished step."""
  lines = [f'{_sha256(os.path.join(step_dir, rel))}  {rel}\n' for rel in _files(step_dir)]
  atomic_files.write_text(os.path.join(step_dir, MANIFEST), ''.join(lines))


def verify(step_dir: str) -> str | None:
  """Why the step directory cannot be resumed from (None: it looks whole).

  With a manifest every listed file must be there with its checksum; without one
  (written by an older version, or killed between orbax finishing the step and the
  manifest) only the items' presence is checked here, and restoring it tells the rest.
  """
  if not os.listdir(step_dir):
    return 'empty directory'
  for item in ITEMS:
    if not os.path.isdir(os.path.join(step_dir, item)):
      return f'no {item}/ item'
  manifest = os.path.join(step_dir, MANIFEST)
  if not os.path.exists(manifest):
    return None
  try:
    with open(manifest) as f:
      entries = [line.rstrip('\n').split('  ', 1) for line in f if line.strip()]
  except (OSError, UnicodeDecodeError) as e:
    return f'{MANIFEST} unreadable ({e})'
  if not entries or any(len(e) != 2 or not re.fullmatch(r'[0-9a-f]{64}', e[0])
                        for e in entries):
    return f'{MANIFEST} is malformed'
  for digest, rel in entries:
    path = os.path.join(step_dir, rel)
    if not os.path.isfile(path):
      return f'{rel} is missing'
    try:
      if _sha256(path) != digest:
        return f'{rel} does not match its checksum'
    except OSError as e:
      return f'{rel} unreadable ({e.strerror})'
  return None


def _short(exc: BaseException) -> str:
  text = str(exc).strip().splitlines()
  return f'{type(exc).__name__}: {text[0][:160] if text else ""}'.rstrip(': ')


@jax.jit
def _all_finite(tree) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
            if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def _restore_checkpointer() -> ocp.Checkpointer:
  return ocp.Checkpointer(ocp.CompositeCheckpointHandler(
      state=ocp.StandardCheckpointHandler(), data=grain.checkpoint.CheckpointHandler(),
      loop=ocp.JsonCheckpointHandler()))


class Checkpointer:
  """Saves and restores (state, data iterator, loop dict) under one step number."""

  def __init__(self, directory: str, *, save_every: int, keep: int,
               async_save: bool = True):
    self.directory = os.path.abspath(directory)
    self.save_every = save_every
    self.keep = keep
    self.async_save = async_save
    self.manager = None
    self.skipped: list[tuple[int, str]] = []  # (step, why) of damaged steps passed over.
    self._unverified = None  # The step saved last, whose manifest is not written yet.
    self._writer = jax.process_index() == 0

  # Reading: nothing below writes.

  def latest_step(self) -> int | None:
    steps = steps_on_disk(self.directory)
    return steps[0] if steps else None

  def restore_latest(self, abstract_state: Any, data_iterator: Any
                     ) -> tuple[int, Any, dict] | None:
    """The newest usable checkpoint: (step, state without frozen params, loop dict).

    Damaged steps are passed over and listed in `self.skipped` (`open()` sets them
    aside); the data iterator's position is set from the step restored. Returns None
    when there are no checkpoints.

    Raises:
      UserError: the checkpoints were written by another model or optimizer config
        (not a damage: an older step would not match either), or every step is
        damaged.
    """
    self.skipped = []
    steps = steps_on_disk(self.directory)
    for step in steps:
      step_dir = os.path.join(self.directory, str(step))
      reason = verify(step_dir)
      if reason is None:
        try:
          self.check_compatible(step, abstract_state)
          state, loop = self._restore(step_dir, abstract_state, data_iterator)
          if not bool(_all_finite((state.params, state.opt_state))):
            reason = 'holds non-finite (NaN or inf) values'
        except UserError:
          raise
        except Exception as e:  # pylint: disable=broad-except
          reason = f'cannot be read ({_short(e)})'
      if reason is None:
        return step, state, loop
      self.skipped.append((step, reason))
    if steps:
      raise UserError(
          f'no usable checkpoint in {self.directory}: '
          + '; '.join(f'step {s}: {r}' for s, r in self.skipped)
          + '. They are left as they are; move them away to start this run afresh')
    return None

  def restore(self, step: int, abstract_state: Any, data_iterator: Any
              ) -> tuple[Any, dict]:
    """Restores checkpoint `step` onto `abstract_state`'s shardings and the iterator in
    place (the layout need not be the one it was saved under).

    Args:
      abstract_state: a `TrainState` of `jax.ShapeDtypeStruct`s with `.sharding` set.
      data_iterator: the grain iterator whose position is set from the checkpoint.

    Returns:
      (state without frozen parameters, loop dict).
    """
    self.check_compatible(step, abstract_state)
    return self._restore(os.path.join(self.directory, str(step)), abstract_state,
                         data_iterator)

  def _restore(self, step_dir: str, abstract_state: Any, data_iterator: Any
               ) -> tuple[Any, dict]:
    checkpointer = _restore_checkpointer()
    try:
      restored = checkpointer.restore(step_dir, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(_persisted(abstract_state)),
          data=grain.checkpoint.CheckpointRestore(data_iterator),
          loop=ocp.args.JsonRestore()))
    finally:
      checkpointer.close()
    if not isinstance(restored['loop'], dict) or 'rng' not in restored['loop']:
      raise ValueError('loop item has no rng')
    return abstract_state.replace(frozen=None, **restored['state']), restored['loop']

  def check_compatible(self, step: int, abstract_state: Any) -> None:
    """Raises UserError naming the first parameter whose saved shape differs, or the
    optimizer whose state does not match; other read errors propagate as they are."""
    step_dir = os.path.join(self.directory, str(step))
    checkpointer = _restore_checkpointer()
    try:
      saved = checkpointer.metadata(step_dir).item_metadata['state']
    finally:
      checkpointer.close()
    saved = getattr(saved, 'tree', saved)
    saved_params = saved.get('params')
    if saved_params is None:
      raise ValueError('state item holds no parameters')
    saved_flat = dict(jax.tree_util.tree_flatten_with_path(saved_params)[0])
    for path, leaf in jax.tree_util.tree_flatten_with_path(abstract_state.params)[0]:
      old = saved_flat.get(path)
      name = jax.tree_util.keystr(path)
      if old is None:
        raise UserError(f'checkpoint step {step} in {self.directory} has no parameter '
                        f'{name}: it was written by a different model config')
      if tuple(old.shape) != tuple(leaf.shape):
        raise UserError(
            f'checkpoint step {step} in {self.directory} has {name} of shape '
            f'{tuple(old.shape)} but the config builds {tuple(leaf.shape)} (vocab size '
            'or model size differs from the run being resumed)')
    saved_opt = {k: tuple(v.shape) for k, v in
                 ocp.tree.to_flat_dict(saved.get('opt_state') or {}).items()
                 if v is not None}
    built = {k: tuple(v.shape) for k, v in ocp.tree.to_flat_dict(ocp.tree.serialize_tree(
        abstract_state.opt_state, keep_empty_nodes=True)).items()
             if v is not None and hasattr(v, 'shape')}
    if saved_opt != built:
      raise UserError(
          f'checkpoint step {step} in {self.directory} holds the state of another '
          'optimizer than this config builds (optimizer.name, clip_norm or layer_decay '
          'changed): resume with the settings it was written with or use a new workdir')

  # Writing: only after `open()`.

  def open(self) -> list[tuple[int, str, str]]:
    """Sets the damaged steps passed over aside and starts saving.

    Returns:
      (step, why, where it was moved) of each damaged step (on process 0).
    """
    moved = []
    if self._writer:
      for step, reason in self.skipped:
        src = os.path.join(self.directory, str(step))
        dst, n = f'{src}.damaged', 1
        while os.path.exists(dst):
          dst, n = f'{src}.damaged.{n}', n + 1
        if os.path.isdir(src):
          os.rename(src, dst)
          moved.append((step, reason, dst))
    if jax.process_count() > 1:  # Every process sees the renames before orbax lists.
      multihost_utils.sync_global_devices('checkpoints set aside')
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=self.keep, create=True,
            enable_async_checkpointing=self.async_save),
        item_handlers={'state': ocp.StandardCheckpointHandler(),
                       'data': grain.checkpoint.CheckpointHandler(),
                       'loop': ocp.JsonCheckpointHandler()})
    return moved

  def save(self, step: int, state: Any, data_iterator: Any, loop: dict, *,
           force: bool = False) -> bool:
    """Saves if `step` is a multiple of `save_every` (or `force`); returns whether it
    did. The previous save's manifest is written first (orbax waits for it anyway)."""
    if not force and step % self.save_every:
      return False
    if self.manager is None:
      self.open()
    if step in steps_on_disk(self.directory):  # Already saved (e.g. a forced repeat).
      return False
    self.wait()
    saved = self.manager.save(step, force=True, args=ocp.args.Composite(
        state=ocp.args.StandardSave(_persisted(state)),
        data=grain.checkpoint.CheckpointSave(data_iterator),
        loop=ocp.args.JsonSave(loop)))
    if saved:
      self._unverified = step
    return saved

  def wait(self) -> None:
    """Waits for the pending save, then writes its manifest."""
    if self.manager is None:
      return
    self.manager.wait_until_finished()
    step, self._unverified = self._unverified, None
    step_dir = os.path.join(self.directory, str(step))
    if step is not None and self._writer and os.path.isdir(step_dir):
      write_manifest(step_dir)

  def close(self) -> None:
    if self.manager is None:
      return
    try:
      self.wait()
    finally:
      self.manager.close()
      self.manager = None


def _persisted(state: Any) -> dict[str, Any]:
  """What a checkpoint holds of a `TrainState`: everything but the frozen parameters."""
  return {'step': state.step, 'params': state.params, 'opt_state': state.opt_state}


def abstract_like(tree: Any, shardings: Any) -> Any:
  """ShapeDtypeStructs of `tree` placed on `shardings` (the restore target)."""
  return jax.tree.map(
      lambda x, s: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=s), tree, shardings)
