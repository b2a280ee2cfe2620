"""Distillation (DistilBERT, TinyBERT): the student's start, every loss term, the frozen
teacher, a resumed run, bad input, parameter counts and HF exports.

Most tests read a model directory of a 4-layer BERT with random (perturbed) weights and
the tiny corpus' tokenizer; the run reads a briefly trained BERT workdir, as the demo's
teacher is. Students are tiny versions of experiments/distilbert.py and
experiments/tinybert.py.
"""

import os
import shutil
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from common.data import corpus
from common.data import pipeline
from common.data import tokenizer as tokenizer_lib
from common.errors import UserError
from common.interop import hf_checkpoint
from common.interop import model_dir
from common.model import mlm_model
from common.train import distillation
from common.train import frozen as frozen_lib
from common.train import loop
from common.train import metrics as metrics_lib
from common.train import objectives
from common.train import optimizers
from common.train import pretraining
from common.train import sharding
from common.train import train_step
from experiments import distilbert
from experiments import tinybert
from tests import conftest
from tests.conftest import REPO, tiny_config

TEACHER_LAYERS = 4


def perturbed_params(module, batch, seed):
  """Random values for every parameter (LayerNorm scales around 1, biases not 0)."""
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(module.init, jax.random.PRNGKey(0), batch)
  flat = model_dir.flatten(nn.unbox(shapes)['params'])
  return model_dir.unflatten({
      name: (name.endswith('/scale') + 0.05 * rng.standard_normal(x.shape)).astype(
          np.float32) for name, x in flat.items()})


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
  """(teacher model directory, its params, tokenizer file, a batch of the corpus)."""
  root = tmp_path_factory.mktemp('distillation')
  config = tiny_config('distilbert')
  data = pipeline.build_data(config, str(root / 'data'))  # Trains the tokenizer.
  batch = {k: np.asarray(v) for k, v in data.train[0].items()}
  # Four rows, padded ones among them: small steps compile and run fast.
  rows = np.argsort(batch['attention_mask'].sum(1))[:4]
  batch = {k: v[rows] for k, v in batch.items()}
  teacher_config = tiny_config('bert').model
  teacher_config.num_layers = TEACHER_LAYERS
  teacher = mlm_model.MaskedLMModel(teacher_config, sentence_classes=2)
  params = perturbed_params(teacher, {k: jnp.asarray(v[:2]) for k, v in batch.items()},
                            seed=0)
  path = str(root / 'teacher')
  with model_dir.atomic_directory(path) as tmp:
    model_dir.write_contents(tmp, params, teacher_config.to_dict(),
                             {'from': 'workdir', 'objective': 'mlm_nsp'})
    shutil.copy(data.tokenizer.model_path, tmp)
  return path, model_dir.set_layer_layout(params, False), data.tokenizer.model_path, batch


def student_config(recipe, teacher, **objective):
  config = tiny_config(recipe)
  config.model.num_layers = 2
  config.teacher.path = teacher
  config.objective.update(objective)
  config.train.update(steps=40, eval_every=20, checkpoint_every=10, log_every=10)
  return config


def place(objective, batch, mesh, seed=0):
  """(state, shardings) with the teacher placed and init_params applied."""
  tx, _ = optimizers.make_optimizer(ml_collections.ConfigDict(
      dict(name='adamw', learning_rate=1e-3, warmup_steps=1, b1=0.9, b2=0.98,
           eps=1e-6, weight_decay=0.0, clip_norm=5.0, schedule='warmup_linear_decay',
           layer_decay=1.0)), 10)
  batch = {k: jnp.asarray(batch[k]) for k in objective.batch_keys}
  record = frozen_lib.resolve(objective.frozen)
  placed = frozen_lib.place(objective.frozen, record, batch, mesh)
  state, shardings = train_step.init_train_state(
      objective, tx, batch, jax.random.PRNGKey(seed), mesh, placed)
  if objective.init_params is not None:
    state = state.replace(params=objective.init_params(state.params, shardings.params))
  return state, shardings, tx


def unrolled(params):
  return model_dir.flatten(model_dir.set_layer_layout(jax.tree.map(np.asarray, params),
                                                      False))


MESH = {'data': -1, 'fsdp': 1, 'tensor': 1}


# ------------------------------------------------------------------ layer maps


def test_layer_maps():
  assert distillation.layer_map('spread', 6, 12) == (0, 2, 4, 7, 9, 11)
  assert distillation.layer_map('block_last', 4, 12) == (2, 5, 8, 11)
  assert distillation.layer_map('block_last', 6, 12) == (1, 3, 5, 7, 9, 11)
  assert distillation.layer_map('spread', 2, 4) == (0, 3)
  assert distillation.layer_map('spread', 3, 24) == (0, 12, 23)
  assert distillation.layer_map('1, 3', 2, 4) == (1, 3)
  with pytest.raises(UserError, match='names teacher layer 12, but the teacher has 12 '
                     r'layers \(0..11\)'):
    distillation.layer_map('0,2,4,7,9,12', 6, 12)
  with pytest.raises(UserError, match='names 2 teacher layers but the student has 6'):
    distillation.layer_map('0,11', 6, 12)
  with pytest.raises(UserError, match='neither spread nor block_last'):
    distillation.layer_map('every_other', 6, 12)


# ------------------------------------------------------------ the student's start


def test_student_starts_from_the_mapped_teacher_layers(setup):
  teacher, teacher_params, _, batch = setup
  config = student_config('distilbert', teacher)
  config = objectives.configure(config)
  objective = objectives.get_objective(config)
  mesh = sharding.make_mesh(MESH)
  with sharding.mesh_context(mesh):
    state, _, _ = place(objective, batch, mesh)
  student = unrolled(state.params)
  expected = model_dir.flatten(teacher_params)
  mapping = distillation.layer_map('spread', 2, TEACHER_LAYERS)
  assert mapping == (0, 3)
  for name, value in student.items():
    source = name
    for i, j in enumerate(mapping):
      source = source.replace(f'encoder/layer_{i}/', f'encoder/layer_{j}/')
    np.testing.assert_array_equal(value, expected[source], err_msg=name)
  # Everything but the teacher's layers 1, 2, its token types, pooler and NSP head.
  assert {n for n in expected if n not in {
      s.replace('layer_1/', 'layer_3/') for s in student}} == {
          n for n in expected if n.startswith(('encoder/layer_1/', 'encoder/layer_2/',
                                               'pooler/', 'sentence_head/'))
          or 'type_embed' in n}


# ------------------------------------------------------------------ loss terms


def test_soft_targets_are_a_kl_at_temperature_times_t_squared():
  rng = np.random.default_rng(0)
  student = rng.standard_normal((3, 7)).astype(np.float32) * 3
  teacher = rng.standard_normal((3, 7)).astype(np.float32) * 3
  weights = np.array([1.0, 1.0, 0.0], np.float32)

  def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)

  for temperature in (1.0, 2.0, 4.0):
    total, count = distillation.soft_target_loss(student, teacher, weights, temperature)
    p_t, p_s = softmax(teacher / temperature), softmax(student / temperature)
    kl = (p_t * (np.log(p_t) - np.log(p_s))).sum(-1)
    np.testing.assert_allclose(total, temperature ** 2 * (kl * weights).sum(), rtol=1e-5)
    assert count == 2
    # The T^2 keeps the gradient at T (p_student - p_teacher): its size does not
    # shrink as 1/T when the temperature rises (Hinton et al. 2015, section 2).
    grad = jax.grad(lambda s: distillation.soft_target_loss(
        s, teacher, weights, temperature)[0])(student)
    np.testing.assert_allclose(grad, temperature * (p_s - p_t) * weights[:, None],
                               atol=1e-6)
  # Identical logits: zero at every temperature.
  assert float(distillation.soft_target_loss(student, student, weights, 2.0)[0]) < 1e-6


def test_padding_never_counts():
  rng = np.random.default_rng(1)
  mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], np.float32)
  a = rng.standard_normal((2, 3, 5, 5)).astype(np.float32)
  b = rng.standard_normal((2, 3, 5, 5)).astype(np.float32)
  loss = distillation.attention_mse(a, b, mask)
  real = mask[:, None, :, None] * mask[:, None, None, :] * np.ones((1, 3, 1, 1))
  np.testing.assert_allclose(loss, ((a - b) ** 2 * real).sum() / real.sum(), rtol=1e-6)
  # Any score at a padded query or key changes nothing; a real one does.
  changed = a.copy()
  changed[0, :, 3:, :] = 1e4
  changed[0, :, :, 3:] = -1e4
  assert float(distillation.attention_mse(changed, b, mask)) == float(loss)
  changed[0, 0, 0, 0] += 1.0
  assert float(distillation.attention_mse(changed, b, mask)) != float(loss)
  h_a = rng.standard_normal((2, 5, 4)).astype(np.float32)
  h_b = h_a.copy()
  h_b[0, 3:] = 100.0
  assert float(distillation.hidden_mse(h_a, h_b, mask)) == 0.0
  assert float(distillation.cosine_loss(h_a, h_b, mask)[0]) < 1e-5


def test_hidden_projection_shared_or_one_per_state():
  from common.model import distillation_model  # pylint: disable=g-import-not-at-top
  spec = ml_collections.ConfigDict(dict(tiny_config('bert').model, num_layers=2,
                                        hidden_size=8, num_heads=2))
  rng = np.random.default_rng(0)
  states = rng.standard_normal((3, 2, 5, 8)).astype(np.float32)
  for count in (1, 3):
    module = distillation_model.HiddenProjection(spec, 12, count)
    params = {'kernel': rng.standard_normal((count, 8, 12)).astype(np.float32),
              'bias': rng.standard_normal((count, 12)).astype(np.float32)}
    shapes = jax.eval_shape(module.init, jax.random.PRNGKey(1), states, (0, 1, 2))
    assert jax.tree.map(lambda x: x.shape, nn.unbox(shapes['params'])) == jax.tree.map(
        np.shape, params)
    apply = jax.jit(module.apply, static_argnums=2)
    out = np.asarray(apply({'params': params}, states, (0, 1, 2)))
    alone = np.asarray(apply({'params': params}, states[2:], (2,)))
    for n in range(3):
      k = 0 if count == 1 else n
      np.testing.assert_allclose(out[n], states[n] @ params['kernel'][k] +
                                 params['bias'][k], rtol=1e-5, atol=1e-5)
    # A state projected alone goes through its own map.
    np.testing.assert_allclose(alone[0], out[2], rtol=1e-5, atol=1e-5)


def copy_objective(teacher, projection='none'):
  """A student that is the teacher (same config, every layer), every term on."""
  config = student_config('distilbert', teacher, alpha_ce=1.0, alpha_mlm=1.0,
                          alpha_cos=1.0, alpha_attention=1.0, alpha_hidden=1.0)
  config.model = tiny_config('bert').model
  config.model.num_layers = TEACHER_LAYERS
  config.teacher.update(init_student=True, hidden_projection=projection)
  config = objectives.configure(config)
  return objectives.get_objective(config)


@pytest.mark.parametrize('projection', ['none', 'shared'])
def test_every_term_is_at_its_minimum_when_the_student_is_the_teacher(setup, projection):
  teacher, teacher_params, _, batch = setup
  objective = copy_objective(teacher, projection)
  mesh = sharding.make_mesh(MESH)
  batch = {k: jnp.asarray(batch[k]) for k in objective.batch_keys}
  with sharding.mesh_context(mesh):
    state, _, _ = place(objective, batch, mesh)
    params = state.params
    if projection == 'shared':  # Identity: the student's states are the teacher's.
      width = params['hidden_projection']['kernel'].shape[-1]
      params = {**params, 'hidden_projection': {
          'kernel': jnp.eye(width)[None], 'bias': jnp.zeros((1, width))}}
    loss_fn = jax.jit(lambda p, f, b: objective.loss_fn(
        p, b, jax.random.PRNGKey(0), True, frozen=f)[1])
    metrics = metrics_lib.average(loss_fn(params, state.frozen, batch))
    if projection == 'shared':
      # Another student: the ids at padded positions reach no term (padded rows are
      # skipped, padded keys masked).
      rng = np.random.default_rng(1)
      params = jax.tree.map(
          lambda x: np.asarray(x) + 0.05 * rng.standard_normal(x.shape, np.float32),
          params)
      other = dict(batch, input_ids=jnp.where(batch['attention_mask'] == 1,
                                              batch['input_ids'], 7))
      padded = [metrics_lib.average(loss_fn(params, state.frozen, b))
                for b in (batch, other)]
  assert batch['attention_mask'].min() == 0  # The batch has padding.
  for term in ('ce_loss', 'cos_loss', 'attention_mse', 'embedding_mse', 'hidden_mse'):
    assert abs(metrics[term]) < 1e-5, (term, metrics[term])
  assert metrics['teacher_agreement'] == 1.0
  assert metrics['mlm_accuracy'] == metrics['teacher_mlm_accuracy']
  # The MLM term of a copy is the teacher's own MLM loss.
  teacher_model = mlm_model.MaskedLMModel(ml_collections.ConfigDict(
      {**tiny_config('bert').model.to_dict(), 'num_layers': TEACHER_LAYERS}))
  heads = model_dir.set_layer_layout(teacher_params, True)
  logits = teacher_model.apply({'params': {k: heads[k] for k in ('encoder', 'mlm_head')}},
                               batch)['mlm_logits']
  teacher_mlm, _ = objectives.masked_lm_loss(logits, batch['masked_ids'],
                                             batch['masked_weights'])
  np.testing.assert_allclose(metrics['mlm_loss'], float(teacher_mlm), rtol=1e-5)
  if projection == 'shared':
    for term in ('ce_loss', 'cos_loss', 'attention_mse', 'embedding_mse', 'hidden_mse',
                 'mlm_loss'):
      assert padded[0][term] > 1e-4, term
      np.testing.assert_allclose(padded[0][term], padded[1][term], rtol=1e-6,
                                 err_msg=term)


# ----------------------------------------------------------- a run, resumed


def run(config, workdir, **kwargs):
  """What `pretraining.pretrain` does for a distillation run: the config completed
  by the objective (the teacher's tokenizer), the student's start from the teacher."""
  config = objectives.configure(config)
  data = pipeline.build_data(config, workdir)
  objective = objectives.get_objective(config)
  return loop.run(config, workdir, objective=objective,
                  train_iter=iter(data.train.to_iter_dataset(pipeline.read_options(1))),
                  example_batch=data.train[0],
                  eval_sets=pretraining.evaluation_sets(data),
                  init_params=objective.init_params, **kwargs)


@pytest.fixture(scope='module')
def trained_teacher(tmp_path_factory):
  """A tiny 4-layer BERT pretraining workdir, as the demo's teacher is."""
  workdir = str(tmp_path_factory.mktemp('trained_teacher'))
  config = tiny_config('bert')
  config.model.num_layers = TEACHER_LAYERS
  config.train.update(steps=40, eval_every=40, checkpoint_every=40)
  pretraining.pretrain(config, workdir)
  return workdir


def test_a_distillation_run_learns_and_resumes_with_the_same_teacher(trained_teacher,
                                                                     tmp_path):
  """TinyBERT's terms with soft targets and MLM, a student half the teacher's width
  (through the projection), from scratch; stopped at step 20 and resumed."""
  config = student_config('tinybert', trained_teacher, alpha_ce=1.0, alpha_mlm=1.0)
  config.model.hidden_size = 32
  workdir = str(tmp_path / 'student')
  states = {}

  def keep(step, metrics, state, predict):
    del metrics, predict
    states[step] = jax.tree.map(np.asarray, {'params': state.params,
                                             'frozen': state.frozen,
                                             'opt_state': state.opt_state})

  run(config, workdir, stop_after=20, on_eval=keep)
  # Another teacher named on resume is refused before anything is loaded.
  other = str(tmp_path / 'other_teacher')
  shutil.copytree(trained_teacher, other)
  before = sorted(os.listdir(workdir))
  with pytest.raises(UserError, match='started with teacher .* config now names'):
    run(_with_teacher(config, other), workdir)
  assert sorted(os.listdir(workdir)) == before
  summary = run(config, workdir, on_eval=keep)
  assert summary['step'] == 40
  first, last = summary['first_eval'], summary['eval']
  assert last['mlm_accuracy'] > first['eval_mlm_accuracy'] + 0.03
  for term in ('ce_loss', 'attention_mse', 'hidden_mse', 'embedding_mse'):
    assert last[term] < 0.7 * first[f'eval_{term}'], term
  assert last['teacher_agreement'] > first['eval_teacher_agreement'] + 0.3
  # After 40 steps (and a resume) the teacher is its checkpoint's params bit for bit;
  # the optimizer holds moments for the student's params only, all of which moved.
  teacher_params, _ = model_dir.restore_params(trained_teacher)
  expected = unrolled(teacher_params)
  frozen = unrolled(states[40]['frozen'])
  assert set(frozen) == {n for n in expected if n.startswith(('encoder/', 'mlm_head/'))}
  for name, value in frozen.items():
    np.testing.assert_array_equal(value, expected[name], err_msg=name)
  params = states[40]['params']
  assert set(params) == {'encoder', 'mlm_head', 'hidden_projection'}
  moments = [x for x in jax.tree.leaves(states[40]['opt_state']) if np.ndim(x) > 0]
  assert sum(x.size for x in moments) == 2 * sum(x.size for x in jax.tree.leaves(params))
  start = unrolled(states[0]['params'])
  assert not [n for n, v in unrolled(params).items() if np.array_equal(v, start[n])]
  # The run recorded its teacher (pinned to its checkpoint) and its tokenizer.
  record = model_dir.read_json(os.path.join(workdir, frozen_lib.RECORD))['teacher']
  assert record['source'] == trained_teacher and record['step'] == 40
  recorded = model_dir.read_json(os.path.join(workdir, 'config.json'))
  assert recorded['tokenizer']['path'] == os.path.join(trained_teacher, 'tokenizer.model')
  assert summary['frozen']['teacher']['parameters'] > summary['parameters']
  state_dir = os.path.join(workdir, 'checkpoints', '40', 'state')
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  saved = ocp.PyTreeCheckpointer().metadata(state_dir).item_metadata.tree
  # No teacher in the checkpoints.
  assert set(saved['params']) == {'encoder', 'mlm_head', 'hidden_projection'}


def _with_teacher(config, path):
  config = config.copy_and_resolve_references()
  config.teacher.path = path
  return config


def test_frequency_masking_masks_rare_tokens_more():
  """DistilBERT's mlm_smoothing: p(token) ~ count^-0.7 (masking.strategy 'frequency')."""
  from common.data import mask_strategies  # pylint: disable=g-import-not-at-top
  special = np.array([0, 1, 2, 3, 4])
  common, rare = 10, 11
  row = np.array([2] + [common] * 40 + [rare] * 10 + [3] + [0] * 12, np.int32)
  counts = np.zeros(20)
  counts[common], counts[rare] = 4000, 1000
  weights = np.maximum(counts, 1) ** -0.7
  weights[special] = 0
  vocab = mask_strategies.MaskingVocab(
      mask_id=4, pad_id=0, special_ids=special, random_token_ids=np.arange(5, 20),
      is_word_start=np.ones(20, bool), token_weights=weights)
  cfg = ml_collections.ConfigDict(dict(
      strategy='frequency', mask_prob=0.15, mask_token_prob=0.8, random_token_prob=0.1,
      max_predictions_per_seq=10, budget='bert'))
  picked = {common: 0, rare: 0}
  for seed in range(300):
    out = mask_strategies.mask_row(row, np.random.default_rng(seed), cfg, vocab)
    k = int(out['masked_weights'].sum())
    assert k == round(0.15 * 52)  # BERT's budget over the row's real tokens.
    for token in out['masked_ids'][:k]:
      picked[int(token)] += 1
  # Per token, a rare one is picked (4000/1000)^0.7 = 2.6x as often (less at this
  # budget: sampling without replacement saturates the ten rare ones).
  ratio = (picked[rare] / 10) / (picked[common] / 40)
  assert 2.0 < ratio < 2.7, ratio


@pytest.mark.parametrize('recipe', ['distilbert', 'tinybert'])
def test_flops_formula_matches_xla_cost_analysis(setup, recipe, tmp_path):
  """Student training + teacher forward (+ heads at every token, projections)."""
  _, _, tokenizer, batch = setup
  # Unrolled layers: XLA's cost analysis counts a scan's (while loop's) body once.
  wide = dict(hidden_size=256, intermediate_size=1024, num_heads=4, num_layers=2,
              scan_layers=False, dropout_rate=0.0, attention_dropout_rate=0.0)
  teacher_config = ml_collections.ConfigDict({**tiny_config('bert').model.to_dict(),
                                              **wide})
  teacher_model = mlm_model.MaskedLMModel(teacher_config)
  jbatch = {k: jnp.asarray(v) for k, v in batch.items()}
  teacher = str(tmp_path / 'teacher')
  with model_dir.atomic_directory(teacher) as tmp:
    model_dir.write_contents(tmp, perturbed_params(teacher_model, jbatch, 0),
                             teacher_config.to_dict(), {'objective': 'mlm'})
    shutil.copy(tokenizer, tmp)
  config = student_config(recipe, teacher, alpha_ce=1.0)
  config.model.update(wide)
  if recipe == 'tinybert':
    config.model.update(hidden_size=128, intermediate_size=512)
  config.masking.max_predictions_per_seq = batch['masked_positions'].shape[1]
  objective = objectives.get_objective(objectives.configure(config))
  mesh = sharding.make_mesh(MESH)
  with sharding.mesh_context(mesh):
    state, shardings, tx = place(objective, batch, mesh)
    step = train_step.make_train_step(objective, tx, lambda s: 1e-3, shardings, mesh)
    compiled = step.lower(state, {k: jbatch[k] for k in objective.batch_keys},
                          jax.random.PRNGKey(1)).compile()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  xla_per_token = cost['flops'] / batch['input_ids'].size
  # XLA also counts LayerNorm, softmax, GeLU, the KL and the optimizer.
  assert 1.0 <= xla_per_token / objective.flops_per_token < 1.08, (
      xla_per_token, objective.flops_per_token)


# ------------------------------------------------------------------ bad input


def test_bad_teachers_are_refused_with_one_line(setup, tmp_path):
  teacher, _, _, _ = setup
  config = student_config('distilbert', '')
  with pytest.raises(UserError, match=r'teacher.path is not set.*'
                     r'python -m launch.train --config=experiments/bert.py:demo '
                     r'--workdir=/tmp/bert_demo'):
    objectives.configure(config)
  for path, message in [
      (str(tmp_path / 'nowhere'), 'does not exist'),
      (str(tmp_path), 'neither a training workdir'),
  ]:
    with pytest.raises(UserError, match=message):
      objectives.configure(student_config('distilbert', path))
  hf_dir = tmp_path / 'hf'
  hf_dir.mkdir()
  (hf_dir / 'config.json').write_text('{"model_type": "bert"}')
  with pytest.raises(UserError, match='Hugging Face directory: import it first'):
    objectives.configure(student_config('distilbert', str(hf_dir)))
  no_tokenizer = str(tmp_path / 'no_tokenizer')
  shutil.copytree(teacher, no_tokenizer)
  os.remove(os.path.join(no_tokenizer, 'tokenizer.model'))
  with pytest.raises(UserError, match='has no tokenizer file'):
    objectives.configure(student_config('distilbert', no_tokenizer))
  config = student_config('distilbert', teacher)
  config.train.init_from = teacher
  with pytest.raises(UserError, match='both choose where the student starts'):
    objectives.configure(config)
  electra = str(tmp_path / 'electra')
  shutil.copytree(teacher, electra)
  model_dir.write_json(os.path.join(electra, 'source.json'), {'objective': 'electra'})
  with pytest.raises(UserError, match="objective 'electra'"):
    objectives.configure(student_config('distilbert', electra))


def test_a_student_that_cannot_read_or_match_the_teacher_is_refused(setup, tmp_path):
  teacher, _, _, _ = setup
  other_tokenizer = str(tmp_path / 'other.model')  # Same corpus and size, BPE.
  train_docs, _ = corpus.load_corpus(tiny_config('distilbert').data)
  tokenizer_lib.Tokenizer.train(corpus.corpus_sentences(train_docs), 600, 'bpe').save(
      other_tokenizer)
  cases = [
      (dict(tokenizer=dict(path=other_tokenizer)), "is not the tokenizer of teacher"),
      (dict(model=dict(vocab_size=700)), "vocabulary of 600 tokens but model.vocab_size "
       "is 700; the student uses the teacher's tokenizer: set "
       '--config.model.vocab_size=600'),
      (dict(teacher=dict(layer_map='0,4')),
       'names teacher layer 4, but the teacher has 4'),
      (dict(model=dict(hidden_size=32)), '32 wide and teacher .* 64: comparing hidden '
       'states .* --config.teacher.hidden_projection=shared'),
      (dict(model=dict(num_heads=4), objective=dict(alpha_attention=1.0)),
       '4 attention heads and teacher .* 2'),
      (dict(objective=dict(alpha_ce=0.0, alpha_mlm=0.0, alpha_cos=0.0)),
       'every distillation weight'),
      (dict(objective=dict(soft_target_positions='some')), 'soft_target_positions'),
  ]
  for fields, message in cases:
    config = student_config('distilbert', teacher)
    for section, values in fields.items():
      config[section].update(values)
    with pytest.raises(UserError, match=message):
      objectives.get_objective(objectives.configure(config))
  # A student started from its teacher keeps its widths.
  config = student_config('tinybert', teacher)
  config.model.hidden_size = 32
  config.teacher.init_student = True
  objective = objectives.get_objective(objectives.configure(config))
  mesh = sharding.make_mesh(MESH)
  with pytest.raises(UserError, match=r"student's encoder/.* has shape .* but the "
                     "teacher's"):
    with sharding.mesh_context(mesh):
      place(objective, setup[3], mesh)


def test_the_command_line_names_the_teacher_command_and_leaves_nothing(tmp_path):
  workdir = tmp_path / 'student'
  result = subprocess.run(
      [sys.executable, '-m', 'launch.train', '--config=experiments/distilbert.py:demo',
       f'--workdir={workdir}'], cwd=REPO, capture_output=True, text=True, timeout=300,
      env={**os.environ, 'JAX_PLATFORMS': 'cpu'})
  assert result.returncode == 2
  lines = result.stderr.strip().splitlines()
  assert lines == [f'error: teacher.path is not set: distillation needs a teacher, e.g. '
                   f'the BERT demo made by `{distillation.DEMO_TEACHER_COMMAND}`, then '
                   '--config.teacher.path=/tmp/bert_demo'], result.stderr
  assert not workdir.exists() or not os.listdir(workdir)


# ------------------------------------------------------------ sizes and exports


def our_count(config, teacher_width):
  model = distillation.student_model(config.model, config.teacher.hidden_projection,
                                     teacher_width)
  batch = {k: jnp.ones((1, 8), jnp.int32)
           for k in ('input_ids', 'segment_ids', 'attention_mask')}
  batch['masked_positions'] = jnp.zeros((1, 2), jnp.int32)
  shapes = nn.unbox(jax.eval_shape(model.init, jax.random.PRNGKey(0), batch))['params']
  count = lambda tree: sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))
  projection = count(shapes.pop('hidden_projection', {}))
  return count(shapes), projection


# size -> (the HF class and config that hold the student, the teacher's hidden size,
# HF's count: paper figures in experiments/distilbert.py and experiments/tinybert.py).
HF_SIZES = {
    ('distilbert', 'base'): ('DistilBertForMaskedLM', {}, 768, 66_985_530),
    ('distilbert', 'demo'): ('DistilBertForMaskedLM', dict(
        vocab_size=4000, dim=128, n_layers=2, n_heads=2, hidden_dim=512), 128, None),
    ('tinybert', '4l'): ('BertForMaskedLM', dict(
        hidden_size=312, num_hidden_layers=4, num_attention_heads=12,
        intermediate_size=1200), 768, 14_381_394),
    ('tinybert', '6l'): ('BertForMaskedLM', dict(num_hidden_layers=6), 768, 66_987_066),
    ('tinybert', 'demo'): ('BertForMaskedLM', dict(
        vocab_size=4000, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=256), 128, None),
}


@pytest.mark.parametrize('recipe, size', sorted(HF_SIZES))
def test_every_size_has_the_parameters_of_its_hf_class(recipe, size):
  torch, transformers = conftest.import_hf()
  name, fields, teacher_width, expected = HF_SIZES[recipe, size]
  config = {'distilbert': distilbert, 'tinybert': tinybert}[recipe].get_config(size)
  assert set(HF_SIZES) >= {(recipe, s) for s in
                           {'distilbert': distilbert, 'tinybert': tinybert}[recipe].SIZES}
  architecture = getattr(transformers, name)
  config_class = getattr(transformers, name.replace('ForMaskedLM', 'Config'))
  with torch.device('meta'):
    hf_model = architecture(config_class(**fields))
  theirs = sum(p.numel() for p in hf_model.parameters())
  ours, projection = our_count(config, teacher_width)
  assert ours == theirs
  if expected is not None:
    assert theirs == expected
  if config.teacher.hidden_projection == 'shared':
    h = config.model.hidden_size
    assert projection == h * teacher_width + teacher_width
  else:
    assert projection == 0


def test_experiment_files_state_their_recipes():
  d = distilbert.get_config('base')
  assert (d.model.num_layers, d.model.hidden_size, d.model.type_vocab_size) == (6, 768, 0)
  assert (d.objective.alpha_ce, d.objective.alpha_mlm, d.objective.alpha_cos,
          d.objective.distill_temperature) == (5.0, 2.0, 1.0, 2.0)
  assert d.teacher.init_student and d.teacher.layer_map == 'spread'
  assert (d.optimizer.learning_rate, d.optimizer.eps, d.optimizer.clip_norm,
          d.optimizer.warmup_steps) == (5e-4, 1e-6, 5.0, int(0.05 * d.train.steps))
  assert d.masking.dynamic and d.data.packing == 'doc_sentences'
  t = tinybert.get_config('4l')
  assert (t.objective.alpha_attention, t.objective.alpha_hidden, t.objective.alpha_ce,
          t.objective.alpha_mlm) == (1.0, 1.0, 0.0, 0.0)
  assert t.teacher.layer_map == 'block_last' and t.teacher.hidden_projection == 'shared'
  # The base declares the fields at the code's defaults.
  o = tiny_config('bert').objective
  assert (o.alpha_ce, o.alpha_mlm, o.alpha_cos, o.alpha_attention, o.alpha_hidden,
          o.distill_temperature) == (
              distillation.ALPHA_CE, distillation.ALPHA_MLM, distillation.ALPHA_COS,
              distillation.ALPHA_ATTENTION, distillation.ALPHA_HIDDEN,
              distillation.TEMPERATURE)


@pytest.mark.parametrize('recipe, architecture', [
    ('distilbert', 'DistilBertForMaskedLM'), ('tinybert', 'BertForMaskedLM')])
def test_students_export_to_transformers_with_the_same_outputs(recipe, architecture,
                                                               tmp_path):
  torch, transformers = conftest.import_hf()
  from tests import test_hf_interop as interop  # pylint: disable=g-import-not-at-top
  config = tiny_config(recipe)
  config.model.update(vocab_size=interop.V, max_position_embeddings=40, num_layers=2,
                      hidden_size=32, num_heads=2, intermediate_size=64)
  config.teacher.hidden_projection = 'shared' if recipe == 'tinybert' else 'none'
  model = distillation.student_model(config.model, config.teacher.hidden_projection, 48)
  token_types = recipe == 'tinybert'
  batch = interop.make_batch(0, token_types)
  params = perturbed_params(model, {k: jnp.asarray(v) for k, v in batch.items()}, 3)
  model_config = config.model.to_dict()
  ours_dir = str(tmp_path / 'ours')
  with model_dir.atomic_directory(ours_dir) as tmp:
    model_dir.write_contents(tmp, params, model_config, {'objective': 'distillation'})
  result = hf_checkpoint.export_dir(ours_dir, str(tmp_path / 'hf'))
  assert result['architectures'] == {'.': architecture}
  # The projection is left out, with a note.
  assert any('hidden_projection' in n for n in result['notes']) == (recipe == 'tinybert')
  hf_model = getattr(transformers, architecture).from_pretrained(str(tmp_path / 'hf'))

  out, state = model.apply({'params': params}, {k: jnp.asarray(v)
                                                for k, v in batch.items()},
                           mutable=['intermediates'])
  from common.model import encoder as encoder_lib  # pylint: disable=g-import-not-at-top
  ours = {'hidden': np.asarray(out['hidden']),
          'mlm_logits': np.asarray(out['mlm_logits']),
          'layers': np.stack([np.asarray(x) for x in encoder_lib.layer_intermediates(
              state['intermediates']['encoder'], config.model)])}
  diffs = interop.max_differences(
      ours, interop.run_hf(torch, {'': hf_model}, batch, token_types), batch)
  interop.report(recipe, 'export', diffs)
