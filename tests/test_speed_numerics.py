"""The speed changes keep the numbers: sampling by inverted CDF, dropout by integer
threshold, the output bias with a dot gradient, the step's Threefry-4x32 key; and the
reduced-precision path (bfloat16 compute gives the float32 loss)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common.model import categorical
from common.model import dropout
from common.model import heads
from common.train import benchmark
from common.train import objectives
from common.train import train_step
from tests.conftest import tiny_config


@pytest.mark.parametrize('vocab', [5, 128, 300])
def test_categorical_sample_follows_the_softmax(vocab):
  """Frequencies of 200k draws match softmax(logits / T) for vocabularies below, at
  and above one block; entries of probability 0 (logit -inf) never come out."""
  rng = np.random.default_rng(vocab)
  logits = rng.normal(size=vocab).astype(np.float32) * 2
  logits[rng.choice(vocab, size=max(1, vocab // 4), replace=False)] = -np.inf
  logits[0] = 3.0  # At least one finite entry, at the start of the first block.
  for temperature in (1.0, 2.0):
    draws = jax.jit(categorical.sample, static_argnums=2)(
        jax.random.key(7), jnp.broadcast_to(jnp.asarray(logits), (400, 500, vocab)),
        temperature)
    assert draws.shape == (400, 500) and draws.dtype == jnp.int32
    freq = np.bincount(np.asarray(draws).ravel(), minlength=vocab) / draws.size
    expected = np.asarray(jax.nn.softmax(jnp.asarray(logits) / temperature))
    assert not np.any(freq[np.isneginf(logits)])
    # 4.5 standard errors of a binomial frequency over 200k draws.
    np.testing.assert_array_less(
        np.abs(freq - expected), 4.5 * np.sqrt(expected * (1 - expected) / 2e5) + 1e-6)


def test_categorical_sample_edges():
  """A single finite entry is always drawn, at either end of a partial last block;
  rows are independent; the same key gives the same draws."""
  for hot in (0, 299):
    logits = jnp.full((64, 300), -jnp.inf).at[:, hot].set(0.0)
    np.testing.assert_array_equal(categorical.sample(jax.random.key(1), logits), hot)
  flat = jnp.zeros((4096, 130))
  draws = np.asarray(categorical.sample(jax.random.key(2), flat))
  assert len(np.unique(draws)) > 120 and draws.min() >= 0 and draws.max() < 130
  np.testing.assert_array_equal(categorical.sample(jax.random.key(2), flat), draws)


def test_dropout_rate_and_scale():
  """Drops `rate` of the elements (within 4.5 standard errors over 1M), scales the
  rest by 1 / (1 - rate), keeps the dtype; rates 0 and 1 are identity and zero."""
  x = jnp.ones((1000, 1000), jnp.bfloat16)
  for rate in (0.1, 0.5):
    y = np.asarray(dropout.dropout(x, rate, jax.random.key(3)), np.float32)
    assert dropout.dropout(x, rate, jax.random.key(3)).dtype == jnp.bfloat16
    dropped = np.mean(y == 0)
    assert abs(dropped - rate) < 4.5 * np.sqrt(rate * (1 - rate) / y.size), dropped
    np.testing.assert_allclose(np.unique(y[y != 0]), np.float32(jnp.bfloat16(1 / (1 - rate))))
  assert dropout.dropout(x, 0.0, jax.random.key(3)) is x
  assert not np.any(np.asarray(dropout.dropout(x, 1.0, jax.random.key(3)), np.float32))
  module = dropout.Dropout(0.3)
  np.testing.assert_array_equal(module.apply({}, x, deterministic=True), x)
  drawn = module.apply({}, x, deterministic=False, rngs={'dropout': jax.random.key(4)})
  assert 0.25 < np.mean(np.asarray(drawn, np.float32) == 0) < 0.35


def test_mlm_accuracy_is_argmax_accuracy_with_its_tie_rule():
  """masked_lm_loss's accuracy is mean(argmax == target) over weighted positions, ties
  going to the first index as jnp.argmax: a target tied with an earlier index is wrong,
  tied with a later one right."""
  rng = np.random.default_rng(2)
  logits = rng.normal(size=(4, 6, 50)).astype(np.float32)
  ids = rng.integers(0, 50, (4, 6))
  logits[0, 0, [3, 9]] = 10.0
  ids[0, :2] = [3, 9]  # Tied with index 9: counted right.
  logits[0, 1] = logits[0, 0]  # Tied with index 3 before it: wrong.
  logits[1, 0, ids[1, 0]] = 10.0  # Clearly right.
  weights = (rng.random((4, 6)) < 0.8).astype(np.float32)
  weights[:2, 0] = weights[0, 1] = 1.0
  _, metrics = objectives.masked_lm_loss(jnp.asarray(logits), jnp.asarray(ids),
                                         jnp.asarray(weights))
  correct, count = metrics['mlm_accuracy']
  expected = (np.argmax(logits, -1) == ids).astype(np.float32)
  assert expected[0, 0] == 1 and expected[0, 1] == 0 and expected[1, 0] == 1
  np.testing.assert_allclose(correct, np.sum(expected * weights), rtol=1e-6)
  np.testing.assert_allclose(count, weights.sum())


def test_output_bias_gradient_is_the_sum():
  rng = np.random.default_rng(1)
  logits = jnp.asarray(rng.normal(size=(4, 3, 50)), jnp.float32)
  bias = jnp.asarray(rng.normal(size=(50,)), jnp.float32)
  weights = jnp.asarray(rng.normal(size=(4, 3, 50)), jnp.float32)
  loss = lambda f: lambda l, b: jnp.sum(jnp.tanh(f(l, b)) * weights)
  ours = jax.jit(jax.value_and_grad(loss(heads.add_output_bias), argnums=(0, 1)))
  plain = jax.jit(jax.value_and_grad(loss(lambda l, b: l + b), argnums=(0, 1)))
  (value, grads), (ref_value, ref_grads) = ours(logits, bias), plain(logits, bias)
  np.testing.assert_array_equal(value, ref_value)
  np.testing.assert_array_equal(grads[0], ref_grads[0])
  np.testing.assert_allclose(grads[1], ref_grads[1], rtol=1e-6, atol=1e-6)


def test_step_key_is_threefry4x32_and_deterministic():
  raw = jax.random.PRNGKey(3)
  keys = [train_step.step_key(raw, jnp.int32(s)) for s in (0, 1, 1)]
  assert str(jax.random.key_impl(keys[0])) == train_step.STEP_RNG_IMPL
  draws = [np.asarray(jax.random.uniform(k, (64,))) for k in keys]
  np.testing.assert_array_equal(draws[1], draws[2])
  assert not np.allclose(draws[0], draws[1])
  typed = train_step.step_key(jax.random.wrap_key_data(raw), jnp.int32(1))
  np.testing.assert_array_equal(jax.random.key_data(typed), jax.random.key_data(keys[1]))


def test_bfloat16_loss_is_float32_loss():
  """model.dtype='bfloat16' (f32 params, bf16 compute) gives BERT's f32 loss (MLM +
  NSP) within bf16 precision, on the same params and batch, without dropout."""
  config = tiny_config('bert')
  config.train.batch_size = 4
  batch = benchmark.synthetic_batch(config, objectives.get_objective(config).batch_keys)
  losses = {}
  for dtype in ('float32', 'bfloat16'):
    config.model.dtype = dtype
    objective = objectives.get_objective(config)
    if dtype == 'float32':
      params = objective.model.init(jax.random.key(0), batch)['params']
      params = nn.unbox(params)
    losses[dtype] = float(jax.jit(lambda p, b, o=objective: o.loss_fn(
        p, b, jax.random.key(1), True)[0])(params, batch))
  assert np.isfinite(losses['bfloat16'])
  np.testing.assert_allclose(losses['bfloat16'], losses['float32'], rtol=2e-2)
