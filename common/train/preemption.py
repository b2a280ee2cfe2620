"""Stopping a run cleanly on SIGTERM or SIGINT: finish the step, checkpoint, exit.

Cloud preemption, SLURM (`--signal`, scancel, job preemption), Kubernetes and
`docker stop` send SIGTERM, Ctrl-C sends SIGINT. While a run trains, `StopSignal`
catches both: the current step finishes, the loop saves a checkpoint (data-iterator
position and rng included, common/train/checkpoint.py) and raises
`common.errors.Preempted`, which the entry point reports in one line
("preempted (SIGTERM) at step N: checkpoint saved in ...") before exiting with status
0 for SIGTERM (so a scheduler or a restart loop runs the same command again) and 130
for SIGINT (the shell's convention for Ctrl-C, so `train && next` stops). A second
signal exits at once (status 128 + signal) without saving; the checkpoints already
written are intact.

Several processes must stop at the same step, or their collectives would hang. With
one process the flag is read after every step (free). With several, every step
enqueues a one-integer all-reduce (max) of the processes' flags on the devices, and
the host reads the previous step's result: all processes read the same value at the
same step and so stop together, one step after the first of them got the signal, at
the cost of never running more than one step ahead of the devices.
"""

import os
import signal
import sys
import threading

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec
import numpy as np

SIGNALS = (signal.SIGTERM, signal.SIGINT)


def exit_status(signum: int) -> int:
  """The exit status after a clean stop: 0 for SIGTERM (restart me), 130 for SIGINT."""
  return 130 if signum == signal.SIGINT else 0


class StopSignal:
  """Installs SIGTERM/SIGINT handlers for its `with` block; `should_stop()` after each
  step says whether every process agrees to stop now."""

  def __init__(self):
    self.signum: int | None = None
    self._previous = {}
    self._pending = None  # The all-reduce enqueued after the previous step.
    self._agree = None

  def __enter__(self) -> 'StopSignal':
    if threading.current_thread() is threading.main_thread():
      for signum in SIGNALS:
        self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def __exit__(self, *exc) -> None:
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)
    self._previous = {}

  def _handle(self, signum, frame) -> None:
    del frame
    if self.signum is not None:
      print(f'second signal ({signal.Signals(signum).name}): exiting now without a '
            'checkpoint; the checkpoints already written are intact', file=sys.stderr,
            flush=True)
      os._exit(128 + signum)  # pylint: disable=protected-access
    self.signum = signum

  def should_stop(self) -> bool:
    """Called once after every step, on every process, in step order."""
    if jax.process_count() == 1:
      return self.signum is not None
    if self._agree is None:
      self._agree = _make_agreement()
    previous = self._pending
    self._pending = self._agree(self.signum is not None)
    # Blocks until the previous step is done; the step just dispatched keeps running.
    stop = previous is not None and bool(np.asarray(previous.addressable_data(0)))
    if stop and self.signum is None:
      self.signum = signal.SIGTERM  # Another process was signalled.
    return stop


def _make_agreement():
  """flag (this process's bool) -> a replicated device scalar: any process's flag."""
  mesh = Mesh(np.asarray(jax.devices()), ('processes',))
  spread = NamedSharding(mesh, PartitionSpec('processes'))
  reduce = jax.jit(lambda flags: flags.max(), out_shardings=NamedSharding(
      mesh, PartitionSpec()))
  local = jax.local_device_count()

  def agree(flag: bool) -> jax.Array:
    flags = np.full((local,), int(flag), np.int32)
    return reduce(jax.make_array_from_process_local_data(spread, flags))

  return agree
