"""LAMB (common/train/optimizers.py): which leaves take the trust ratio and weight decay."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from common.train import optimizers
from common.errors import UserError

LR, WD = 0.01, 0.01


def _params_and_grads():
  rng = np.random.default_rng(0)
  params = {'dense': {'kernel': rng.normal(size=(4, 3)), 'bias': rng.normal(size=3)},
            'layer_norm': {'scale': 1 + 0.1 * rng.normal(size=3),
                           'bias': rng.normal(size=3)},
            'zero': {'kernel': np.zeros((2, 2))}}
  grads = jax.tree.map(lambda x: rng.normal(size=x.shape), params)
  as_f32 = lambda tree: jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), tree)
  return as_f32(params), as_f32(grads)


def _first_step(tx, params, grads):
  updates, _ = tx.update(grads, tx.init(params), params)
  return updates


def test_lamb_trust_ratio_only_on_decayed_leaves():
  params, grads = _params_and_grads()
  lamb = _first_step(optimizers.lamb(LR, weight_decay=WD), params, grads)
  adam = _first_step(optax.chain(optax.scale_by_adam(eps=1e-6),
                                 optax.scale_by_learning_rate(LR)), params, grads)
  adam_direction = jax.tree.map(lambda u: -u / LR, adam)
  # LayerNorm scale and biases: exactly Adam's step (no decay, no trust ratio).
  for path in (('dense', 'bias'), ('layer_norm', 'scale'), ('layer_norm', 'bias')):
    get = lambda tree, path=path: tree[path[0]][path[1]]
    np.testing.assert_allclose(get(lamb), get(adam), rtol=1e-6)
  # A kernel: (adam + wd w) scaled to the norm of w.
  w = params['dense']['kernel']
  u = adam_direction['dense']['kernel'] + WD * w
  expected = -LR * u * jnp.linalg.norm(w) / jnp.linalg.norm(u)
  np.testing.assert_allclose(lamb['dense']['kernel'], expected, rtol=1e-5)
  np.testing.assert_allclose(jnp.linalg.norm(lamb['dense']['kernel']),
                             LR * jnp.linalg.norm(w), rtol=1e-5)
  # A zero weight: trust ratio 1, as the reference's where(w_norm > 0, ..., 1).
  np.testing.assert_allclose(lamb['zero']['kernel'], adam['zero']['kernel'], rtol=1e-6)


def test_make_optimizer_builds_lamb_and_refuses_unknown_names():
  config = ml_collections.ConfigDict(dict(
      name='lamb', learning_rate=LR, warmup_steps=0, b1=0.9, b2=0.999, eps=1e-6,
      weight_decay=WD, clip_norm=0.0, schedule='constant'))
  params, grads = _params_and_grads()
  tx, _ = optimizers.make_optimizer(config, 10)
  expected = _first_step(optimizers.lamb(LR, weight_decay=WD), params, grads)
  for a, b in zip(jax.tree.leaves(_first_step(tx, params, grads)),
                  jax.tree.leaves(expected)):
    np.testing.assert_allclose(a, b, rtol=1e-6)
  config.name = 'lars'
  with pytest.raises(UserError, match="optimizer.name 'lars'"):
    optimizers.make_optimizer(config, 10)
