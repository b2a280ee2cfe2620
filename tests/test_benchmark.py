"""launch.benchmark on a tiny config: the table and JSON, a sweep and its plot, a profile,
--compare=hf, the memory check, bad input.

The figures themselves are not tested (timings are the command's job, not a test's);
what is: every field is there, positive and consistent (tokens/s is tokens per step
over the median step time, model FLOPs per token are the objective's).
"""

import json
import subprocess
import sys
import types

import pytest

from experiments import bert
from launch import host_memory
from tests import conftest
from tests.cli_batch import REPO
from tests.cli_batch import TINY
from tests.cli_batch import cli_env
from tests.cli_batch import run_batch
from tests.test_experiments import RECIPE_SIZES
from tests.test_experiments import get_config

FAST = ['--steps=2', '--warmup=1', '--roofline_size=256']


def run(args: list[str], tmp_path, timeout: float = 300) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, '-m', 'launch.benchmark', *args], cwd=REPO,
                        env=cli_env(str(tmp_path)), capture_output=True, text=True,
                        timeout=timeout, check=False)


def tiny_flops_per_token() -> float:
  """The objective's FLOPs per token for the TINY overrides."""
  from common.train import objectives  # pylint: disable=g-import-not-at-top
  config = bert.get_config('demo')
  for arg in TINY[1:]:
    key, value = arg[len('--config.'):].split('=')
    section, field = key.split('.')
    config[section][field] = type(config[section][field])(value)
  return objectives.get_objective(config).flops_per_token


def check_row(row: dict, tokens_per_step: int, flops_per_token: float) -> None:
  ms = row['step_ms']
  assert 0 < ms['min'] <= ms['p10'] <= ms['median'] <= ms['p90'] <= ms['max']
  assert row['tokens_per_step'] == tokens_per_step
  assert row['tokens_per_sec'] == pytest.approx(tokens_per_step / (ms['median'] / 1e3))
  assert row['model_flops_per_token'] == pytest.approx(flops_per_token)
  assert row['model_flops_per_sec'] == pytest.approx(
      row['tokens_per_sec'] * flops_per_token)
  assert 0 < row['roofline_fraction']
  assert row['peak_memory_bytes'] > 0 and row['peak_memory_kind'] == 'peak RSS'
  assert row['mfu'] is None  # No known peak for CPUs.


@pytest.fixture(scope='module')
def measured(tmp_path_factory):
  """One run of the command on TINY: with --compare=hf when the 'hf' extra is there
  (one JAX compilation serves both tests), a one-point sweep per axis, each the
  config's own (a compilation cache hit) except the unrolled layers."""
  tmp_path = tmp_path_factory.mktemp('benchmark')
  out = tmp_path / 'bench.json'
  try:
    conftest.import_hf()
    compare = ['--compare=hf']
  except pytest.skip.Exception:
    compare = []
  result = run([*TINY, *FAST, *compare, f'--output={out}', '--sweep', '--sweep_batch=16',
                '--sweep_length=64', '--sweep_depth=2', '--sweep_steps=1',
                f'--plot={tmp_path / "sweep.png"}', f'--profile={tmp_path / "trace"}'],
               tmp_path)
  assert result.returncode == 0, result.stderr[-2000:]
  assert (tmp_path / 'sweep.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
  return result.stdout, json.loads(out.read_text())


def test_table_json_and_sweep(measured):
  stdout, data = measured
  for label in ('compile', 'ms/step (median)', 'tokens/s', 'model FLOPs/token',
                'model FLOP/s', 'of matmul roofline', 'MFU', 'peak memory',
                'matmul roofline:', 'input pipeline alone:', 'batch size',
                'sequence length', 'depth'):
    assert label in stdout, label
  row = data['rows'][0]
  check_row(row, 16 * 64, tiny_flops_per_token())
  # The command re-executed itself with huge pages wherever the kernel offers them.
  if host_memory.reexec_applies():
    assert 'host allocator: transparent huge pages' in stdout
  assert row['name'] == 'JAX (this repo)' and row['compile_s'] > 0
  assert row['parameters'] > 0
  assert data['pipeline']['examples_per_sec'] > 0
  assert data['roofline_flops_per_sec'] > 0
  profile = data['profile']
  assert 'profile (' in stdout and profile['step_ms'] > 0
  assert profile['operations'] and all(op['ms'] > 0 for op in profile['operations'])
  assert any('dot_general' in op['source'] for op in profile['operations'])
  sweep = data['sweep']
  assert [p['batch_size'] for p in sweep['batch_size']] == [16]
  assert [p['max_seq_length'] for p in sweep['max_seq_length']] == [64]
  (depth,) = sweep['num_layers']
  assert depth['num_layers'] == 2
  assert depth['scan']['step_ms'] > 0 and depth['unrolled']['compile_s'] > 0


def test_compare_hf(measured):
  conftest.import_hf()
  stdout, data = measured
  assert 'HF PyTorch' in stdout and 'JAX / HF tokens/s' in stdout
  jax_row, hf_row = data['rows']
  check_row(hf_row, 16 * 64, tiny_flops_per_token())
  assert hf_row['compile_s'] is None and hf_row['architectures'] == ['BertForPreTraining']
  assert hf_row['parameters'] == jax_row['parameters']  # The same model.
  assert data['ratio'] == pytest.approx(
      jax_row['tokens_per_sec'] / hf_row['tokens_per_sec'])
  assert any('every position onto the vocabulary' in n for n in data['notes'])


def test_bad_input_is_one_error_line(tmp_path):
  cases = {'compare': (['--compare=tf'], 'compare'),
           'steps': (['--steps=0'], '--steps'),
           'sweep': (['--sweep', '--sweep_batch=two'], 'sweep_batch'),
           'plot': (['--plot=/tmp/sweep.png'], 'add --sweep'),
           'config': (['--config.model.dropout_rat=0.1'], 'dropout_rat'),
           'cudnn on cpu': (['--config.model.attention_impl=cudnn',
                             '--config.model.dtype=bfloat16'], 'needs NVIDIA GPUs')}
  results = run_batch('launch.benchmark', [
      {'id': name, 'argv': [*TINY, *args, '--nopipeline'], 'timeout': 120}
      for name, (args, _) in cases.items()], str(tmp_path))
  for name, (_, message) in cases.items():
    result = results[name]
    errors = [l for l in result['stderr'].splitlines() if l.startswith('error:')]
    assert result['status'] == 2, (name, result['stderr'][-2000:])
    assert len(errors) == 1 and message in errors[0], (name, errors)
    assert 'Traceback' not in result['stderr'] and not result['stdout'].strip()


def test_a_step_that_does_not_fit_names_a_batch_that_does(monkeypatch):
  """The memory check (run after compiling, before any step): a step whose new
  buffers exceed the free memory is refused with a batch size that fits."""
  from common.errors import UserError  # pylint: disable=g-import-not-at-top
  from common.train import benchmark  # pylint: disable=g-import-not-at-top

  class Compiled:
    def memory_analysis(self):
      return types.SimpleNamespace(temp_size_in_bytes=40 * 2**30,
                                   output_size_in_bytes=2**30, alias_size_in_bytes=2**30)

  config = bert.get_config('base')
  monkeypatch.setattr(benchmark, 'free_bytes_per_device', lambda: 20 * 2**30)
  with pytest.raises(UserError, match=r'needs 40.0 GiB .* 20.0 GiB is free: try '
                     r'--config.train.batch_size=112 '):
    benchmark.check_fits(Compiled(), config, data_parallel=8)
  monkeypatch.setattr(benchmark, 'free_bytes_per_device', lambda: 41 * 2**30)
  benchmark.check_fits(Compiled(), config, data_parallel=8)  # Fits: no error.


@pytest.mark.parametrize('recipe, size', RECIPE_SIZES)
def test_every_recipe_and_size_gets_a_synthetic_batch(recipe, size, tiny_bert_workdir):
  """The benchmark can feed every recipe's step at every size: the synthetic batch has
  each field its objective reads, at the config's shape (distillation recipes with a
  teacher, as they need one to train)."""
  from common.train import benchmark  # pylint: disable=g-import-not-at-top
  from common.train import objectives  # pylint: disable=g-import-not-at-top
  config = get_config(recipe, size)
  if 'teacher' in config and 'path' in config.teacher:
    config.teacher.path = tiny_bert_workdir
    config.teacher.init_student = False
    # The tiny teacher's vocabulary, width and heads (tests/conftest.py tiny_config).
    config.model.update(vocab_size=600, hidden_size=64, num_heads=2)
  config.train.batch_size = 2
  config = objectives.configure(config)
  keys = objectives.get_objective(config).batch_keys
  batch = benchmark.synthetic_batch(config, keys)
  assert set(batch) == set(keys)
  assert batch['input_ids'].shape == (2, config.data.max_seq_length)
  assert batch['input_ids'].max() < config.model.vocab_size


@pytest.mark.parametrize('recipe, architectures', [
    ('roberta', ['RobertaForMaskedLM']), ('albert', ['AlbertForPreTraining']),
    ('electra', ['ElectraForPreTraining', 'ElectraForMaskedLM'])])
def test_compare_hf_for_the_other_families(recipe, architectures, tmp_path):
  """--compare=hf builds each family's HF counterpart with as many parameters as ours
  (ELECTRA: both networks, embeddings shared) and trains it on the same batch."""
  conftest.import_hf()
  out = tmp_path / 'bench.json'
  tiny = [f'--config=experiments/{recipe}.py:demo', *TINY[1:]]
  if recipe == 'albert':
    tiny.append('--config.model.embedding_size=32')
  result = run([*tiny, '--steps=1', '--warmup=0', '--nopipeline', '--roofline_size=128',
                '--compare=hf', f'--output={out}'], tmp_path)
  assert result.returncode == 0, result.stderr[-2000:]
  jax_row, hf_row = json.loads(out.read_text())['rows']
  assert hf_row['architectures'] == architectures
  assert hf_row['parameters'] == jax_row['parameters']
  assert hf_row['tokens_per_sec'] > 0 and jax_row['tokens_per_sec'] > 0
