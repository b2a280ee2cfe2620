r"""Pretrains a BERT-family encoder from an experiment file.

  python -m launch.train --config=experiments/bert.py:demo --workdir=/tmp/bert_demo
  python -m launch.train --config=experiments/roberta.py:base --workdir=gs://... \
      --config.train.steps=1000

Started again on the same workdir it resumes from the latest checkpoint, and a finished
run is reported without touching it. SIGTERM (preemption, SLURM, Kubernetes) or SIGINT
finish the current step, save a checkpoint and exit with status 0 (SIGTERM) or 130
(SIGINT); run the same command to resume. Bad input ends with one line naming the
problem and exit status 2, and a refused run leaves the filesystem as it found it
(launch/cli.py lists the exit statuses; --debug shows tracebacks).
"""

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from launch import host_memory
from launch.cli import check_loaded
from launch.cli import parse_flags
from launch.cli import run_main

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Experiment file and size, e.g. experiments/bert.py:demo.',
    lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints and logs.')
_STOP_AFTER = flags.DEFINE_integer(
    'stop_after', None, 'Stop (with a checkpoint) at this step, e.g. to split a long run '
    'into jobs; the learning-rate schedule still follows config.train.steps.')


def main(argv: list[str]) -> None:
  config = check_loaded(argv, _CONFIG, _WORKDIR, example='experiments/bert.py:demo')
  logging.set_verbosity(logging.WARNING)
  # Imported here so that --help and flag errors do not pay for importing JAX.
  from common.train import distributed  # pylint: disable=g-import-not-at-top
  from common.train import pretraining  # pylint: disable=g-import-not-at-top

  def body():
    distributed.initialize()
    return pretraining.pretrain(config, _WORKDIR.value, stop_after=_STOP_AFTER.value)

  summary = run_main(body, _WORKDIR.value)
  if summary.get('already_complete'):
    held_out = ', '.join(f'{k} {v:.4f}' for k, v in summary.get('eval', {}).items()
                         if isinstance(v, (int, float)))
    print(f'run complete: step {summary["step"]} of {summary["total_steps"]} was reached '
          f'before, nothing to do{"; held-out " + held_out if held_out else ""}; summary '
          f'in {_WORKDIR.value}/summary.json')
  elif summary.get('eval'):
    metrics = ', '.join(f'{k} {v:.4f}' for k, v in summary['eval'].items())
    print(f'done: step {summary["step"]}, held-out {metrics}, '
          f'{summary["wall_time_sec"]:.0f}s; outputs in {_WORKDIR.value}')


if __name__ == '__main__':
  host_memory.reexec_with_huge_pages()
  app.run(main, flags_parser=parse_flags)
