r"""Pretrains a BERT-family encoder from an experiment file.

  python -m launch.train --config=experiments/bert.py:demo --workdir=/tmp/bert_demo
  python -m launch.train --config=experiments/roberta.py:base --workdir=gs://... \
      --config.train.steps=1000

Started again on the same workdir it resumes from the latest checkpoint. Bad input ends
with one line naming the problem and exit status 2; the workdir is left as it was.
"""

import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from common.errors import UserError

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Experiment file and size, e.g. experiments/bert.py:demo.',
    lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints and logs.')
_STOP_AFTER = flags.DEFINE_integer(
    'stop_after', None, 'Stop (with a checkpoint) at this step, e.g. to split a long run '
    'into jobs; the learning-rate schedule still follows config.train.steps.')


def fail(message: str) -> None:
  print(f'error: {message}', file=sys.stderr)
  sys.exit(2)


def parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing with each problem reported as one line."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    cause = e.__cause__ or e.__context__
    fail(str(cause) if isinstance(cause, UserError) else str(e))
  except UserError as e:
    fail(str(e))
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    # config_flags reports a misspelled or mistyped --config.x override this way.
    detail = str(e.args[0] if e.args else e).strip('\'"')
    fail('bad --config override: ' + '; '.join(
        line.strip(' \'"') for line in detail.splitlines() if line.strip()))


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    fail(f'unexpected arguments: {" ".join(argv[1:])}')
  if _CONFIG.value is None:
    fail('--config is required, e.g. --config=experiments/bert.py:demo')
  config = _CONFIG.value
  try:
    config.get('name')  # config_flags defers a failed file load to the first access.
  except OSError:
    fail('cannot load experiment file '
         f'{config_flags.get_config_filename(flags.FLAGS["config"])!r}')
  if not _WORKDIR.value:
    fail('--workdir is required')
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
