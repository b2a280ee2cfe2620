"""ELECTRA: no gradient through the sample, labels, shared embeddings, sizes, export."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common.model import encoder
from common.train import flops
from common.train import objectives
from common.train import pretraining
from common.errors import UserError
from electra_jax import export
from electra_jax import model as model_lib
from electra_jax import objective as electra_objective
from experiments import electra as electra_experiment
from tests.conftest import tiny_config

V, L, P = 50, 12, 4


TINY_MODEL = dict(vocab_size=V, hidden_size=32, num_layers=1, num_heads=2,
                  intermediate_size=64, embedding_size=16, generator_hidden_fraction=0.5,
                  dropout_rate=0.0, attention_dropout_rate=0.0)


def tiny_electra_config(**model_overrides):
  config = tiny_config('electra')
  config.model.update({**TINY_MODEL, **model_overrides})
  return config


def tiny_model_config(**overrides):
  return tiny_electra_config(**overrides).model


def random_batch(seed=0, batch_size=3):
  """A masked batch as the pipeline builds it: padding, [MASK]=3, padded targets."""
  rng = np.random.default_rng(seed)
  lengths = np.array([L, L - 3, L - 5])[:batch_size]
  mask = (np.arange(L)[None] < lengths[:, None]).astype(np.int32)
  original = rng.integers(5, V, (batch_size, L)) * mask
  positions = np.zeros((batch_size, P), np.int32)
  weights = np.zeros((batch_size, P), np.float32)
  for b, n in enumerate(lengths):
    k = P - b  # Row b has b padding entries (position 0, weight 0).
    positions[b, :k] = np.sort(rng.choice(np.arange(1, n - 1), k, replace=False))
    weights[b, :k] = 1.0
  masked_ids = np.take_along_axis(original, positions, 1) * (weights > 0)
  input_ids = original.copy()
  for b in range(batch_size):
    for p, w in zip(positions[b], weights[b]):
      if w and rng.random() < 0.85:
        input_ids[b, p] = 3
  batch = {'input_ids': input_ids, 'segment_ids': np.zeros_like(input_ids),
           'attention_mask': mask, 'masked_positions': positions,
           'masked_ids': masked_ids, 'masked_weights': weights}
  return {k: jnp.asarray(v) for k, v in batch.items()}, original


def init_params(config, batch):
  model = model_lib.ElectraModel(config)
  params = jax.jit(lambda b: nn.unbox(model.init(jax.random.key(0), b))['params'])(batch)
  return model, params


@pytest.fixture(scope='module')
def tiny_params():
  """Params of the tiny model, initialised once for the tests that need values."""
  batch, _ = random_batch()
  return init_params(tiny_model_config(), batch)[1]


def param_shapes(config, batch):
  model = model_lib.ElectraModel(config)
  return nn.unbox(jax.eval_shape(model.init, jax.random.key(0), batch))['params']


def flat_names(tree):
  return [jax.tree_util.keystr(path) for path, _ in
          jax.tree_util.tree_flatten_with_path(tree)[0]]


def test_generator_size_follows_the_reference():
  # get_generator_config: round(H * fraction), FFN 4x, max(1, hidden // 64) heads.
  expected = {'small': (64, 256, 1), 'base': (256, 1024, 4), 'large': (256, 1024, 4)}
  for size, (hidden, ffn, heads) in expected.items():
    config = electra_experiment.get_config(size).model
    spec = model_lib.generator_spec(config)
    assert (spec.hidden_size, spec.intermediate_size, spec.num_heads) == (
        hidden, ffn, heads), size
    assert spec.num_layers == config.num_layers
    assert spec.embedding_size == (config.embedding_size or config.hidden_size)
  config = electra_experiment.get_config('small').model
  config.generator_hidden_fraction = 1.0  # ELECTRA-Small++
  assert model_lib.generator_spec(config).hidden_size == 256
  config.generator_hidden_fraction = 0.0
  with pytest.raises(UserError, match='generator_hidden_fraction'):
    model_lib.generator_spec(config)


def test_shared_embeddings_are_one_parameter():
  batch, _ = random_batch()
  params = param_shapes(tiny_model_config(), batch)
  names = flat_names(params)
  for table in ('token_embed', 'position_embed', 'type_embed', "['layer_norm']"):
    assert len([n for n in names if table in n]) in (1, 2), table  # (scale, bias)
  tables = [n for n in names if 'token_embed' in n]
  assert tables == ["['embeddings']['token_embed']['embedding']"]
  assert 'embeddings' not in params['generator']
  assert 'embeddings' not in params['discriminator']
  # Each network has its own E -> H projection (E=16; generator 16, discriminator 32).
  assert 'embedding_projection' in params['discriminator']
  assert 'embedding_projection' not in params['generator']
  params = param_shapes(tiny_model_config(generator_hidden_fraction=0.25), batch)
  assert params['generator']['embedding_projection']['kernel'].shape == (16, 8)


def test_corrupted_ids_and_labels():
  batch, original = random_batch()
  positions, weights = np.asarray(batch['masked_positions']), np.asarray(
      batch['masked_weights'])
  np.testing.assert_array_equal(electra_objective.original_ids(batch), original)
  # Samples: the original token at slot 0 of every row (a correct sample), another
  # token elsewhere; padding slots carry a value that must never be written.
  sampled = (np.asarray(batch['masked_ids']) % (V - 6)) + 5 + 1
  sampled[:, 0] = np.asarray(batch['masked_ids'])[:, 0]
  sampled[weights == 0] = V - 1
  corrupted, labels = electra_objective.corrupt(batch, jnp.asarray(sampled))
  corrupted, labels = np.asarray(corrupted), np.asarray(labels)
  expected = original.copy()
  for b in range(len(expected)):
    for p, s, w in zip(positions[b], sampled[b], weights[b]):
      if w:
        expected[b, p] = s
  np.testing.assert_array_equal(corrupted, expected)
  np.testing.assert_array_equal(
      labels, (corrupted != original) & np.asarray(batch['attention_mask'], bool))
  rows = np.arange(len(labels))
  assert (labels[rows, positions[:, 0]] == 0).all()  # correct sample -> "original"
  assert labels.sum() == (weights > 0).sum() - len(labels)
  assert (corrupted[:, 0] == original[:, 0]).all()  # padding targets wrote nothing


def test_forward_scatters_the_generators_samples(tiny_params):
  batch, original = random_batch()
  model, params = model_lib.ElectraModel(tiny_model_config()), tiny_params
  out = jax.jit(lambda p, b: electra_objective.forward(
      model, p, b, jax.random.key(1), False))(params, batch)
  corrupted = np.asarray(out['corrupted'])
  selected = np.zeros_like(corrupted, bool)
  rows = np.arange(len(corrupted))[:, None]
  selected[rows, np.asarray(batch['masked_positions'])] = np.asarray(
      batch['masked_weights']) > 0
  np.testing.assert_array_equal(corrupted[~selected], original[~selected])
  sampled = np.asarray(out['sampled'])
  live = np.asarray(batch['masked_weights']) > 0
  gathered = np.take_along_axis(corrupted, np.asarray(batch['masked_positions']), 1)
  np.testing.assert_array_equal(gathered[live], sampled[live])
  np.testing.assert_array_equal(
      out['labels'], (corrupted != original) & np.asarray(batch['attention_mask'], bool))


def test_samples_follow_the_softmax():
  logits = jnp.log(jnp.array([0.6, 0.3, 0.1, 0.0]))
  draws = electra_objective.sample_tokens(
      jnp.broadcast_to(logits, (200, 100, 4)), jax.random.key(0))
  freq = np.bincount(np.asarray(draws).ravel(), minlength=4) / draws.size
  np.testing.assert_allclose(freq, [0.6, 0.3, 0.1, 0.0], atol=0.01)


def test_no_gradient_flows_from_the_discriminator_into_the_generator(tiny_params):
  batch, _ = random_batch()
  model = model_lib.ElectraModel(tiny_model_config(dropout_rate=0.1))
  params = tiny_params

  def losses(params):
    out = electra_objective.forward(model, params, batch, jax.random.key(2), False)
    rtd, _ = electra_objective.replaced_token_detection_loss(
        out['rtd_logits'], out['labels'], batch['attention_mask'])
    mlm, _ = objectives.masked_lm_loss(out['mlm_logits'], batch['masked_ids'],
                                       batch['masked_weights'])
    return rtd, mlm

  rtd_grads, mlm_grads = jax.jit(jax.jacrev(losses))(params)
  norm = lambda tree: float(sum(jnp.sum(jnp.abs(x)) for x in jax.tree.leaves(tree)))
  for name in ('generator', 'generator_head'):
    for path, g in jax.tree_util.tree_flatten_with_path(rtd_grads[name])[0]:
      assert not np.any(np.asarray(g)), (name, jax.tree_util.keystr(path))
    assert norm(mlm_grads[name]) > 0, name
  for name in ('discriminator', 'discriminator_head', 'embeddings'):
    assert norm(rtd_grads[name]) > 0, name
  for name in ('discriminator', 'discriminator_head'):
    assert norm(mlm_grads[name]) == 0.0, name
  assert norm(mlm_grads['embeddings']) > 0  # the shared table learns from both


def test_replaced_token_detection_metrics():
  logits = jnp.array([[2.0, -1.0, 3.0, -2.0, 5.0]])
  labels = jnp.array([[1, 1, 0, 0, 1]])
  weights = jnp.array([[1, 1, 1, 1, 0]])  # The last token is padding.
  loss, metrics = electra_objective.replaced_token_detection_loss(logits, labels, weights)
  avg = {k: float(s) / float(c) for k, (s, c) in metrics.items()}
  x, y = np.array([2.0, -1.0, 3.0, -2.0]), np.array([1, 1, 0, 0])
  ce = np.mean(np.log1p(np.exp(-x)) * y + np.log1p(np.exp(x)) * (1 - y))
  np.testing.assert_allclose(float(loss), ce, rtol=1e-6)
  np.testing.assert_allclose(avg['rtd_loss'], ce, rtol=1e-6)
  assert avg['rtd_accuracy'] == 0.5        # right on tokens 0 and 3
  assert avg['rtd_precision'] == 0.5       # predicted 0, 2; replaced 0
  assert avg['rtd_recall'] == 0.5          # replaced 0, 1; found 0
  assert avg['replaced_fraction'] == 0.5
  np.testing.assert_allclose(avg['rtd_baseline_loss'], np.log(2.0), rtol=1e-6)
  sigmoid = 1 / (1 + np.exp(-x))
  np.testing.assert_allclose(avg['rtd_prob_replaced'], sigmoid[:2].mean(), rtol=1e-6)
  np.testing.assert_allclose(avg['rtd_prob_original'], sigmoid[2:].mean(), rtol=1e-6)


def test_loss_is_mlm_plus_50_rtd(tiny_params):
  objective = objectives.get_objective(tiny_electra_config())
  assert objective.name == 'electra'
  batch, _ = random_batch()
  params = tiny_params
  loss, metrics = jax.jit(objective.loss_fn, static_argnums=3)(
      params, batch, jax.random.key(3), True)
  avg = {k: float(s) / float(c) for k, (s, c) in metrics.items()}
  np.testing.assert_allclose(float(loss), avg['mlm_loss'] + 50.0 * avg['rtd_loss'],
                             rtol=1e-5)
  for key in ('mlm_accuracy', 'rtd_accuracy', 'rtd_recall', 'sampled_correct_fraction'):
    assert 0.0 <= avg[key] <= 1.0, key


@pytest.mark.parametrize('size', ['demo', 'small', 'base', 'large'])
def test_every_size_loads_and_is_consistent(size):
  config = electra_experiment.get_config(size)
  assert config.objective.name == 'electra'
  assert config.tokenizer.vocab_size == config.model.vocab_size
  assert config.data.max_seq_length <= config.model.max_position_embeddings
  masking = config.masking
  assert (masking.mask_token_prob, masking.random_token_prob, masking.budget) == (
      0.85, 0.0, 'electra')
  # The reference's N = int((mask_prob + 0.005) * L): 19 at 128, 79 / 130 at 512.
  assert masking.max_predictions_per_seq == int(
      (masking.mask_prob + 0.005) * config.data.max_seq_length)
  assert config.data.packing == 'sentence_segments'
  assert (config.data.single_segment_prob, config.data.short_seq_prob) == (0.1, 0.05)


# Discriminator = shared embeddings + discriminator encoder + RTD head, i.e. exactly
# HF ElectraForPreTraining (ElectraModel + dense(H, H) + dense(H, 1)); the generator is
# not counted (it is discarded after pretraining). Paper: Table 1 / Table 6 (14M, 110M,
# 335M). Small: 13.55M, 3.2% under the paper's "14M", a rounding of 13.5M (the
# released checkpoint's own count); base and large are within 0.5%.
PAPER_COUNTS = {
    'small': (14e6, 0.035, 13_549_057, 13_483_008),
    'base': (110e6, 0.01, 109_483_009, 108_891_648),
    'large': (335e6, 0.01, 335_142_913, 334_092_288),
}


@pytest.mark.parametrize('size', sorted(PAPER_COUNTS))
def test_discriminator_parameter_counts(size):
  paper, tolerance, with_head, encoder_only = PAPER_COUNTS[size]
  config = electra_experiment.get_config(size)
  model = model_lib.ElectraModel(config.model)
  shapes = jax.ShapeDtypeStruct((1, 8), jnp.int32)
  batch = {'input_ids': shapes, 'segment_ids': shapes, 'attention_mask': shapes,
           'masked_positions': jax.ShapeDtypeStruct((1, 2), jnp.int32)}
  params = nn.unbox(jax.eval_shape(model.init, jax.random.key(0), batch))['params']
  count = lambda tree: sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))
  assert count(export.discriminator_params(params)) == encoder_only
  assert count(export.discriminator_params(params)) + count(
      export.discriminator_head_params(params)) == with_head
  assert abs(with_head - paper) / paper < tolerance


def test_flops_count_generator_and_discriminator():
  config = electra_experiment.get_config('base')
  seq = config.data.max_seq_length
  disc = flops.encoder_flops_per_token(config.model, seq)
  # Generator: L12 H256 FFN1024 with a 768 -> 256 projection; MLM head at 79 of 512.
  gen_layer = 4 * 256 * 256 + 2 * 256 * 1024
  gen = 6 * 12 * gen_layer + 12 * 12 * 256 * seq + 6 * 768 * 256
  head = 6 * (256 * 768 + 768 * 30522) * 79 / seq
  expected = disc + gen + head + 6 * (768 * 768 + 768)
  ours = objectives.get_objective(config).flops_per_token
  assert ours == pytest.approx(expected, rel=1e-12)
  assert ours > 1.1 * disc


@pytest.fixture(scope='module')
def electra_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('electra'))
  config = tiny_config('electra')
  # ELECTRA-Small's rate (as the demo): faster ones let the generator outpace the
  # discriminator at this scale (see experiments/electra.py).
  config.optimizer.learning_rate = 5e-4
  config.train.update(steps=150, eval_every=75, checkpoint_every=75)
  return workdir, config, pretraining.pretrain(config, workdir)


def test_tiny_electra_learns_on_heldout_data(electra_run):
  _, _, summary = electra_run
  first, last = summary['first_eval'], summary['eval']
  assert first['eval_mlm_accuracy'] < 0.01
  assert last['mlm_accuracy'] > 0.04
  # Better than answering "original" everywhere, and than the base rate.
  assert last['rtd_accuracy'] > 1.0 - last['replaced_fraction'] + 0.005
  assert last['rtd_loss'] < last['rtd_baseline_loss'] - 0.01
  assert 0.0 < last['sampled_correct_fraction'] < 1.0
  for key in ('rtd_loss', 'rtd_precision', 'rtd_recall'):
    assert key in last


def test_exported_discriminator_is_a_plain_encoder(electra_run, tmp_path):
  workdir, config, _ = electra_run
  params, step = export.restore_params(workdir)
  assert step == 150
  out_dir = export.save_discriminator(workdir, str(tmp_path / 'disc'))
  model_config, saved = export.load_discriminator(out_dir)
  batch, _ = random_batch()
  batch['input_ids'] = batch['input_ids'] % config.model.vocab_size
  inside = model_lib.ElectraModel(config.model).apply(
      {'params': params}, batch['input_ids'], batch['segment_ids'],
      batch['attention_mask'], method=model_lib.ElectraModel.discriminate)
  hidden = encoder.Encoder(model_config).apply(
      {'params': saved['encoder']}, batch['input_ids'], batch['segment_ids'],
      batch['attention_mask'])
  real = np.asarray(batch['attention_mask'], bool)
  np.testing.assert_allclose(np.asarray(hidden)[real], np.asarray(inside['hidden'])[real],
                             rtol=1e-6, atol=1e-6)
  logits = model_lib.ReplacedTokenHead(model_config).apply(
      {'params': saved['rtd_head']}, hidden)
  np.testing.assert_allclose(logits, inside['rtd_logits'], rtol=1e-5, atol=1e-5)
  with pytest.raises(UserError, match='already holds an export'):
    export.save_discriminator(workdir, out_dir)
  with pytest.raises(UserError, match='no checkpoints'):
    export.save_discriminator(str(tmp_path), str(tmp_path / 'other'))
