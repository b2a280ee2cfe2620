r"""Runs N training processes on this machine, joined by JAX's distributed runtime.

Each process is `python -m launch.train` with its own process id, talking to a
coordinator on 127.0.0.1 and exchanging collectives over gloo (CPU) — the same code
path a TPU pod or a GPU cluster takes, on one machine. Used by the tests; also handy
to check a multi-host change before paying for a pod.

  python -m launch.multiprocess --num_processes=2 --devices_per_process=2 -- \
      --config=experiments/bert.py:demo --workdir=/tmp/bert_2proc

Everything after `--` goes to launch.train unchanged. If one process fails, the
others are stopped and the exit status is the failed process's. SIGTERM or SIGINT
sent to this launcher is passed on once to every process (they run in their own
sessions, so a Ctrl-C in the terminal reaches them only this way), and they stop
together after a checkpoint (common/train/preemption.py).
"""

import os
import signal
import socket
import subprocess
import sys
import time

from absl import app
from absl import flags

_NUM_PROCESSES = flags.DEFINE_integer('num_processes', 2, 'Processes to start.')
_DEVICES = flags.DEFINE_integer('devices_per_process', 1,
                                'Simulated CPU devices in each process.')
_PORT = flags.DEFINE_integer('port', 0, 'Coordinator port on 127.0.0.1 (0 = a free one).')


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def launch(train_args: list[str], num_processes: int, devices_per_process: int,
           port: int = 0) -> int:
  """Starts the processes, waits for all, returns the first non-zero exit status."""
  port = port or free_port()
  procs = []
  for process_id in range(num_processes):
    env = {**os.environ, 'JAX_PLATFORMS': 'cpu',
           'JAX_COORDINATOR_ADDRESS': f'127.0.0.1:{port}',
           'JAX_NUM_PROCESSES': str(num_processes), 'JAX_PROCESS_ID': str(process_id),
           'XLA_FLAGS': f'--xla_force_host_platform_device_count={devices_per_process}'}
    procs.append(subprocess.Popen([sys.executable, '-m', 'launch.train', *train_args],
                                  env=env, start_new_session=True))

  def forward(signum, frame):
    del frame
    for p in procs:
      if p.poll() is None:
        p.send_signal(signum)

  previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
  status = 0
  try:
    while any(p.poll() is None for p in procs):
      # 130: stopped by SIGINT after a checkpoint, as the others will be shortly.
      failed = [p.returncode for p in procs if p.returncode not in (None, 0, 130)]
      if failed:
        status = failed[0]
        for p in procs:
          if p.poll() is None:
            p.kill()  # A peer is gone: the others would wait for it in a collective.
        break
      time.sleep(0.2)
    for p in procs:
      p.wait()
      status = status or p.returncode
  finally:
    for s, handler in previous.items():
      signal.signal(s, handler)
  return status


def main(argv: list[str]) -> None:
  sys.exit(launch(argv[1:], _NUM_PROCESSES.value, _DEVICES.value, _PORT.value))


if __name__ == '__main__':
  app.run(main)
