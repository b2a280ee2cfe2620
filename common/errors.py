"""The exceptions an entry point turns into one line, and how it words an I/O error.

Anything a user can get wrong (unknown recipe or size, empty or unreadable corpus, a
sequence longer than the position table, a tokenizer that does not match a checkpoint)
raises `UserError` with one line that names the problem. Entry points catch it, print
that line and exit non-zero, leaving the workdir as it was (launch/cli.py).

`Preempted` is not an error: SIGTERM or SIGINT stopped a run after it saved a
checkpoint (common/train/preemption.py), and running the same command resumes it.
"""

import errno
import os
import re
import signal


class UserError(Exception):
  """A problem with the user's input, reported as one line and a non-zero exit."""


class Preempted(Exception):
  """A run stopped by a signal after saving a checkpoint at `step` in `directory`.

  `step` is None when the signal came before the first step of this session: then
  nothing new was trained and the workdir's checkpoints are as they were.
  """

  def __init__(self, signum: int, step: int | None, directory: str):
    self.signum, self.step, self.directory = signum, step, directory
    super().__init__(self.message())

  @property
  def signal_name(self) -> str:
    return signal.Signals(self.signum).name

  def message(self) -> str:
    if self.step is None:
      return (f'preempted ({self.signal_name}) before the first step: nothing new to '
              'save; run the same command to resume')
    return (f'preempted ({self.signal_name}) at step {self.step}: checkpoint saved in '
            f'{self.directory}; run the same command to resume')


# tensorstore (under orbax) reports a failed write as a ValueError whose text carries
# the system's error code and the file: '... Failed writing: "/path": ... No space left
# on device [os_error_code='28']'.
_TENSORSTORE_CODE = re.compile(r"\[os_error_code='?(\d+)'?\]")
_TENSORSTORE_PATH = re.compile(
    r'(?:Failed writing|Failed to open|Error opening)[^"]*"([^"]+)"')


def os_error_in(exc: BaseException) -> OSError | None:
  """The OSError behind `exc` (itself, or in its __cause__ / __context__ chain).

  Libraries that write in background threads (orbax, tensorstore) wrap the operating
  system's error in their own; the user needs the original one.
  """
  seen, chain = set(), []
  while exc is not None and id(exc) not in seen:
    seen.add(id(exc))
    chain.append(exc)
    if isinstance(exc, OSError) and exc.errno is not None:
      return exc
    exc = exc.__cause__ or exc.__context__
  for exc in chain:
    code = _TENSORSTORE_CODE.search(str(exc))
    if code:
      path = _TENSORSTORE_PATH.search(str(exc))
      number = int(code.group(1))
      return OSError(number, os.strerror(number), path.group(1) if path else None)
  return None


_HINTS = {
    errno.ENOSPC: 'free some space or use a workdir on a larger disk',
    errno.EDQUOT: 'free some space or use a workdir on a larger disk',
    errno.EROFS: 'use a workdir on a writable filesystem',
    errno.EACCES: 'check the permissions or use another path',
    errno.EPERM: 'check the permissions or use another path',
}


def describe_os_error(exc: OSError, doing: str = '') -> str:
  """One line for an I/O error: what failed, on which path, the system's reason."""
  reason = exc.strerror or str(exc)
  path = exc.filename
  where = f' {path}' if path else ''
  if exc.filename2:
    where += f' -> {exc.filename2}'
  hint = _HINTS.get(exc.errno)
  prefix = f'{doing}: ' if doing else ''
  return f'{prefix}{reason}{":" if where else ""}{where}' + (f' ({hint})' if hint else '')
