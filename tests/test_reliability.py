"""Reliability drills: kills, signals, damaged checkpoints, NaNs, full and read-only disks.

Every drill runs the command a user runs (`python -m launch.train ...`, or the forked
runner of tests/cli_batch.py) on a tiny BERT, and compares against one uninterrupted
run of the same command: parameters bitwise, metrics.jsonl line by line (timings
aside), TensorBoard step by step. The figures asked of the drill (kills survived,
damaged checkpoints recovered from, steps lost to SIGTERM) are printed with `-s`.
"""

import dataclasses
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from common.errors import UserError
from common.train import checkpoint as checkpoint_lib
from common.train import loop
from common.train import objectives
from common.train import pretraining
from common.data import pipeline
from tests.cli_batch import REPO
from tests.cli_batch import TINY
from tests.cli_batch import cli_env
from tests.cli_batch import run_batch
from tests.conftest import tiny_config

# 40 steps; logs every 3 steps and checkpoints every 10, so most resumes land between
# two logged steps (the averaging window must come back with the checkpoint).
DRILL = TINY
TIMINGS = ('tokens_per_sec', 'mfu')


@pytest.fixture(scope='module')
def tmp(tmp_path_factory):
  return str(tmp_path_factory.mktemp('reliability'))


@pytest.fixture(scope='module')
def reference(tmp):
  """The uninterrupted run every drill is compared with."""
  result = run_batch('launch.train', [{'id': 'reference', 'argv': [
      *DRILL, f'--workdir={tmp}/reference']}], tmp)['reference']
  assert result['status'] == 0, result['stderr'][-3000:]
  return os.path.join(tmp, 'reference')


def read_params(workdir: str, step: int) -> dict[str, np.ndarray]:
  path = os.path.join(workdir, 'checkpoints', str(step), 'state')
  checkpointer = ocp.StandardCheckpointer()
  tree = checkpointer.metadata(path).item_metadata
  tree = getattr(tree, 'tree', tree)
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                        tree)
  state = checkpointer.restore(path, target)
  checkpointer.close()
  return {jax.tree_util.keystr(k): np.asarray(v)
          for k, v in jax.tree_util.tree_flatten_with_path(state)[0]}


def assert_same_run(workdir: str, reference: str) -> None:
  """Bitwise the same parameters and optimizer state at step 40, the same metrics."""
  ours, theirs = read_params(workdir, 40), read_params(reference, 40)
  assert ours.keys() == theirs.keys()
  for name, value in ours.items():
    np.testing.assert_array_equal(value, theirs[name], err_msg=name)
  assert metrics(workdir) == metrics(reference)


def metrics(workdir: str) -> list[dict]:
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [{k: v for k, v in json.loads(l).items() if k not in TIMINGS} for l in f]


def scalar_events(workdir: str) -> list[tuple[str, int, float]]:
  """(tag, step, value) of every scalar in the workdir's TensorBoard event files."""
  from tensorboardX.proto import event_pb2  # pylint: disable=g-import-not-at-top
  out = []
  directory = os.path.join(workdir, 'tensorboard')
  for name in sorted(os.listdir(directory)):
    with open(os.path.join(directory, name), 'rb') as f:
      data = f.read()
    offset = 0
    while offset < len(data):  # TFRecord: length, crc, event, crc.
      (length,) = struct.unpack('<Q', data[offset:offset + 8])
      event = event_pb2.Event.FromString(data[offset + 12:offset + 12 + length])
      offset += 12 + length + 4
      out += [(v.tag, event.step, v.simple_value) for v in event.summary.value
              if v.tag not in TIMINGS]
  return out


def latest_checkpoint(workdir: str) -> int:
  steps = checkpoint_lib.steps_on_disk(os.path.join(workdir, 'checkpoints'))
  return steps[0] if steps else 0


class Run:
  """`python -m launch.train DRILL --workdir=...` in the background."""

  def __init__(self, workdir: str, tmp: str, name: str):
    self.workdir = workdir
    self.metrics = os.path.join(workdir, 'metrics.jsonl')
    self._old = os.stat(self.metrics).st_ino if os.path.exists(self.metrics) else None
    self.err_path = os.path.join(tmp, f'{name}.stderr')
    with open(self.err_path, 'w') as err:
      self.proc = subprocess.Popen(
          [sys.executable, '-m', 'launch.train', *DRILL, f'--workdir={workdir}'],
          cwd=REPO, env=cli_env(tmp), stdout=subprocess.DEVNULL, stderr=err)

  def logged_step(self) -> int:
    """The newest step this run logged (its metrics.jsonl replaces the old one)."""
    try:
      if os.stat(self.metrics).st_ino == self._old:
        return -1
      with open(self.metrics) as f:
        lines = [json.loads(l) for l in f if l.endswith('\n')]
    except (OSError, ValueError):
      return -1
    return max((l['step'] for l in lines), default=-1)

  def wait_for_step(self, step: int, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while self.logged_step() < step:
      assert self.proc.poll() is None, f'the run ended first: {self.stderr()[-2000:]}'
      assert time.time() < deadline, 'timed out'
      time.sleep(0.01)

  def signal(self, *signums: int) -> int:
    for signum in signums:
      self.proc.send_signal(signum)
    return self.proc.wait(timeout=120)

  def stderr(self) -> str:
    with open(self.err_path) as f:
      return f.read()


def test_kills_and_signals_on_one_run_end_bitwise_equal_to_an_uninterrupted_one(
    reference, tmp):
  """Three kill -9 at random points (one during start-up), SIGTERM, SIGINT and a
  second signal, each followed by the same command; the run ends bitwise equal."""
  reference_dir = reference
  workdir = os.path.join(tmp, 'drill')
  rng = random.Random(16)
  kills, steps_lost = 0, []
  plan = ['kill_at_start', 'kill', 'sigterm', 'kill', 'second_signal', 'sigint']
  for i, event in enumerate(plan):
    resume = latest_checkpoint(workdir)
    run = Run(workdir, tmp, f'drill{i}')
    if event == 'kill_at_start':
      time.sleep(rng.uniform(0.5, 2.5))  # Importing, building data or compiling.
      assert run.proc.poll() is None
      assert run.signal(signal.SIGKILL) == -signal.SIGKILL
      kills += 1
      continue
    run.wait_for_step(resume + rng.randint(2, 6))
    time.sleep(rng.uniform(0.0, 0.1))
    err = None
    if event == 'kill':
      assert run.signal(signal.SIGKILL) == -signal.SIGKILL
      kills += 1
      continue
    if event == 'second_signal':  # SIGINT and SIGTERM at once: the second exits now.
      status = run.signal(signal.SIGTERM, signal.SIGINT)
      err = run.stderr()
      assert status in (128 + signal.SIGINT, 128 + signal.SIGTERM), err[-2000:]
      assert 'second signal' in err and 'Traceback' not in err
      continue
    signum = signal.SIGTERM if event == 'sigterm' else signal.SIGINT
    status = run.signal(signum)
    err = run.stderr()
    assert status == (0 if signum == signal.SIGTERM else 130), err[-2000:]
    assert 'Traceback' not in err, err[-3000:]
    lines = [l for l in err.splitlines() if l.startswith('preempted')]
    assert len(lines) == 1, err[-2000:]
    saved = latest_checkpoint(workdir)
    assert lines[0].startswith(f'preempted ({signal.Signals(signum).name}) at step '
                               f'{saved}: checkpoint saved in'), lines[0]
    assert checkpoint_lib.verify(os.path.join(workdir, 'checkpoints', str(saved))) is None
    assert os.path.exists(os.path.join(workdir, 'checkpoints', str(saved),
                                       checkpoint_lib.MANIFEST))
    # Every step the run finished is in the checkpoint: none was logged beyond it.
    steps_lost.append(max(0, max(l['step'] for l in metrics(workdir)) - saved))
  final = Run(workdir, tmp, 'drill_final')
  assert final.proc.wait(timeout=300) == 0, final.stderr()[-3000:]
  print(f'\ndrill: {kills} kill -9 survived, steps lost to SIGTERM/SIGINT: {steps_lost}')
  assert kills == 3 and steps_lost == [0, 0]
  assert_same_run(workdir, reference_dir)
  # TensorBoard: each (tag, step) once, the same values as the uninterrupted run.
  events = scalar_events(workdir)
  assert len({(t, s) for t, s, _ in events}) == len(events)
  assert sorted(events) == sorted(scalar_events(reference_dir))


def _largest_state_file(step_dir: str) -> str:
  files = [os.path.join(r, n) for r, _, ns in os.walk(os.path.join(step_dir, 'state'))
           for n in ns]
  return max(files, key=os.path.getsize)


def _flip_bytes(step_dir: str) -> None:
  path = _largest_state_file(step_dir)
  with open(path, 'r+b') as f:
    f.seek(os.path.getsize(path) // 2)
    byte = f.read(1)
    f.seek(-1, 1)
    f.write(bytes([byte[0] ^ 0xFF]))


def _truncate(step_dir: str) -> None:
  path = _largest_state_file(step_dir)
  os.truncate(path, os.path.getsize(path) // 2)


def _nan_values(step_dir: str) -> None:
  """Rewrites the step's state with NaN parameters and a matching manifest: a
  checkpoint that verifies but must not be resumed from."""
  path = os.path.join(step_dir, 'state')
  checkpointer = ocp.StandardCheckpointer()
  tree = checkpointer.metadata(path).item_metadata
  tree = getattr(tree, 'tree', tree)
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  state = checkpointer.restore(path, jax.tree.map(
      lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), tree))
  state['params'] = jax.tree.map(lambda x: x * jnp.nan, state['params'])
  shutil.rmtree(path)
  checkpointer.save(path, state)
  checkpointer.wait_until_finished()
  checkpointer.close()
  os.remove(os.path.join(step_dir, checkpoint_lib.MANIFEST))
  checkpoint_lib.write_manifest(step_dir)


def _write(path: str, text: str) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w') as f:
    f.write(text)


# The damage drill's checkpoints, newest first: an empty directory newer than the
# newest, then one kind of damage per step; step 8 is intact. (An orbax temporary
# directory is added too, and ignored.) The run passes over each damaged step with one
# warning line.
DAMAGES = [
    ('empty newer directory', 38, lambda d: os.makedirs(d)),
    ('missing state file', 36, lambda d: os.remove(_largest_state_file(d))),
    ('truncated state file', 32, _truncate),
    ('flipped bytes in a state file', 28, _flip_bytes),
    ('broken manifest', 24,
     lambda d: _write(os.path.join(d, checkpoint_lib.MANIFEST), 'not a manifest\n')),
    # Without a manifest (killed before it was written): restoring finds the damage.
    ('broken metadata, no manifest', 20,
     lambda d: (os.remove(os.path.join(d, checkpoint_lib.MANIFEST)),
                _write(os.path.join(d, 'state', '_METADATA'), '{"tree_metadata": '))),
    ('missing data-iterator file', 16,
     lambda d: os.remove(os.path.join(d, 'data', 'process_0-of-1.json'))),
    ('NaN values, valid manifest', 12, _nan_values),
]
# Checkpoints every 4 steps, all kept: the math is the reference run's.
EVERY_4 = [*DRILL, '--config.train.checkpoint_every=4',
           '--config.train.keep_checkpoints=20']


@pytest.fixture(scope='module')
def every_4(tmp, reference):
  """A run stopped at step 36 with checkpoints every 4 steps (4, 8, ..., 36)."""
  del reference  # Compiled first, so that this run reads the compilation cache.
  workdir = os.path.join(tmp, 'every_4')
  result = run_batch('launch.train', [{'id': 'every_4', 'argv': [
      *EVERY_4, '--stop_after=36', f'--workdir={workdir}']}], tmp)['every_4']
  assert result['status'] == 0, result['stderr'][-3000:]
  return workdir


def test_damaged_checkpoints_are_passed_over_for_the_newest_good_one(
    reference, every_4, tmp):
  """Every kind of damage, each on one checkpoint: one warning line each, the damaged
  steps kept aside as <step>.damaged, the run resumed from the newest intact one and
  ending bitwise equal to the uninterrupted run. Then NaN under 'halt', and a
  finished run started again."""
  workdir = os.path.join(tmp, 'damaged')
  shutil.copytree(every_4, workdir)
  checkpoints = os.path.join(workdir, 'checkpoints')
  for _, step, damage in DAMAGES:
    damage(os.path.join(checkpoints, str(step)))
  _write(os.path.join(checkpoints, '39.orbax-checkpoint-tmp-1700000000', 'state', 'x'),
         'partial')
  # NaN under the default policy: a learning rate that overflows at once after step
  # 36 halts the run with one line and writes no checkpoint; the same command with
  # the run's own rate then resumes from step 36 as if nothing had happened.
  nan_dir = os.path.join(tmp, 'nan_halt')
  shutil.copytree(every_4, nan_dir)
  cases = [{'id': 'damaged', 'argv': [*EVERY_4, f'--workdir={workdir}']},
           {'id': 'nan_halt', 'argv': [*EVERY_4, '--config.optimizer.learning_rate=1e30',
                                       f'--workdir={nan_dir}'],
            'snapshot': [os.path.join(nan_dir, 'checkpoints')]},
           {'id': 'nan_then_sane_rate', 'argv': [*EVERY_4, f'--workdir={nan_dir}']},
           {'id': 'finished_run_again', 'argv': [*DRILL, f'--workdir={reference}'],
            'snapshot': [reference]}]
  results = run_batch('launch.train', cases, tmp)

  result = results['damaged']
  err = result['stderr']
  assert result['status'] == 0 and 'Traceback' not in err, err[-3000:]
  warnings = [l for l in err.splitlines() if l.startswith('warning:')]
  assert len(warnings) == len(DAMAGES), err[-3000:]
  for (kind, step, _), line in zip(DAMAGES, warnings):
    assert line.startswith(f'warning: checkpoint step {step} is damaged'), (kind, line)
    assert line.endswith('resuming from step 8'), (kind, line)
    assert os.path.isdir(os.path.join(checkpoints, f'{step}.damaged')), kind
  print(f'\ndrill: recovered from {len(warnings)} damaged checkpoints:\n  '
        + '\n  '.join(f'step {s} {k}: {l.split("(", 1)[1].split(");")[0]}'
                      for (k, s, _), l in zip(DAMAGES, warnings)))
  assert_same_run(workdir, reference)

  halt = results['nan_halt']
  errors = [l for l in halt['stderr'].splitlines() if l.startswith('error:')]
  assert halt['status'] == 2 and len(errors) == 1, halt['stderr'][-3000:]
  assert 'NaN/inf at step 37' in errors[0], errors[0]
  assert 'the last checkpoint is step 36' in errors[0], errors[0]
  assert 'learning rate' in errors[0] and 'Traceback' not in halt['stderr']
  assert halt['before'] == halt['after']  # No checkpoint written, none removed.
  assert results['nan_then_sane_rate']['status'] == 0
  assert_same_run(nan_dir, reference)

  again = results['finished_run_again']
  assert again['status'] == 0 and 'run complete' in again['stdout'], again
  assert again['before'] == again['after']


class _Poisoned:
  """A training iterator whose batches at the given steps make the loss NaN (their
  'poison' field is 1); checkpointable like the iterator it wraps."""

  def __init__(self, iterator, bad_steps):
    self._it, self._bad, self._step = iterator, set(bad_steps), 0

  def __next__(self):
    batch = dict(next(self._it))
    self._step += 1
    batch['poison'] = np.full(len(batch['input_ids']), self._step in self._bad, np.int32)
    return batch

  def get_state(self) -> bytes:
    return json.dumps({'inner': self._it.get_state(), 'step': self._step}).encode()

  def set_state(self, state: bytes) -> None:
    state = json.loads(state)
    self._it.set_state(state['inner'])
    self._step = state['step']


def test_skip_policy_drops_bad_updates_then_halts_on_a_run_of_them(tmp_path):
  config = tiny_config('bert')
  config.train.update(steps=20, log_every=5, checkpoint_every=5, eval_every=20,
                      eval_batches=1)
  config.train.nonfinite = 'skip'  # Set on the unlocked config.
  config.train.nonfinite_max_consecutive = 2
  workdir = str(tmp_path / 'skip')
  data = pipeline.build_data(config, workdir)
  objective = objectives.get_objective(config)

  def poisoned_loss(params, batch, rng, deterministic, **kwargs):
    loss, out = objective.loss_fn(params, batch, rng, deterministic, **kwargs)
    return loss * jnp.where(jnp.any(batch['poison'] > 0), jnp.nan, 1.0), out

  poisoned = dataclasses.replace(objective, loss_fn=poisoned_loss,
                                 batch_keys=(*objective.batch_keys, 'poison'))
  clean = lambda b: {**b, 'poison': np.zeros(len(b['input_ids']), np.int32)}
  train_iter = _Poisoned(iter(data.train.to_iter_dataset(pipeline.read_options(1))),
                         bad_steps=(3, 7, 8, 12, 13, 14))
  with pytest.raises(UserError, match='3 steps in a row up to step 14'):
    loop.run(config, workdir, objective=poisoned, train_iter=train_iter,
             example_batch=clean(data.train[0]),
             eval_sets=[loop.EvalSet('', [clean(b) for b in data.eval_batches])])
  records = [r for r in metrics(workdir) if 'loss' in r]
  # Steps 3, 7 and 8 were dropped (two in a row is the limit); their NaN stayed out
  # of the averages, and every checkpoint is finite.
  assert [(r['step'], r['skipped_steps']) for r in records] == [(5, 1), (10, 3)]
  assert all(np.isfinite(r['loss']) for r in records)
  assert checkpoint_lib.steps_on_disk(os.path.join(workdir, 'checkpoints')) == [10, 5]
  for step in (5, 10):
    params = read_params(workdir, step)
    assert all(np.all(np.isfinite(v)) for v in params.values() if v.dtype.kind == 'f')


def test_unknown_nonfinite_policy_is_refused_before_anything_is_written(tmp_path):
  config = tiny_config('bert')
  config.train.nonfinite = 'ignore'
  with pytest.raises(UserError, match='train.nonfinite'):
    pretraining.pretrain(config, str(tmp_path / 'wd'))
  assert not os.path.exists(tmp_path / 'wd')


def test_sigterm_stops_both_processes_of_a_two_process_run_at_one_step(tmp):
  workdir = os.path.join(tmp, 'two_processes')
  args = [*TINY, '--config.train.steps=400', '--config.train.log_every=1',
          '--config.train.checkpoint_every=1000', '--config.train.eval_every=1000',
          '--config.mesh.dcn_data=2', f'--workdir={workdir}']
  env = cli_env(tmp)
  env.pop('XLA_FLAGS')
  err_path = os.path.join(tmp, 'two_processes.stderr')
  with open(err_path, 'w') as err:
    proc = subprocess.Popen([sys.executable, '-m', 'launch.multiprocess',
                             '--num_processes=2', '--', *args], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=err)
  metrics_path = os.path.join(workdir, 'metrics.jsonl')
  deadline = time.time() + 240
  while not (os.path.exists(metrics_path) and sum(
      1 for l in open(metrics_path) if '"loss"' in l) >= 5):
    assert proc.poll() is None and time.time() < deadline, open(err_path).read()[-3000:]
    time.sleep(0.05)
  proc.send_signal(signal.SIGTERM)
  assert proc.wait(timeout=240) == 0, open(err_path).read()[-3000:]
  err = open(err_path).read()
  lines = [l for l in err.splitlines() if l.startswith('preempted (SIGTERM) at step')]
  assert len(lines) == 2 and lines[0] == lines[1], err[-3000:]
  step = latest_checkpoint(workdir)
  assert lines[0].startswith(f'preempted (SIGTERM) at step {step}:')
  step_dir = os.path.join(workdir, 'checkpoints', str(step))
  assert {'process_0-of-2.json', 'process_1-of-2.json'} <= set(
      os.listdir(os.path.join(step_dir, 'data')))
  assert checkpoint_lib.verify(step_dir) is None
  assert max(r['step'] for r in metrics(workdir)) == step


def _mount_namespace(script: str) -> subprocess.CompletedProcess:
  """Runs `script` with bash in a mount namespace of its own (as root in a user
  namespace when not root), where it may mount small or read-only filesystems."""
  if not shutil.which('unshare'):
    pytest.skip('needs unshare (util-linux) to mount a read-only or full filesystem')
  user = [] if os.getuid() == 0 else ['--map-root-user']
  done = subprocess.run(['unshare', '--mount', *user, 'bash', '-c', script], cwd=REPO,
                        capture_output=True, text=True, timeout=600)
  if done.returncode == 77:
    pytest.skip(f'cannot mount a filesystem here: {done.stderr[-500:]}')
  return done


def test_read_only_and_full_disks_end_in_one_line_naming_the_cause(reference, tmp):
  reference_dir = reference
  tokenizer = os.path.join(reference_dir, 'tokenizer.model')
  out = os.path.join(tmp, 'disks')
  os.makedirs(out)
  env = ' '.join(f'{k}={v}' for k, v in cli_env(tmp).items()
                 if k.startswith(('JAX_', 'XLA_')))
  run = lambda name, workdir, *extra: (
      f'env {env} {sys.executable} -m launch.train {" ".join(TINY)} {" ".join(extra)} '
      f'--workdir={workdir} > {out}/{name}.out 2> {out}/{name}.err; '
      f'echo $? > {out}/{name}.status; (cd {os.path.dirname(workdir)} && find . | sort) '
      f'> {out}/{name}.files')
  script = '\n'.join([
      'set -u',
      f'mkdir -p {out}/ro {out}/tiny {out}/small',
      f'mount -t tmpfs -o ro,size=1m tmpfs {out}/ro || exit 77',
      # Too small for the tokenizer (244 KB), and for a checkpoint (about 2 MB).
      f'mount -t tmpfs -o size=150k tmpfs {out}/tiny || exit 77',
      f'mount -t tmpfs -o size=1200k tmpfs {out}/small || exit 77',
      run('read_only', f'{out}/ro/wd'),
      run('tokenizer_disk_full', f'{out}/tiny/wd', f'--config.tokenizer.path={tokenizer}'),
      run('checkpoint_disk_full', f'{out}/small/wd',
          f'--config.tokenizer.path={tokenizer}'),
  ])
  done = _mount_namespace(script)
  assert done.returncode == 0, done.stderr[-3000:]
  read = lambda name, ext: open(os.path.join(out, f'{name}.{ext}')).read()
  for name, words in (('read_only', 'read-only filesystem'),
                      ('tokenizer_disk_full', 'No space left on device'),
                      ('checkpoint_disk_full', 'No space left on device')):
    err = read(name, 'err')
    errors = [l for l in err.splitlines() if l.startswith('error:')]
    assert read(name, 'status').strip() == '2', (name, err[-3000:])
    assert len(errors) == 1 and words in errors[0], (name, err[-3000:])
    assert 'Traceback' not in err, (name, err[-3000:])
    assert 'Event loop is closed' not in err, (name, err[-3000:])
    print(f'{name}: {errors[0]}')
  # Nothing was created on the read-only disk, and the refused run on the tiny one
  # removed what it had begun (the workdir).
  assert read('read_only', 'files').split() == ['.']
  assert read('tokenizer_disk_full', 'files').split() == ['.']
  assert 'tokenizer.model' in read('tokenizer_disk_full', 'err')
  assert 'checkpoints' in read('checkpoint_disk_full', 'err')


def test_launch_scripts_parse():
  for script in ('launch/slurm_gpu.sbatch', 'launch/tpu_vm.sh'):
    done = subprocess.run(['bash', '-n', os.path.join(REPO, script)],
                          capture_output=True, text=True)
    assert done.returncode == 0, (script, done.stderr)
