"""Runs many invocations of one `launch.<verb>` command fast, each in its own process.

Starting Python and importing JAX costs seconds per command; a catalogue of dozens
of bad inputs would spend minutes on it. This driver imports the entry point once,
then forks one child per case: each child parses its own argv with absl exactly as
`python -m launch.<verb> ...` would (fresh flags, no JAX backend started in the
parent), with its stdout and stderr in files. Around each child the driver takes a
sha256 snapshot of the case's paths, so a test can check per case that nothing was
created, changed or removed.

  python -m tests.cli_batch CASES.json RESULTS.json

CASES.json: {"module": "launch.train", "cases": [{"id", "argv", "snapshot": [paths],
"as_nobody": bool, "timeout": seconds}]}. RESULTS.json: {id: {"status", "stdout",
"stderr", "before", "after"}}. `as_nobody`: when run as root, the child drops to uid
65534 first, so permission checks apply to it. From a test: `run_batch(module,
cases, tmp)`.
"""

import hashlib
import importlib
import json
import os
import signal
import subprocess
import sys
import time
import traceback

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A tiny BERT that trains in seconds (as tests/test_multihost.py), for command lines.
# 40 steps; it logs every 3 steps and checkpoints every 10, so most resumes land
# between two logged steps. The drills all run this one config (with --stop_after
# for shorter runs), so the session compiles its train step once.
TINY = ['--config=experiments/bert.py:demo', '--config.model.vocab_size=600',
        '--config.model.hidden_size=64', '--config.model.num_layers=2',
        '--config.model.num_heads=2', '--config.model.intermediate_size=256',
        '--config.data.max_documents=150', '--config.data.heldout_fraction=0.1',
        '--config.data.max_seq_length=64', '--config.masking.max_predictions_per_seq=10',
        '--config.train.steps=40', '--config.train.batch_size=16',
        '--config.train.log_every=3', '--config.train.eval_every=20',
        '--config.train.eval_batches=2', '--config.train.eval_batch_size=16',
        '--config.train.checkpoint_every=10', '--config.train.data_threads=1']


def cli_env(tmp: str) -> dict[str, str]:
  """The environment of the commands the tests run: CPU with 2 simulated devices (so
  device divisibility is exercised), and JAX's persistent compilation cache in the
  test session's temporary directory, so the session's tiny runs compile their step
  once."""
  base = os.path.dirname(os.path.abspath(tmp))
  return {**os.environ, 'JAX_PLATFORMS': 'cpu',
          'XLA_FLAGS': '--xla_force_host_platform_device_count=2',
          'JAX_COMPILATION_CACHE_DIR': os.path.join(base, 'jax_compilation_cache'),
          'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS': '0',
          'JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES': '0'}


def run_batch(module: str, cases: list[dict], tmp: str) -> dict:
  """Runs the cases through this driver in a subprocess; {id: result}."""
  spec = os.path.join(tmp, f'{module}.{cases[0]["id"]}.cases.json')
  out = os.path.join(tmp, f'{module}.{cases[0]["id"]}.results.json')
  with open(spec, 'w') as f:
    json.dump({'module': module, 'cases': cases}, f)
  done = subprocess.run([sys.executable, '-m', 'tests.cli_batch', spec, out], cwd=REPO,
                        env=cli_env(tmp), capture_output=True, text=True, timeout=900)
  if done.returncode:
    raise RuntimeError(f'tests.cli_batch failed: {done.stderr[-3000:]}')
  with open(out) as f:
    return json.load(f)


def snapshot(paths: list[str]) -> dict[str, str]:
  """{path: sha256 of a file | 'dir' | 'missing'} for everything under `paths`."""
  out = {}
  for top in paths:
    if not os.path.lexists(top):
      out[top] = 'missing'
      continue
    if not os.path.isdir(top):
      out[top] = _sha(top)
      continue
    out[top] = 'dir'
    for root, dirs, files in os.walk(top):
      for name in dirs:
        out[os.path.join(root, name)] = 'dir'
      for name in files:
        out[os.path.join(root, name)] = _sha(os.path.join(root, name))
  return out


def _sha(path: str) -> str:
  try:
    with open(path, 'rb') as f:
      return hashlib.sha256(f.read()).hexdigest()
  except OSError as e:
    return f'unreadable: {e.strerror}'


def _child(module, case: dict, out_dir: str) -> None:
  """In the forked child: run the entry point on the case's argv; never returns."""
  from absl import app  # pylint: disable=g-import-not-at-top
  from launch.cli import parse_flags  # pylint: disable=g-import-not-at-top
  code = 1
  try:
    for fd, name in ((1, 'stdout'), (2, 'stderr')):
      handle = os.open(os.path.join(out_dir, f'{case["id"]}.{name}'),
                       os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
      os.dup2(handle, fd)
      os.close(handle)
    if case.get('as_nobody') and os.getuid() == 0:
      os.setgroups([])
      os.setgid(65534)
      os.setuid(65534)
    argv = [module.__name__, *case['argv']]
    sys.argv = argv  # config_flags reads it for the overrides.
    app.run(module.main, argv=argv, flags_parser=parse_flags)
    code = 0
  except SystemExit as e:
    code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
  except BaseException:  # pylint: disable=broad-except
    traceback.print_exc()
  finally:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # pylint: disable=protected-access


def run_cases(module_name: str, cases: list[dict], out_dir: str) -> dict:
  module = importlib.import_module(module_name)
  # What the entry points import lazily, imported once here (not initialised).
  for name in ('common.train.distributed', 'common.train.pretraining',
               'common.train.finetuning', 'common.data.probe_tasks'):
    importlib.import_module(name)
  results = {}
  for case in cases:
    before = snapshot(case.get('snapshot', []))
    start = time.time()
    pid = os.fork()
    if pid == 0:
      _child(module, case, out_dir)
    deadline = time.time() + case.get('timeout', 300)
    while True:
      done, status = os.waitpid(pid, os.WNOHANG)
      if done:
        break
      if time.time() > deadline:
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        break
      time.sleep(0.01)
    read = lambda name: open(os.path.join(out_dir, f'{case["id"]}.{name}'),
                             errors='replace').read()
    results[case['id']] = {'status': os.waitstatus_to_exitcode(status),
                           'stdout': read('stdout'), 'stderr': read('stderr'),
                           'seconds': time.time() - start, 'before': before,
                           'after': snapshot(case.get('snapshot', []))}
  return results


def main() -> None:
  with open(sys.argv[1]) as f:
    spec = json.load(f)
  out_dir = os.path.dirname(os.path.abspath(sys.argv[2]))
  results = run_cases(spec['module'], spec['cases'], out_dir)
  with open(sys.argv[2], 'w') as f:
    json.dump(results, f)


if __name__ == '__main__':
  main()
