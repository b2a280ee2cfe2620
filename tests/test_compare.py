"""launch.compare: budget -> steps for every scale, the plan's record, and a two-recipe
comparison end to end through the command (interrupted, resumed, extended by a recipe,
refused when changed)."""

import contextlib
import hashlib
import os

from absl import flags
import jax
import pytest

from common.errors import UserError
from common.train import comparison
from common.train import finetuning
from common.train import objectives
from common.train import pretraining
from electra_jax import objective as electra_objective
from launch import compare
from launch.cli import parse_flags

ALL = list(comparison.RECIPES)


@pytest.mark.parametrize('scale', sorted(comparison.SCALES))
def test_every_recipe_matches_every_scales_budget(scale):
  scale = comparison.SCALES[scale]
  corpus = compare.corpus_fields('default', scale, 'text')
  plan, configs = comparison.make_plan(ALL, scale, scale.budget_flops, corpus,
                                       scale.evaluation)
  for recipe, entry in plan['recipes'].items():
    config = configs[recipe]
    assert config.data.max_seq_length == scale.max_seq_length
    assert config.train.batch_size == scale.batch_size
    assert config.model.vocab_size == config.tokenizer.vocab_size == scale.vocab_size
    per_token = objectives.get_objective(config).flops_per_token
    flops = per_token * scale.batch_size * scale.max_seq_length * config.train.steps
    assert entry['flops'] == pytest.approx(flops, rel=1e-12)
    assert abs(flops / scale.budget_flops - 1) <= comparison.TOLERANCE, recipe
    assert entry['points'][-1] == config.train.steps
    assert config.optimizer.warmup_steps <= max(1, config.train.steps // 10)
  # ELECTRA's count includes its generator: more FLOPs per token, fewer steps.
  electra = configs['electra']
  assert plan['recipes']['electra']['flops_per_token'] == pytest.approx(
      electra_objective.electra_flops_per_token(electra), rel=1e-12)
  assert electra_objective.generator_flops_per_token(electra) > 0
  assert plan['recipes']['electra']['steps'] < plan['recipes']['roberta']['steps']


def test_gpu_small_is_the_electra_papers_table_1_setting():
  scale = comparison.SCALES['gpu-small']
  corpus = compare.corpus_fields('text:/data/*.txt', scale, 'text')
  _, configs = comparison.make_plan(['bert', 'electra', 'roberta'], scale,
                                    scale.budget_flops, corpus, scale.evaluation)
  for config in configs.values():  # ELECTRA-Small's encoder (section 3.3).
    model = config.model
    assert (model.num_layers, model.hidden_size, model.num_heads,
            model.intermediate_size, model.embedding_size) == (12, 256, 4, 1024, 128)
    assert config.data.paths == '/data/*.txt'
  # BERT-Small uses ELECTRA-Small's hyperparameters (Table 1 caption).
  assert configs['bert'].optimizer.learning_rate == configs['electra'].optimizer.learning_rate
  assert configs['electra'].masking.max_predictions_per_seq == 19  # int(0.155 * 128)
  assert configs['roberta'].masking.max_predictions_per_seq == 20  # round(0.15 * 128) + 1


def test_budget_too_small_or_too_coarse():
  with pytest.raises(UserError, match='too small for one step of bert'):
    comparison.steps_for_budget('bert', 1e9, 4e8)
  with pytest.raises(UserError, match=r'3 step\(s\), \+15.4% off'):
    comparison.steps_for_budget('bert', 1.0, 2.6)
  assert comparison.steps_for_budget('bert', 1.0, 10.4) == 10  # -3.8%
  assert comparison.points(801) == [200, 400, 801]


def test_a_recorded_plan_takes_recipes_and_budget_but_nothing_incomparable():
  scale = comparison.SCALES['cpu']
  corpus = compare.corpus_fields(None, scale, 'text')
  make = lambda recipes, budget, corpus=corpus: comparison.make_plan(
      recipes, scale, budget, corpus, scale.evaluation)[0]
  old = make(['bert'], 1e12)
  old['tokenizer']['sha256'] = 'abc'
  merged = comparison.merge_plans(old, make(['bert', 'albert'], 2e12), 'plan.json')
  assert set(merged['recipes']) == {'bert', 'albert'}
  bert = merged['recipes']['bert']
  assert bert['steps'] > old['recipes']['bert']['steps']
  assert set(old['recipes']['bert']['points']) <= set(bert['points'])  # kept on the curve
  assert merged['tokenizer']['sha256'] == 'abc'
  with pytest.raises(UserError, match='smaller budget'):
    comparison.merge_plans(old, make(['bert'], 5e11), 'plan.json')
  other = dict(corpus, max_documents=10)
  with pytest.raises(UserError, match='corpus .* not be comparable'):
    comparison.merge_plans(old, make(['bert'], 1e12, other), 'plan.json')
  changed = make(['bert'], 1e12)
  changed['recipes']['bert']['fingerprint'] = 'edited'
  with pytest.raises(UserError, match='bert config differs'):
    comparison.merge_plans(old, changed, 'plan.json')


# ------------------------------------------------------------ through the command

TINY = comparison.Scale(
    name='tiny', size='tiny', fallback_size='demo',
    fallback_model=dict(hidden_size=64, num_layers=2, num_heads=2, intermediate_size=256),
    max_seq_length=64, batch_size=16, vocab_size=600, heldout_fraction=0.1,
    budget_flops=0.0, recipes=('bert',),
    evaluation=comparison.Evaluation('probes', ('word_order',), seeds=1, epochs=1.0,
                                     learning_rate=1e-3),
    corpus_required=False, wall_time='a minute')
ARGS = ['--scale=tiny', '--corpus_max_documents=150', '--fractions=0.5,1']


class Killed(Exception):
  """Stands for the process being killed."""


def snapshot(top: str) -> dict[str, str]:
  out = {}
  for root, dirs, files in os.walk(top):
    out.update({os.path.join(root, d): 'dir' for d in dirs})
    for name in files:
      with open(os.path.join(root, name), 'rb') as f:
        out[os.path.join(root, name)] = hashlib.sha256(f.read()).hexdigest()
  return out


def counting(calls: dict, monkeypatch, kill_at_finetune: int | None = None) -> None:
  """Records every pretraining and fine-tuning the command starts; raises `Killed` at
  fine-tuning number `kill_at_finetune` (1-based) instead of running it."""
  pretrain, finetune = pretraining.pretrain, finetuning.finetune

  def counted_pretrain(config, workdir, **kwargs):
    calls['pretrain'].append((config.name, kwargs.get('stop_after')))
    return pretrain(config, workdir, **kwargs)

  def counted_finetune(config, workdir, **kwargs):
    if len(calls['finetune']) + 1 == kill_at_finetune:
      raise Killed()
    calls['finetune'].append(workdir.split(f'{os.sep}evaluation{os.sep}')[-1])
    return finetune(config, workdir, **kwargs)

  monkeypatch.setattr(pretraining, 'pretrain', counted_pretrain)
  monkeypatch.setattr(finetuning, 'finetune', counted_finetune)


@contextlib.contextmanager
def compilation_cache(directory: str):
  """JAX's persistent compilation cache in `directory` (as tests/cli_batch.py gives the
  command-line tests): the comparison's runs compile the same steps again and again
  (each checkpoint's segment, each fine-tuning), and read them back from here."""
  from jax._src import compilation_cache as cache  # pylint: disable=g-import-not-at-top
  names = ('jax_compilation_cache_dir', 'jax_persistent_cache_min_compile_time_secs',
           'jax_persistent_cache_min_entry_size_bytes')
  saved = {name: getattr(jax.config, name) for name in names}
  for name, value in zip(names, (directory, 0, 0)):
    jax.config.update(name, value)
  cache.reset_cache()
  try:
    yield
  finally:
    for name, value in saved.items():
      jax.config.update(name, value)
    cache.reset_cache()


@pytest.fixture(scope='module')
def compared(tmp_path_factory):
  """The tiny comparison of bert, killed in its second fine-tuning, then started
  again with electra added, then once more: (workdir, budget, calls of each run)."""
  workdir = str(tmp_path_factory.mktemp('compare') / 'cmp')
  runs = []
  with pytest.MonkeyPatch.context() as patch, compilation_cache(
      str(tmp_path_factory.mktemp('jax_cache'))):
    patch.setitem(comparison.SCALES, 'tiny', TINY)
    config = comparison.recipe_config('bert', TINY, compare.corpus_fields(None, TINY, 't'))
    budget = 12 * objectives.get_objective(config).flops_per_token * 16 * 64
    common = [*ARGS, f'--budget_flops={budget!r}', f'--workdir={workdir}']
    for recipes, kill in (('bert', 2), ('bert,electra', None), ('bert,electra', None)):
      calls = {'pretrain': [], 'finetune': []}
      with pytest.MonkeyPatch.context() as inner:
        counting(calls, inner, kill)
        status, err = run_in_process([*common, f'--recipes={recipes}'])
      runs.append((status, err, calls))
  return workdir, budget, runs


def run_in_process(argv: list[str]) -> tuple[int, str]:
  """`python -m launch.compare ARGV` in this process: (exit status, stderr)."""
  import contextlib  # pylint: disable=g-import-not-at-top
  import io  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  err = io.StringIO()
  flags.FLAGS.unparse_flags()
  saved = sys.stderr
  try:
    with contextlib.redirect_stderr(err):
      compare.main(parse_flags(['compare', *argv]))
    status = 0
  except SystemExit as e:
    status = e.code
  finally:
    sys.stderr = saved  # run_main wraps sys.stderr (launch/cli.py).
  return status, err.getvalue()


def test_interrupted_comparison_resumes_and_takes_an_added_recipe(compared):
  workdir, budget, runs = compared
  (status, err, first), (status2, err2, second), (status3, _, third) = runs
  plan = comparison_json(workdir)['plan']
  bert, electra = plan['bert'], plan['electra']
  assert bert['points'] == [6, 12] and bert['steps'] == 12
  # Killed in its second fine-tuning (bert's first checkpoint; the random control ran).
  assert status == 1 and 'unexpected Killed' in err, err
  assert first['pretrain'] == [('bert-tiny', 6), ('bert-tiny', 12)]
  assert first['finetune'] == ['random/word_order']
  # Started again with electra added: bert's checkpoints and the random control are
  # reused, bert's evaluations done, electra pretrained to each point and evaluated.
  assert status2 == 0, err2
  assert second['pretrain'] == [('electra-tiny', s) for s in electra['points']]
  assert sorted(second['finetune']) == sorted(
      [f'bert/step_{s}/word_order' for s in bert['points']]
      + [f'electra/step_{s}/word_order' for s in electra['points']])
  # Once more: everything is read back, nothing trained.
  assert status3 == 0 and third == {'pretrain': [], 'finetune': []}


def test_report_table_json_and_plot(compared):
  workdir, budget, _ = compared
  report = comparison_json(workdir)
  plan = report['plan']
  rows = [(r['recipe'], r['step']) for r in report['rows']]
  assert rows == ([('bert', s) for s in plan['bert']['points']]
                  + [('electra', s) for s in plan['electra']['points']])
  for row in report['rows']:
    entry = plan[row['recipe']]
    assert row['flops'] == pytest.approx(
        entry['flops_per_token'] * entry['tokens_per_step'] * row['step'])
    if row['step'] == row['steps']:
      assert abs(row['flops'] / budget - 1) <= comparison.TOLERANCE
    score = row['scores']['word_order']
    assert 0 <= score['mean'] <= 1 and len(score['scores']) == 1
  assert 0 <= report['random']['word_order']['mean'] <= 1
  assert report['majority']['word_order'] == pytest.approx(0.5, abs=0.1)
  with open(os.path.join(workdir, 'comparison.md')) as f:
    table = f.read()
  for recipe in ('bert', 'electra'):
    steps = plan[recipe]['steps']
    assert f'| {recipe} | demo, hidden_size=64 num_layers=2 num_heads=2 ' \
           f'intermediate_size=256 | {steps} / {steps} |' in table
  assert '| random init | demo, hidden_size=64' in table and '| majority class |' in table
  with open(os.path.join(workdir, 'comparison.png'), 'rb') as f:
    assert f.read(8) == b'\x89PNG\r\n\x1a\n'


def comparison_json(workdir):
  import json  # pylint: disable=g-import-not-at-top
  with open(os.path.join(workdir, 'comparison.json')) as f:
    return json.load(f)


# (arguments, the error, whether it is refused on a fresh workdir too)
BAD = [
    (['--recipes=bert,nope'], "unknown recipe 'nope'", True),
    (['--budget_flops=1e3'], 'too small for one step of bert', True),
    (['--scale=huge'], "unknown --scale 'huge'", True),
    (['--fractions=0,1'], 'fractions must be numbers in', True),
    (['--budget_flops=SMALLER'], 'a smaller budget', False),
    (['--corpus_max_documents=140'], 'corpus .* would not be comparable', False),
    (['--eval_seeds=2'], 'evaluation .* would not be comparable', False),
]


@pytest.mark.parametrize('argv, message, anywhere', BAD)
def test_bad_input_is_one_error_line_and_writes_nothing(
    argv, message, anywhere, compared, tmp_path):
  import re  # pylint: disable=g-import-not-at-top
  workdir, budget, _ = compared
  argv = [a.replace('SMALLER', repr(0.9 * budget)) for a in argv]
  fresh = str(tmp_path / 'fresh')
  with pytest.MonkeyPatch.context() as patch:
    patch.setitem(comparison.SCALES, 'tiny', TINY)
    for where in (workdir, fresh) if anywhere else (workdir,):
      before = snapshot(workdir)
      status, err = run_in_process([*ARGS, f'--budget_flops={budget!r}',
                                    '--recipes=bert', *argv, f'--workdir={where}'])
      errors = [l for l in err.splitlines() if l.startswith('error: ')]
      assert status == 2 and len(errors) == 1, err
      assert 'Traceback' not in err
      assert re.search(message, errors[0]), errors[0]
      assert snapshot(workdir) == before
      assert not os.path.exists(fresh)
