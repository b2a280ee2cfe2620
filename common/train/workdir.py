"""The workdir before training starts: writable? finished? resumable? and undo on refusal.

`finished_summary` tells a run that already reached its last step (started again, it is
reported and left untouched); `check_resumable` refuses, from the recorded config, an
optimizer whose state cannot load the workdir's checkpoints.

A refused run must leave the filesystem as it found it. Every check that can be made
from the config alone runs before anything is written (`check_writable` here, the
config checks in common/train/loop.py and pretraining.py), but a few can only be made
after some files exist: the vocabulary of a tokenizer just trained, the shapes of a
checkpoint against the model built with it. `guard(workdir)` covers those: when the
block raises before the training loop has `commit`ted to the run (common/train/loop.py,
just before its first write), every file and directory created since the guard began
is removed again, and the workdir itself if it did not exist. Files that were already
there are never touched. After the commit nothing is undone: a run that fails later
(NaN, disk full) keeps its checkpoints and logs.
"""

import contextlib
import json
import os
import shutil
from typing import Any

from common.errors import UserError
from common.train import checkpoint as checkpoint_lib
from common.train import optimizers

_ACTIVE: list['_Guard'] = []


def check_writable(workdir: str) -> None:
  """UserError unless `workdir` is (or can be created as) a writable directory.

  Makes nothing: walks up to the nearest existing ancestor and asks the OS.
  """
  path = os.path.abspath(workdir)
  if os.path.exists(path) and not os.path.isdir(path):
    raise UserError(f'--workdir {path} is a file, not a directory')
  probe = path
  while not os.path.exists(probe):
    parent = os.path.dirname(probe)
    if parent == probe:
      break
    probe = parent
  if not os.path.isdir(probe):
    raise UserError(f'--workdir {path} cannot be created: {probe} is a file')
  if not os.access(probe, os.W_OK | os.X_OK):
    if _read_only(probe):
      raise UserError(f'--workdir {path} is on a read-only filesystem ({probe}); use a '
                      'workdir on a writable filesystem')
    raise UserError(f'--workdir {path}: permission denied to write in {probe}')
  if probe == path:
    for name in ('checkpoints', 'tensorboard'):
      sub = os.path.join(path, name)
      if os.path.exists(sub) and not os.path.isdir(sub):
        raise UserError(f'{sub} is a file; the run writes a directory there')


def _read_only(path: str) -> bool:
  try:
    return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
  except OSError:
    return False


def _recorded_config(workdir: str) -> tuple[str, dict] | None:
  """(file name, contents) of the config the workdir's latest session ran with."""
  for name in ('config.resumed.json', 'config.json'):
    path = os.path.join(workdir, name)
    if os.path.isfile(path):
      try:
        with open(path) as f:
          return name, json.load(f)
      except (OSError, ValueError):
        return None
  return None


def check_resumable(config, workdir: str) -> None:
  """Refuses, from the recorded config alone, a resume that cannot load the workdir's
  checkpoints: an optimizer whose state has another shape (name, clipping, layer
  decay). The checkpoint's own shapes are checked again when it is restored."""
  if not checkpoint_lib.steps_on_disk(os.path.join(workdir, 'checkpoints')):
    return
  recorded = _recorded_config(workdir)
  if recorded is None or not isinstance(recorded[1].get('optimizer'), dict):
    return
  name, saved = recorded
  old = optimizers.state_fields(saved['optimizer'])
  new = optimizers.state_fields(config.optimizer)
  for field in optimizers.STATE_FIELDS:
    if old[field] != new[field]:
      raise UserError(
          f'the checkpoints in {workdir} were written with optimizer.{field}='
          f'{saved["optimizer"].get(field)!r} ({name}) but the config now has '
          f'{config.optimizer.get(field)!r}, which changes the optimizer state; resume '
          'with the original value or use a new workdir')


def finished_summary(config, workdir: str, stop_after: int | None = None
                     ) -> dict[str, Any] | None:
  """summary.json of a run that already reached the step this command asks for
  (`train.steps`, or `stop_after`), with its checkpoint there; else None."""
  target = min(config.train.steps, stop_after or config.train.steps)
  path = os.path.join(workdir, 'summary.json')
  if not os.path.isfile(path):
    return None
  try:
    with open(path) as f:
      summary = json.load(f)
  except (OSError, ValueError):
    return None
  steps = checkpoint_lib.steps_on_disk(os.path.join(workdir, 'checkpoints'))
  if (not isinstance(summary, dict) or summary.get('step') != target
      or summary.get('total_steps') != config.train.steps or not steps
      or steps[0] != target):
    return None
  return summary


class _Guard:
  """What existed under a workdir when the guard began."""

  def __init__(self, workdir: str):
    self.workdir = os.path.abspath(workdir)
    self.committed = False
    # The topmost directory this run would create (None: the workdir exists).
    self.created_root = None
    probe = self.workdir
    while not os.path.exists(probe):
      self.created_root = probe
      parent = os.path.dirname(probe)
      if parent == probe:
        break
      probe = parent
    self.existing = set()
    if self.created_root is None:
      for root, dirs, files in os.walk(self.workdir):
        self.existing.update(os.path.join(root, n) for n in dirs + files)

  def covers(self, path: str) -> bool:
    path = os.path.abspath(path)
    return path == self.workdir or path.startswith(self.workdir + os.sep)

  def rollback(self) -> None:
    if self.created_root is not None:
      shutil.rmtree(self.created_root, ignore_errors=True)
      return
    if not os.path.isdir(self.workdir):
      return
    for root, dirs, files in os.walk(self.workdir, topdown=False):
      for name in files:
        path = os.path.join(root, name)
        if path not in self.existing:
          with contextlib.suppress(OSError):
            os.remove(path)
      for name in dirs:
        path = os.path.join(root, name)
        if path not in self.existing:
          shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def guard(workdir: str):
  """Undoes what the block created under `workdir` if it raises before `commit`."""
  g = _Guard(workdir)
  _ACTIVE.append(g)
  try:
    yield g
  except BaseException:
    if not g.committed:
      g.rollback()
    raise
  finally:
    _ACTIVE.remove(g)


def commit(path: str) -> None:
  """The run is accepted: files written under `path` from now on stay, whatever
  happens (marks every active guard covering `path`)."""
  for g in _ACTIVE:
    if g.covers(path):
      g.committed = True
