"""What every entry point shares: one `error:` line and exit status 2 for bad input,
absl flag parsing that reports a bad `--config.` override that way, and the checks on
--config and --workdir."""

import sys

from absl import flags
from ml_collections import config_flags

from common.errors import UserError


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


def check_loaded(argv: list[str], config_flag, workdir_flag, example: str):
  """The loaded config, after the checks every entry point makes: no stray arguments,
  --config given and loadable, --workdir given."""
  if len(argv) > 1:
    fail(f'unexpected arguments: {" ".join(argv[1:])}')
  if config_flag.value is None:
    fail(f'--config is required, e.g. --config={example}')
  config = config_flag.value
  try:
    config.get('name')  # config_flags defers a failed file load to the first access.
  except OSError:
    fail('cannot load experiment file '
         f'{config_flags.get_config_filename(flags.FLAGS["config"])!r}')
  if not workdir_flag.value:
    fail('--workdir is required')
  return config
