r"""Pretrains a BERT-family encoder from an experiment file.

  python -m launch.train --config=experiments/bert.py:demo --workdir=/tmp/bert_demo
  python -m launch.train --config=experiments/roberta.py:base --workdir=gs://... \
      --config.train.steps=1000

Started again on the same workdir it resumes from the latest checkpoint. Bad input ends
with one line naming the problem and exit status 2; the workdir is left as it was.
"""

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from common.errors import UserError
from launch.cli import check_loaded
from launch.cli import fail
from launch.cli import parse_flags

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
  try:
    distributed.initialize()
    summary = pretraining.pretrain(config, _WORKDIR.value, stop_after=_STOP_AFTER.value)
  except UserError as e:
    fail(str(e))
  if summary.get('eval'):
    metrics = ', '.join(f'{k} {v:.4f}' for k, v in summary['eval'].items())
    print(f'done: step {summary["step"]}, held-out {metrics}, '
          f'{summary["wall_time_sec"]:.0f}s; outputs in {_WORKDIR.value}')


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
