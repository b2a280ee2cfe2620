"""The one train step: gradient accumulation, sharding rules, optimizer pieces.

Layouts over 8 simulated devices are tested in test_scale_out.py.
"""


import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common.model import encoder
from common.train import objectives
from common.train import optimizers
from common.train import sharding
from common.train import train_step
from tests.conftest import tiny_config


def random_batch(config, batch_size: int, seed: int = 0) -> dict[str, np.ndarray]:
  """An MLM + NSP batch with padding, as the pipeline produces."""
  rng = np.random.default_rng(seed)
  L, P, V = config.data.max_seq_length, config.masking.max_predictions_per_seq, 600
  lengths = rng.integers(L // 2, L + 1, batch_size)
  mask = (np.arange(L)[None] < lengths[:, None]).astype(np.int32)
  return {
      'input_ids': (rng.integers(5, V, (batch_size, L)) * mask).astype(np.int32),
      'segment_ids': np.zeros((batch_size, L), np.int32),
      'attention_mask': mask,
      'masked_positions': np.sort(rng.integers(1, L // 2, (batch_size, P)), 1).astype(np.int32),
      'masked_ids': rng.integers(5, V, (batch_size, P)).astype(np.int32),
      'masked_weights': (rng.random((batch_size, P)) < 0.8).astype(np.float32),
      'next_sentence_label': rng.integers(0, 2, batch_size).astype(np.int32),
  }


def run_steps(config, batches, devices=None):
  """Losses and final params of a few train steps on the given devices."""
  mesh = sharding.make_mesh(dict(config.mesh.shape), devices)
  objective = objectives.get_objective(config)
  tx, schedule = optimizers.make_optimizer(config.optimizer, 10)
  accum = config.train.grad_accum_steps
  with sharding.mesh_context(mesh):
    init_batch = {k: jnp.asarray(v[:sharding.data_parallel_size(mesh)])
                  for k, v in batches[0].items()}
    state, shardings = train_step.init_train_state(
        objective, tx, init_batch, jax.random.PRNGKey(0), mesh)
    step = train_step.make_train_step(objective, tx, schedule, shardings, mesh, accum)
    losses = []
    for batch in batches:
      state, metrics = step(state, batch, jax.random.PRNGKey(1))
      losses.append(float(metrics['loss'][0] / metrics['loss'][1]))
  return losses, jax.device_get(state.params)


def no_dropout_config():
  config = tiny_config('bert')
  config.model.update(dropout_rate=0.0, attention_dropout_rate=0.0)
  return config


def test_gradient_accumulation_matches_one_big_batch():
  config = no_dropout_config()
  config.optimizer.update(schedule='constant', learning_rate=1e-3)
  batches = [random_batch(config, 8, seed) for seed in range(2)]
  for batch in batches:  # Equal masked counts per micro-batch: the means then agree.
    batch['masked_weights'][:] = 1.0
  losses, params = run_steps(config, batches)
  config.train.grad_accum_steps = 4
  accum_losses, accum_params = run_steps(config, batches)
  np.testing.assert_allclose(accum_losses, losses, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(accum_params), jax.tree.leaves(params)):
    np.testing.assert_allclose(a, b, atol=1e-6)
  # Adam hides a gradient's scale, so compare the gradients themselves too.
  objective = objectives.get_objective(config)
  batch = {k: jnp.asarray(v) for k, v in batches[0].items()}
  variables = objective.model.init(jax.random.PRNGKey(0), batch)
  params = jax.tree.map(jnp.asarray, nn.unbox(variables['params']))
  rng = jax.random.PRNGKey(1)
  _, _, grads = train_step.accumulated_gradients(objective.loss_fn, params, batch, rng, 1)
  _, _, accum_grads = train_step.accumulated_gradients(objective.loss_fn, params, batch, rng, 4)
  for a, b in zip(jax.tree.leaves(accum_grads), jax.tree.leaves(grads)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)


def test_every_logical_axis_name_has_a_rule():
  ruled = {name for name, _ in sharding.LOGICAL_AXIS_RULES}
  assert set(encoder.LOGICAL_AXIS_NAMES) <= ruled


def test_decay_mask_excludes_layer_norm_and_biases():
  params = {'dense': {'kernel': 1.0, 'bias': 1.0}, 'layer_norm': {'scale': 1.0,
            'bias': 1.0}, 'token_embed': {'embedding': 1.0}}
  assert optimizers.decay_mask(params) == {
      'dense': {'kernel': True, 'bias': False},
      'layer_norm': {'scale': False, 'bias': False},
      'token_embed': {'embedding': True}}


def test_warmup_then_linear_decay():
  schedule = optimizers.warmup_linear_decay(1e-3, 10, 110)
  assert float(schedule(0)) == 0.0
  assert float(schedule(10)) == pytest.approx(1e-3)
  assert float(schedule(60)) == pytest.approx(5e-4)
  assert float(schedule(110)) == pytest.approx(0.0, abs=1e-12)
