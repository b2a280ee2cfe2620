"""Optimizers (common/train/optimizers.py): LAMB's trust ratio and weight decay per leaf,
and layer-wise learning-rate decay per parameter."""

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


def _encoder_like(layers: int, scanned: bool):
  """Params named as the shared encoder and a task head name them."""
  rng = np.random.default_rng(1)
  layer = lambda: {'attention': {'kernel': rng.normal(size=(2, 2))},
                   'mlp_layer_norm': {'scale': rng.normal(size=2)}}
  encoder = {'embeddings': {'token_embed': {'embedding': rng.normal(size=(5, 2))}},
             'embedding_projection': {'kernel': rng.normal(size=(2, 2))}}
  if scanned:
    encoder['layers'] = jax.tree.map(lambda *xs: np.stack(xs),
                                     *[layer() for _ in range(layers)])
  else:
    encoder.update({f'layer_{i}': layer() for i in range(layers)})
  params = {'encoder': encoder, 'pooler': {'dense': {'kernel': rng.normal(size=(2, 2))}},
            'classifier': {'kernel': rng.normal(size=(2, 3))}}
  return jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), params)


@pytest.mark.parametrize('scanned', [True, False])
def test_layer_decay_multipliers_follow_electra(scanned):
  """ELECTRA's _get_layer_lrs: lr * decay^(L + 2 - depth); embeddings 0, layer i at
  i + 1, the head (and pooler) at L + 2."""
  layers, decay = 3, 0.8
  multipliers = optimizers.layer_decay_multipliers(_encoder_like(layers, scanned),
                                                   layers, decay)
  enc = multipliers['encoder']
  assert enc['embeddings']['token_embed']['embedding'] == pytest.approx(decay ** 5)
  assert enc['embedding_projection']['kernel'] == pytest.approx(decay ** 5)
  assert multipliers['pooler']['dense']['kernel'] == 1.0
  assert multipliers['classifier']['kernel'] == 1.0
  expected = [decay ** (layers + 2 - (i + 1)) for i in range(layers)]  # 0.8^4 .. 0.8^2
  if scanned:
    stacked = enc['layers']['attention']['kernel']
    assert stacked.shape == (layers, 1, 1)
    np.testing.assert_allclose(stacked.ravel(), expected, rtol=1e-6)
  else:
    got = [enc[f'layer_{i}']['mlp_layer_norm']['scale'] for i in range(layers)]
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_make_optimizer_scales_each_layers_update():
  config = ml_collections.ConfigDict(dict(
      name='adamw', learning_rate=LR, warmup_steps=0, b1=0.9, b2=0.999, eps=1e-6,
      weight_decay=WD, clip_norm=1.0, schedule='constant', layer_decay=0.5))
  params = _encoder_like(2, scanned=True)
  grads = jax.tree.map(jnp.ones_like, params)
  decayed, _ = optimizers.make_optimizer(config, 10, num_layers=2)
  config.layer_decay = 1.0
  plain, _ = optimizers.make_optimizer(config, 10, num_layers=2)
  ratio = jax.tree.map(lambda a, b: a / b, _first_step(decayed, params, grads),
                       _first_step(plain, params, grads))
  np.testing.assert_allclose(ratio['encoder']['layers']['attention']['kernel'][:, 0, 0],
                             [0.5 ** 3, 0.5 ** 2], rtol=1e-5)
  np.testing.assert_allclose(ratio['encoder']['embeddings']['token_embed']['embedding'],
                             0.5 ** 4, rtol=1e-5)
  np.testing.assert_allclose(ratio['classifier']['kernel'], 1.0, rtol=1e-6)
  config.layer_decay = 1.5
  with pytest.raises(UserError, match='layer_decay'):
    optimizers.make_optimizer(config, 10, num_layers=2)
