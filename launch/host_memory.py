"""Transparent huge pages for the host allocator of a launch command (Linux, glibc).

XLA:CPU allocates each step's temporaries with malloc: 2.4 GB for ELECTRA-Small at
32 x 128 tokens, which glibc maps fresh from the kernel every step (allocations above
its 32 MiB mmap ceiling always are) and the kernel zero-fills page by page: ~625,000
page faults and ~1 s of system time per step on 2 cores, as long as the step's own
work on a loaded machine. glibc's tunable `glibc.malloc.hugetlb=1` (glibc >= 2.35)
makes malloc ask for transparent huge pages (2 MiB, 512x fewer faults) wherever the
kernel allows them on request (`transparent_hugepage/enabled` 'madvise' or 'always').
Tunables are read when a process starts, so `reexec_with_huge_pages` runs the command
again, once, in the same process (same pid, arguments and streams) with the tunable set;
the child processes it starts (the Hugging Face side of `launch.benchmark`) inherit it.
`BERT_FAMILY_HUGE_PAGES=0` turns it off.
"""

import os
import platform
import sys

TUNABLE = 'glibc.malloc.hugetlb=1'
_THP = '/sys/kernel/mm/transparent_hugepage/enabled'


def _kernel_allows() -> bool:
  try:
    with open(_THP) as f:
      return '[never]' not in f.read()
  except OSError:
    return False


def status() -> str:
  """What this process's allocator does, in words, for reports."""
  if TUNABLE in os.environ.get('GLIBC_TUNABLES', ''):
    return f'transparent huge pages (GLIBC_TUNABLES={TUNABLE})'
  if os.environ.get('BERT_FAMILY_HUGE_PAGES') == '0':
    return 'default pages (BERT_FAMILY_HUGE_PAGES=0)'
  return 'default pages (huge pages need Linux, glibc >= 2.35 and THP not "never")'


def reexec_applies() -> bool:
  """Whether a launch command gets huge pages here: Linux with glibc >= 2.35 (the
  tunable's first release), a kernel that gives them on request, not turned off."""
  libc, version = platform.libc_ver()
  try:
    recent = tuple(int(v) for v in version.split('.')[:2]) >= (2, 35)
  except ValueError:
    recent = False
  return (os.environ.get('BERT_FAMILY_HUGE_PAGES') != '0'
          and sys.platform.startswith('linux') and libc == 'glibc' and recent
          and _kernel_allows())


def reexec_with_huge_pages() -> None:
  """Re-executes this `python -m launch.<verb> ...` with the tunable; returns (and does
  nothing) when it is set already or does not apply (`reexec_applies`). Call it first
  thing in a command's `__main__` block, never from a library."""
  tunables = os.environ.get('GLIBC_TUNABLES', '')
  if (TUNABLE in tunables or not reexec_applies() or len(sys.orig_argv) < 3
      or sys.orig_argv[1] != '-m'):
    return
  env = dict(os.environ, GLIBC_TUNABLES=':'.join(filter(None, (tunables, TUNABLE))))
  sys.stdout.flush()
  sys.stderr.flush()
  os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
