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
- 'loop': JSON with the loop's rng key and bookkeeping.

Resume order: the workdir's latest checkpoint, else a fresh start.
"""

import os
from typing import Any

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp

from common.errors import UserError


class Checkpointer:
  """Saves and restores (state, data iterator, loop dict) under one step number."""

  def __init__(self, directory: str, *, save_every: int, keep: int,
               async_save: bool = True):
    self.directory = os.path.abspath(directory)
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True, enable_async_checkpointing=async_save),
        item_handlers={'state': ocp.StandardCheckpointHandler(),
                       'data': grain.checkpoint.CheckpointHandler(),
                       'loop': ocp.JsonCheckpointHandler()})
    self.save_every = save_every

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state: Any, data_iterator: Any, loop: dict, *,
           force: bool = False) -> bool:
    """Saves if `step` is a multiple of `save_every` (or `force`); returns whether it did."""
    if not force and step % self.save_every:
      return False
    return self.manager.save(step, force=True, args=ocp.args.Composite(
        state=ocp.args.StandardSave(_persisted(state)),
        data=grain.checkpoint.CheckpointSave(data_iterator),
        loop=ocp.args.JsonSave(loop)))

  def check_compatible(self, step: int, abstract_state: Any) -> None:
    """Raises UserError naming the first parameter whose saved shape differs."""
    saved = self.manager.item_metadata(step)['state']
    saved_params = getattr(saved, 'tree', saved).get('params')
    if saved_params is None:
      raise UserError(f'checkpoint step {step} in {self.directory} holds no parameters')
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

  def restore(self, step: int, abstract_state: Any, data_iterator: Any) -> tuple[Any, dict]:
    """Restores the state onto `abstract_state`'s shardings and the iterator in place.

    Args:
      abstract_state: a `TrainState` of `jax.ShapeDtypeStruct`s with `.sharding` set (the
        layout to restore into; need not be the layout the checkpoint was saved under).
      data_iterator: the grain iterator whose position is set from the checkpoint.

    Returns:
      (state without frozen parameters, loop dict).
    """
    self.check_compatible(step, abstract_state)
    restored = self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(_persisted(abstract_state)),
        data=grain.checkpoint.CheckpointRestore(data_iterator),
        loop=ocp.args.JsonRestore()))
    return abstract_state.replace(frozen=None, **restored['state']), restored['loop']

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.close()


def _persisted(state: Any) -> dict[str, Any]:
  """What a checkpoint holds of a `TrainState`: everything but the frozen parameters."""
  return {'step': state.step, 'params': state.params, 'opt_state': state.opt_state}


def abstract_like(tree: Any, shardings: Any) -> Any:
  """ShapeDtypeStructs of `tree` placed on `shardings` (the restore target)."""
  return jax.tree.map(
      lambda x, s: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=s), tree, shardings)
