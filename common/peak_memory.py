"""The process's peak resident set, for benchmarks on CPU hosts."""

import resource
import sys


def peak_rss_bytes() -> int:
  """Peak resident set of this process image, in bytes.

  Linux: /proc/self/status VmHWM, the high-water mark of this program's own memory
  (ru_maxrss would carry over the parent's peak into a child started by fork + exec).
  Elsewhere ru_maxrss (KiB on Linux and BSDs, bytes on macOS).
  """
  try:
    with open('/proc/self/status') as f:
      for line in f:
        if line.startswith('VmHWM:'):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return int(maxrss if sys.platform == 'darwin' else maxrss * 1024)
