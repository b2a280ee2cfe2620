"""ELECTRA's Table 5 ablations: each loss on hand-made batches, FLOPs, recipes."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common.train import flops
from common.train import objectives
from electra_jax import ablations
from electra_jax import objective as electra_objective
from experiments import all_tokens_mlm
from experiments import electra
from experiments import electra_15
from experiments import replace_mlm
from tests.test_electra import random_batch
from tests.test_electra import tiny_electra_config

ABLATIONS = {'electra_15': electra_15, 'replace_mlm': replace_mlm,
             'all_tokens_mlm': all_tokens_mlm}


def tiny(objective: str):
  config = tiny_electra_config()
  config.objective.name = objective
  return config


def init(objective):
  batch, original = random_batch()
  params = jax.jit(lambda b: nn.unbox(objective.model.init(jax.random.key(0), b))[
      'params'])(batch)
  return params, batch, original


def loss(objective, params, batch, seed=3, deterministic=True):
  return jax.jit(objective.loss_fn, static_argnums=3)(params, batch, jax.random.key(seed),
                                                      deterministic)


def forward(objective, params, batch):
  return jax.jit(lambda p, b: ablations.forward(objective.model, p, b, jax.random.key(1),
                                                True, 1.0))(params, batch)


def average(metrics):
  return {k: float(s) / float(c) if float(c) else float('nan')
          for k, (s, c) in metrics.items()}


@pytest.mark.parametrize('name', sorted(ABLATIONS))
def test_recipes_are_electra_but_the_objective(name):
  for size in ('demo', 'small', 'base'):
    config, reference = ABLATIONS[name].get_config(size), electra.get_config(size)
    assert config.name == f'{name}-{size}'
    assert config.objective.name == name and config.objective.head_activation == 'gelu'
    config.objective.update(name='electra', head_activation='')
    config.name = reference.name
    assert config.to_dict() == reference.to_dict()


def test_electra_15_detects_only_at_the_masked_positions():
  batch, _ = random_batch()
  weights = np.asarray(electra_objective.masked_position_weights(batch))
  expected = np.zeros_like(weights)
  positions, live = np.asarray(batch['masked_positions']), np.asarray(
      batch['masked_weights']) > 0
  for b in range(len(expected)):
    expected[b, positions[b][live[b]]] = 1
  np.testing.assert_array_equal(weights, expected)
  # Its loss ignores the detector's output wherever nothing was masked out.
  rng = np.random.default_rng(0)
  logits = jnp.asarray(rng.normal(size=weights.shape), jnp.float32)
  labels = jnp.asarray(rng.integers(0, 2, weights.shape))
  changed = jnp.where(weights > 0, logits, logits + 5.0)
  loss = electra_objective.replaced_token_detection_loss(logits, labels, weights)[0]
  same = electra_objective.replaced_token_detection_loss(changed, labels, weights)[0]
  assert float(loss) == float(same)
  whole = electra_objective.replaced_token_detection_loss(
      changed, labels, batch['attention_mask'])[0]
  assert float(whole) != float(loss)


def test_electra_15_loss_is_mlm_plus_50_rtd_on_masked_tokens():
  objective = objectives.get_objective(tiny('electra_15'))
  params, batch, _ = init(objective)
  total, metrics = loss(objective, params, batch)
  avg = average(metrics)
  np.testing.assert_allclose(float(total), avg['mlm_loss'] + 50 * avg['rtd_loss'],
                             rtol=1e-5)
  masked = float(np.asarray(batch['masked_weights']).sum())
  assert float(metrics['rtd_loss'][1]) == masked  # counted over masked tokens only


def test_replace_mlm_reads_generator_samples_at_the_masked_positions():
  objective = objectives.get_objective(tiny('replace_mlm'))
  params, batch, original = init(objective)
  out = forward(objective, params, batch)
  corrupted = np.asarray(out['corrupted'])
  positions, live = np.asarray(batch['masked_positions']), np.asarray(
      batch['masked_weights']) > 0
  gathered = np.take_along_axis(corrupted, positions, 1)
  np.testing.assert_array_equal(gathered[live], np.asarray(out['sampled'])[live])
  assert not (gathered[live] == 3).all()  # samples, not [MASK] (id 3)
  selected = np.zeros_like(corrupted, bool)
  selected[np.arange(len(corrupted))[:, None], positions] = live
  np.testing.assert_array_equal(corrupted[~selected], original[~selected])
  assert out['mlm_logits'].shape == (*positions.shape, tiny('replace_mlm').model.vocab_size)
  total, metrics = loss(objective, params, batch)
  avg = average(metrics)
  np.testing.assert_allclose(float(total), avg['generator_mlm_loss'] + avg['mlm_loss'],
                             rtol=1e-5)


def test_copy_mixture_loss_by_hand():
  # One sequence of 3 tokens over a vocabulary of 3; D = sigmoid(c).
  logits = jnp.log(jnp.array([[[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.3, 0.3, 0.4]]]))
  copy_logits = jnp.array([[0.0, 2.0, -1.0]])
  inputs = jnp.array([[0, 1, 2]])
  targets = jnp.array([[0, 2, 1]])  # token 0 kept; tokens 1, 2 were replaced
  loss, correct, d = ablations.copy_mixture_loss(logits, copy_logits, inputs, targets)
  sig = 1 / (1 + np.exp(-np.array([0.0, 2.0, -1.0])))
  expected = -np.log([sig[0] + (1 - sig[0]) * 0.7,   # copied: D + (1 - D) p
                      (1 - sig[1]) * 0.8,             # replaced: (1 - D) p only
                      (1 - sig[2]) * 0.3])
  np.testing.assert_allclose(np.asarray(loss)[0], expected, rtol=1e-5)
  np.testing.assert_allclose(np.asarray(d)[0], sig, rtol=1e-6)
  # argmax of the mixture: 0 (copy); at 1, D=0.88 on input 1 beats 0.12 x 0.8 on 2;
  # at 2, 0.27 + 0.73 x 0.4 on input 2 beats 0.73 x 0.3 on the target 1.
  np.testing.assert_array_equal(np.asarray(correct)[0], [True, False, False])
  grads = jax.grad(lambda c: ablations.copy_mixture_loss(logits, c, inputs, targets)[0]
                   .sum())(copy_logits)
  assert np.all(np.isfinite(np.asarray(grads)))


def test_all_tokens_mlm_predicts_every_token():
  config = tiny('all_tokens_mlm')
  objective = objectives.get_objective(config)
  params, batch, original = init(objective)
  assert 'copy_head' in params and 'mlm_head' in params
  out = jax.eval_shape(lambda p, b: ablations.forward(
      objective.model, p, b, jax.random.key(1), True, 1.0), params, batch)
  assert out['mlm_logits'].shape == (*original.shape, config.model.vocab_size)
  assert out['copy_logits'].shape == original.shape
  (total, metrics), grads = jax.jit(jax.value_and_grad(
      lambda p: objective.loss_fn(p, batch, jax.random.key(1), True), has_aux=True))(
          params)
  avg = average(metrics)
  assert float(metrics['all_tokens_loss'][1]) == float(batch['attention_mask'].sum())
  np.testing.assert_allclose(float(total),
                             avg['generator_mlm_loss'] + avg['all_tokens_loss'], rtol=1e-5)
  assert all(np.all(np.isfinite(np.asarray(g))) for g in jax.tree.leaves(grads))
  assert float(jnp.abs(grads['copy_head']['kernel']).sum()) > 0


def test_flops_per_token():
  for size in ('small', 'base'):
    config = electra.get_config(size)
    seq, model = config.data.max_seq_length, config.model
    predictions = config.masking.max_predictions_per_seq
    generator = electra_objective.generator_flops_per_token(config)
    electra_flops = objectives.get_objective(config).flops_per_token
    get = lambda name: objectives.get_objective(ABLATIONS[name].get_config(size))
    # ELECTRA 15%: the same networks on the same tokens, the loss only reweighted.
    assert get('electra_15').flops_per_token == electra_flops
    # Replace MLM: generator + BERT's encoder and MLM head at the masked positions.
    encoder = flops.encoder_flops_per_token(model, seq)
    mlm_head = flops.mlm_head_flops_per_token(model, seq, predictions)
    assert get('replace_mlm').flops_per_token == pytest.approx(
        generator + encoder + mlm_head, rel=1e-12)
    # All-Tokens MLM: the head at every position and the copy layer (H -> 1).
    every = flops.mlm_head_flops_per_token(model, seq, seq)
    assert every == pytest.approx(mlm_head * seq / predictions, rel=1e-12)
    assert get('all_tokens_mlm').flops_per_token == pytest.approx(
        generator + encoder + every + 6 * model.hidden_size, rel=1e-12)
    assert get('all_tokens_mlm').flops_per_token > electra_flops
