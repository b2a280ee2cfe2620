"""What a run does when the loss or a gradient becomes NaN or inf (`train.nonfinite`).

The check itself runs on the device inside the jitted train step
(common/train/train_step.py): when the loss, the gradient norm or the updated
parameters' norm is not finite, the step keeps the old parameters and optimizer state
(its metrics are left out of the averages) and reports a flag. No checkpoint can
therefore hold a non-finite value, and the host never waits for the check: the loop
hands each step's flag to `NonfiniteTracker`, which reads them only when the host
synchronises anyway (log steps, checkpoint steps, a stop).

Policies:
- 'halt' (default): the run stops with one error line naming the first bad step and
  the likely causes; nothing after the last good checkpoint is written, so the same
  command with a lower learning rate resumes from it.
- 'skip': the bad step's batch is consumed and its update dropped (the step counter,
  hence the learning-rate schedule and the dropout rng, moves on); metrics lines carry
  `skipped_steps` (the run's total); more than `train.nonfinite_max_consecutive` bad
  steps in a row halt as above.
"""

from typing import Any

import jax

from common.errors import UserError

POLICIES = ('halt', 'skip')
DEFAULT_MAX_CONSECUTIVE = 10


def policy(train_config) -> tuple[str, int]:
  """(policy, max consecutive skips) from `config.train`, checked."""
  name = train_config.get('nonfinite', 'halt')
  limit = train_config.get('nonfinite_max_consecutive', DEFAULT_MAX_CONSECUTIVE)
  if name not in POLICIES:
    raise UserError(f'train.nonfinite must be one of {", ".join(POLICIES)}, got {name!r}')
  if not isinstance(limit, int) or limit < 1:
    raise UserError(f'train.nonfinite_max_consecutive must be a positive integer, got '
                    f'{limit!r}')
  return name, limit


class NonfiniteTracker:
  """Collects each step's on-device flag; `check()` reads them and applies the policy.

  Its counters (`state()`) travel in the checkpoint's loop item, so a resumed run
  counts on where the interrupted one was.
  """

  def __init__(self, name: str, max_consecutive: int, *, consecutive: int = 0,
               skipped: int = 0):
    self.name, self.max_consecutive = name, max_consecutive
    self.consecutive, self.skipped = consecutive, skipped
    self._pending: list[tuple[int, Any]] = []

  def add(self, step: int, flag: jax.Array) -> None:
    self._pending.append((step, flag))

  def check(self, last_checkpoint: str) -> None:
    """Reads the pending flags; raises UserError when the policy says halt.

    Args:
      last_checkpoint: where the newest saved checkpoint is, for the message.
    """
    if not self._pending:
      return
    steps = [s for s, _ in self._pending]
    flags = jax.device_get([f for _, f in self._pending])
    self._pending = []
    for step, flag in zip(steps, flags):
      if not flag:
        self.consecutive = 0
        continue
      self.skipped += 1
      self.consecutive += 1
      if self.name == 'halt':
        raise UserError(
            f'the loss or a gradient became NaN/inf at step {step} (train.nonfinite='
            f"'halt'); nothing after it was saved, {last_checkpoint}. Likely causes: a "
            'learning rate too high for this model or batch (optimizer.learning_rate, '
            'warmup_steps), overflow in reduced precision (model.dtype), or a bad batch'
            "; rerun with a lower rate, or with train.nonfinite='skip' to drop such "
            'updates')
      if self.consecutive > self.max_consecutive:
        raise UserError(
            f'{self.consecutive} steps in a row up to step {step} had a NaN/inf loss or '
            f'gradient (train.nonfinite_max_consecutive {self.max_consecutive}); '
            f'{last_checkpoint}. Likely causes: a learning rate too high '
            '(optimizer.learning_rate, warmup_steps), overflow in reduced precision '
            '(model.dtype), or corrupt data')

  def state(self) -> dict[str, int]:
    return {'consecutive': self.consecutive, 'skipped': self.skipped}
