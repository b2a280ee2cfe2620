"""What every entry point shares: one `error:` line and exit status 2 for bad input,
absl flag parsing that reports a bad `--config.` override that way, the checks on
--config and --workdir, and `run_main`, which turns whatever ends a run into one line.

Exit status of every `launch.*` command:
  0    done; or stopped by SIGTERM after saving a checkpoint (run it again to resume)
  1    an unexpected internal error (`--debug` shows its traceback)
  2    bad input or an I/O problem (disk full, read-only, permissions): one `error:` line
  130  stopped by SIGINT (Ctrl-C) after saving a checkpoint
"""

import logging
import signal
import sys
import threading

from absl import flags
from ml_collections import config_flags

from common.errors import Preempted
from common.errors import UserError
from common.errors import describe_os_error
from common.errors import os_error_in

_DEBUG = flags.DEFINE_bool('debug', False, 'Show the full traceback of an error instead '
                           'of its one-line summary.')


def fail(message: str, status: int = 2) -> None:
  print(f'error: {message}', file=sys.stderr, flush=True)
  sys.exit(status)


def parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing with each problem reported as one line."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    cause = e.__cause__ or e.__context__
    fail(str(cause) if isinstance(cause, UserError) else str(e))
  except UserError as e:
    fail(str(e))
  except OSError:
    # config_flags loads the experiment file while parsing the first override.
    given = [a.split('=', 1)[1] for a in argv if a.startswith('--config=')]
    fail(f'cannot load experiment file {given[-1] if given else ""!r}')
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    # config_flags reports a misspelled or mistyped --config.x override this way, as
    # an AttributeError wrapping the KeyError whose text names the field.
    detail = e.args[0] if e.args else e
    while isinstance(detail, BaseException):
      detail = detail.args[0] if detail.args else str(detail)
    lines = [l.strip(' \'"') for l in str(detail).splitlines() if l.strip(' \'"')]
    key = lines[0] if lines else ''
    given = [a.split('=', 1)[0] for a in argv if a.startswith('--config.')
             and key in a.split('=', 1)[0].split('.')]
    name = given[0] if given else key
    fail(f'bad --config override {name}: no such field'
         + ''.join(f'; {l}' for l in lines[1:]) if lines else
         f'bad --config override: {detail}')


def check_loaded(argv: list[str], config_flag, workdir_flag, example: str):
  """The loaded config, after the checks every entry point makes: no stray arguments,
  --config given and loadable, --workdir given (unless `workdir_flag` is None)."""
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
  if workdir_flag is not None and not workdir_flag.value:
    fail('--workdir is required')
  return config


class _Interrupted(BaseException):
  """A signal before the training loop took over signals (common/train/preemption.py)."""

  def __init__(self, signum: int):
    super().__init__(signum)
    self.signum = signum


def _interrupt(signum, frame):
  del frame
  raise _Interrupted(signum)


class _DropClosedLoopTracebacks:
  """sys.stderr, less the "RuntimeError: Event loop is closed" tracebacks that
  tensorstore's late callbacks print (straight to sys.stderr, bypassing
  sys.excepthook) after orbax's background event loop ended with a failed save."""

  def __init__(self, stream):
    self._stream = stream
    self._held = None
    self._lock = threading.RLock()

  def write(self, text: str) -> int:
    with self._lock:
      if self._held is None:
        if not text.startswith('Traceback (most recent call last):'):
          return self._stream.write(text)
        self._held = []
      self._held.append(text)
      lines = ''.join(self._held).split('\n')
      ended = [l for l in lines[1:-1] if l and not l.startswith(' ')]
      if ended or len(lines) > 200:
        held, self._held = ''.join(self._held), None
        if not (ended and ended[0] == 'RuntimeError: Event loop is closed'):
          self._stream.write(held)
      return len(text)

  def flush(self) -> None:
    with self._lock:
      if self._held is not None:
        self._stream.write(''.join(self._held))
        self._held = None
      self._stream.flush()

  def __getattr__(self, name):
    return getattr(self._stream, name)


def _quiet_background_errors() -> None:
  """Keeps what orbax's background threads print about a failed save off the screen:
  the same failure reaches the main thread and is reported in one line there. Those
  threads log it (ERROR, with a traceback), asyncio logs their unretrieved task
  exceptions, and tensorstore prints "Event loop is closed" tracebacks, dozens of them
  on a full disk."""

  class DropBackgroundErrors(logging.Filter):

    def filter(self, record):
      return not (record.levelno >= logging.ERROR and (
          '/orbax/' in record.pathname or record.name == 'asyncio'))

  for name in ('absl', 'asyncio', ''):
    logging.getLogger(name).addFilter(DropBackgroundErrors())
  for handler in logging.getLogger().handlers:
    handler.addFilter(DropBackgroundErrors())
  if not isinstance(sys.stderr, _DropClosedLoopTracebacks):
    sys.stderr = _DropClosedLoopTracebacks(sys.stderr)


def run_main(body, workdir: str = ''):
  """Runs `body()` and turns how it ends into one line and the exit status above.

  SIGTERM and SIGINT before training starts stop the setup (whatever it created is
  undone, common/train/workdir.py); during training the loop finishes the step and
  checkpoints first. With --debug, errors show their traceback instead.
  """
  previous = {s: signal.signal(s, _interrupt) for s in (signal.SIGTERM, signal.SIGINT)}
  if not _DEBUG.value:
    _quiet_background_errors()
  try:
    return body()
  except Preempted as e:
    print(e.message(), file=sys.stderr, flush=True)
    sys.exit(130 if e.signum == signal.SIGINT else 0)
  except _Interrupted as e:
    print(Preempted(e.signum, None, workdir).message(), file=sys.stderr, flush=True)
    sys.exit(130 if e.signum == signal.SIGINT else 0)
  except UserError as e:
    if _DEBUG.value:
      raise
    fail(str(e))
  except Exception as e:  # pylint: disable=broad-except
    if _DEBUG.value:
      raise
    cause = os_error_in(e)
    if cause is not None:
      fail(describe_os_error(cause))
    text = ' '.join(str(e).split())[:300]
    fail(f'unexpected {type(e).__name__}: {text} (run with --debug for the traceback)',
         status=1)
  finally:
    for s, handler in previous.items():
      signal.signal(s, handler)
