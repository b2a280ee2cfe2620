"""Invariants of the shared encoder and heads (common/model/encoder.py, common/model/heads.py).

Tiny configs on CPU, except the parameter counts, which trace paper-size models with
jax.eval_shape (no allocation) and compare with Hugging Face's module formulas.
"""

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from common.model import encoder
from common.model import heads
from common.errors import UserError

VOCAB = 64


def tiny_config(**overrides) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict(dict(
      vocab_size=VOCAB, hidden_size=16, num_layers=2, num_heads=2,
      intermediate_size=32, max_position_embeddings=16, type_vocab_size=2,
      embedding_size=None, hidden_act='gelu', dropout_rate=0.1,
      attention_dropout_rate=0.1, layer_norm_eps=1e-12, initializer_range=0.02,
      pre_layer_norm=False, scan_layers=True, remat_policy='none', dtype='float32',
      attention_impl='xla', position_offset=0))
  config.update(overrides)
  return config


class PretrainingModel(nn.Module):
  """Encoder + pooler + tied MLM head + 2-class head, the BertForPreTraining shape."""
  config: Any

  def setup(self):
    self.encoder = encoder.Encoder(self.config)
    self.pooler = heads.Pooler(self.config)
    self.mlm = heads.MaskedLMHead(self.config)
    self.nsp = heads.ClassificationHead(self.config, num_classes=2)

  def __call__(self, ids_BxL, segment_ids_BxL=None, mask_BxL=None, positions_BxP=None):
    hidden_BxLxH = self.encoder(ids_BxL, segment_ids_BxL, mask_BxL)
    logits_BxPxV = self.mlm(hidden_BxLxH, positions_BxP, self.encoder.attend)
    return logits_BxPxV, self.nsp(self.pooler(hidden_BxLxH))


def random_ids(seed, shape, vocab=VOCAB):
  return jax.random.randint(jax.random.key(seed), shape, 0, vocab)


def dropout_rng(seed):
  # rbg keys compile about twice as fast as threefry on CPU; the tests only need
  # reproducible, seed-dependent masks.
  return {'dropout': jax.random.key(seed, impl='rbg')}


def random_params(model, *args, seed=0):
  """Random float32 params of the right tree, without compiling an init.

  Larger than BERT's init (and non-zero biases, LayerNorm scales != 1) so that every
  parameter matters to the outputs the tests compare.
  """
  shapes = nn.meta.unbox(jax.eval_shape(model.init, jax.random.key(0), *args))
  rng = np.random.default_rng(seed)
  def fill(path, x):
    noise = rng.normal(size=x.shape).astype(np.float32)
    if jax.tree_util.keystr(path).endswith("['scale']"):
      return jnp.asarray(1.0 + 0.1 * noise)
    return jnp.asarray(0.2 * noise)
  return jax.tree_util.tree_map_with_path(fill, shapes)['params']


def unstack_layers(encoder_params, num_layers):
  """Scanned params ('layers' with a leading L axis) -> 'layer_0' .. 'layer_{L-1}'."""
  params = dict(encoder_params)
  stacked = params.pop('layers')
  for i in range(num_layers):
    params[f'layer_{i}'] = jax.tree.map(lambda x, i=i: x[i], stacked)
  return params


def assert_trees_close(a, b, rtol, atol=1e-6):
  """Each leaf equal up to rtol times the leaf's largest magnitude (+ atol for leaves
  whose true value is 0, e.g. key biases, which softmax ignores)."""
  def check(path, x, y):
    tolerance = rtol * float(np.max(np.abs(x))) + atol
    np.testing.assert_allclose(x, y, atol=tolerance, rtol=0,
                               err_msg=jax.tree_util.keystr(path))
  jax.tree_util.tree_map_with_path(check, a, b)


IDS = random_ids(1, (2, 8))
MASK = jnp.array([[1] * 8, [1] * 5 + [0] * 3])


@pytest.mark.parametrize('overrides', [
    {},
    {'embedding_size': 8, 'pre_layer_norm': True},
    {'type_vocab_size': 0, 'scan_layers': False, 'position_offset': 2},
])
def test_output_shapes_and_sizes(overrides):
  config = tiny_config(**overrides)
  model = encoder.Encoder(config)
  params = jax.eval_shape(model.init, jax.random.key(0), IDS)
  expected = hf_counts(VOCAB, 16, 2, 32, 16, config.type_vocab_size,
                       config.embedding_size)['encoder']
  expected += 2 * 16 if config.pre_layer_norm else 0  # final LayerNorm
  assert sum(x.size for x in jax.tree.leaves(nn.meta.unbox(params))) == expected
  hidden = jax.eval_shape(model.apply, params, IDS, None, MASK)
  assert hidden.shape == (2, 8, 16) and hidden.dtype == jnp.float32


def test_initialisers_are_berts():
  model = encoder.Encoder(tiny_config(num_layers=1))
  params = nn.meta.unbox(jax.jit(model.init)(jax.random.key(0), IDS))['params']
  for path, x in jax.tree_util.tree_leaves_with_path(params):
    name = jax.tree_util.keystr(path)
    if name.endswith("['scale']"):
      np.testing.assert_array_equal(x, 1.0)
    elif name.endswith("['bias']"):
      np.testing.assert_array_equal(x, 0.0)
    else:  # truncated normal at +-2 stddev (TF's truncated_normal_initializer)
      assert np.max(np.abs(x)) <= 2 * 0.02, name
      assert 0.6 * 0.02 < np.std(x) < 1.1 * 0.02, name


def numpy_bert(params, config, ids, segment_ids, mask):
  """BERT's forward pass written out in float64 numpy, from the paper's equations."""
  erf = np.vectorize(math.erf)
  act = {'gelu': lambda x: 0.5 * x * (1 + erf(x / math.sqrt(2))),
         'gelu_new': lambda x: 0.5 * x * (1 + np.tanh(
             math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))}[config.hidden_act]
  p = jax.tree.map(lambda x: np.asarray(x, np.float64), params)

  def norm(x, ln):
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + config.layer_norm_eps) * ln['scale'] + ln['bias']

  def dense(x, d, contract=1):
    return np.tensordot(x, d['kernel'], axes=contract) + d['bias']

  emb = p['embeddings']
  positions = np.arange(ids.shape[1]) + config.position_offset
  x = (emb['token_embed']['embedding'][ids] + emb['position_embed']['embedding'][positions]
       + emb['type_embed']['embedding'][segment_ids])
  x = norm(x, emb['layer_norm'])
  if 'embedding_projection' in p:
    x = dense(x, p['embedding_projection'])
  for i in range(config.num_layers):
    layer = jax.tree.map(lambda a, i=i: a[i], p['layers'])
    att = layer['attention']
    def attention(h, att=att):
      q, k, v = (dense(h, att[name]) for name in ('query', 'key', 'value'))
      scores = np.einsum('btnd,bsnd->bnts', q, k) / math.sqrt(q.shape[-1])
      scores = np.where(mask[:, None, None, :] > 0, scores, -1e30)
      probs = np.exp(scores - scores.max(-1, keepdims=True))
      probs /= probs.sum(-1, keepdims=True)
      return dense(np.einsum('bnts,bsnd->btnd', probs, v), att['out'], contract=2)
    def ffn(h, mlp=layer['mlp']):
      return dense(act(dense(h, mlp['wi'])), mlp['wo'])
    for block, ln in ((attention, layer['attention_layer_norm']),
                      (ffn, layer['mlp_layer_norm'])):
      if config.pre_layer_norm:
        x = x + block(norm(x, ln))
      else:
        x = norm(x + block(x), ln)
  if config.pre_layer_norm:
    x = norm(x, p['final_layer_norm'])
  return x


@pytest.mark.parametrize('overrides', [
    {},
    {'embedding_size': 8, 'pre_layer_norm': True, 'hidden_act': 'gelu_new',
     'position_offset': 2, 'num_layers': 3},
])
def test_matches_numpy_reference(overrides):
  config = tiny_config(**overrides)
  model = encoder.Encoder(config)
  params = random_params(model, IDS)
  segment_ids = jnp.array([[0] * 4 + [1] * 4, [0] * 6 + [1] * 2])
  hidden = jax.jit(model.apply)({'params': params}, IDS, segment_ids, MASK)
  expected = numpy_bert(params, config, np.asarray(IDS), np.asarray(segment_ids),
                        np.asarray(MASK))
  np.testing.assert_allclose(hidden, expected, atol=2e-5)


def test_padding_is_ignored_and_attention_paths_agree():
  """Masked padding (any ids) appended leaves real tokens' outputs unchanged."""
  model = encoder.Encoder(tiny_config())
  padded = jnp.concatenate([IDS, random_ids(2, (2, 3))], axis=1)
  mask = jnp.concatenate([MASK, jnp.zeros((2, 3), MASK.dtype)], axis=1)
  params = {'params': random_params(model, padded)}

  @jax.jit
  def run_all():
    fused = lambda x, m: model.apply(params, x, None, m)
    # Asking for intermediates switches attention to its explicit-softmax path.
    explicit = lambda x, m: model.apply(params, x, None, m, mutable='intermediates')[0]
    return [f(x, m)[:, :8] for f in (fused, explicit)
            for x, m in ((IDS, MASK), (padded, mask))]

  outputs = run_all()
  for out in outputs[1:]:
    np.testing.assert_allclose(out[0], outputs[0][0], atol=1e-5)  # full-length row
    np.testing.assert_allclose(out[1, :5], outputs[0][1, :5], atol=1e-5)


def test_intermediates_are_sown_per_layer():
  model = encoder.Encoder(tiny_config())
  _, state = jax.eval_shape(
      lambda: model.init_with_output(jax.random.key(0), IDS, mutable=True))
  layers = state['intermediates']['layers']
  assert layers['hidden_states'][0].shape == (2, 2, 8, 16)
  assert layers['attention']['attention_logits'][0].shape == (2, 2, 2, 8, 8)
  assert state['intermediates']['embedding_output'][0].shape == (2, 8, 16)


def test_scan_matches_unrolled():
  scanned = encoder.Encoder(tiny_config())
  unrolled = encoder.Encoder(tiny_config(scan_layers=False))
  params = random_params(scanned, IDS)
  per_layer = unstack_layers(params, 2)
  unrolled_shapes = nn.meta.unbox(
      jax.eval_shape(unrolled.init, jax.random.key(0), IDS))['params']
  assert jax.tree.map(jnp.shape, per_layer) == jax.tree.map(jnp.shape, unrolled_shapes)
  np.testing.assert_allclose(
      jax.jit(scanned.apply)({'params': params}, IDS, None, MASK),
      jax.jit(unrolled.apply)({'params': per_layer}, IDS, None, MASK), atol=1e-5)


@pytest.mark.parametrize('policy', sorted(set(encoder.REMAT_POLICIES) - {'none'}))
def test_remat_same_outputs_and_gradients(policy):
  """No remat policy changes the loss or any gradient, dropout included."""
  params = random_params(encoder.Encoder(tiny_config()), IDS)
  weights = jax.random.normal(jax.random.key(3), (2, 8, 16))

  def loss_and_grads(remat_policy):
    model = encoder.Encoder(tiny_config(remat_policy=remat_policy))
    def loss(p):
      # The recomputed forward pass must redraw the same dropout masks.
      hidden = model.apply({'params': p}, IDS, None, MASK, deterministic=False,
                           rngs=dropout_rng(7))
      return jnp.sum(hidden * weights * MASK[..., None])
    return jax.value_and_grad(loss)(params)

  (ref_loss, ref_grads), (loss, grads) = jax.jit(
      lambda: (loss_and_grads('none'), loss_and_grads(policy)))()
  np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
  assert_trees_close(ref_grads, grads, rtol=1e-4)


@pytest.mark.parametrize('policy', sorted(encoder.REMAT_POLICIES))
def test_every_remat_policy_traces(policy):
  """Each named policy builds a gradient, scanned and unrolled (trace only)."""
  for scan_layers in (True, False):
    model = encoder.Encoder(tiny_config(remat_policy=policy, scan_layers=scan_layers))
    params = jax.eval_shape(model.init, jax.random.key(0), IDS)
    grad = jax.grad(lambda p, m=model: jnp.sum(m.apply(
        p, IDS, None, MASK, deterministic=False, rngs=dropout_rng(0))))
    jax.eval_shape(grad, params)


def test_bfloat16_compute_float32_params():
  positions = jnp.array([[1, 3], [0, 7]])
  model16 = PretrainingModel(tiny_config(dtype='bfloat16'))
  model32 = PretrainingModel(tiny_config())
  shapes = jax.eval_shape(model16.init, jax.random.key(0), IDS, None, None, positions)
  assert {x.dtype for x in jax.tree.leaves(shapes)} == {jnp.dtype(jnp.float32)}
  params = {'params': random_params(model32, IDS, None, None, positions)}
  hidden_method = lambda m, x: m.encoder(x)

  @jax.jit
  def run():
    return (model16.apply(params, IDS, None, MASK, positions),
            model16.apply(params, IDS, method=hidden_method),
            model32.apply(params, IDS, method=hidden_method))

  (logits, nsp), hidden16, hidden32 = run()
  assert logits.dtype == nsp.dtype == jnp.float32
  assert hidden16.dtype == jnp.bfloat16
  assert np.all(np.isfinite(logits))
  np.testing.assert_allclose(hidden16.astype(jnp.float32), hidden32, atol=0.1)


def test_dropout():
  model = encoder.Encoder(tiny_config())
  params = {'params': random_params(model, IDS)}
  run = jax.jit(lambda rngs, deterministic: model.apply(
      params, IDS, deterministic=deterministic, rngs=rngs), static_argnums=1)
  np.testing.assert_array_equal(run(dropout_rng(1), True), run(dropout_rng(2), True))
  np.testing.assert_array_equal(run(dropout_rng(1), False), run(dropout_rng(1), False))
  assert not np.allclose(run(dropout_rng(1), False), run(dropout_rng(2), False))
  assert not np.allclose(run(dropout_rng(1), False), run(dropout_rng(1), True))


@pytest.mark.parametrize('embedding_size', [None, 8])
def test_mlm_logits_at_positions_equal_full_projection(embedding_size):
  positions = jnp.array([[0, 4, 7], [2, 2, 5]])
  model = PretrainingModel(tiny_config(embedding_size=embedding_size))
  params = {'params': random_params(model, IDS, None, None, positions)}

  def full(m, x):
    hidden = m.encoder(x, None, MASK)
    return hidden, m.mlm(hidden, None, m.encoder.attend)

  @jax.jit
  def run():
    return (model.apply(params, IDS, None, MASK, positions),
            model.apply(params, IDS, method=full))

  (logits, nsp), (hidden, full_logits) = run()
  # BERT's head: LayerNorm(gelu(h W + b)) @ table^T + output_bias.
  p = jax.tree.map(lambda x: np.asarray(x, np.float64), params['params'])
  t = np.tensordot(np.asarray(hidden, np.float64), p['mlm']['transform']['kernel'], 1)
  t = np.asarray(jax.nn.gelu(t + p['mlm']['transform']['bias'], approximate=False))
  t = (t - t.mean(-1, keepdims=True)) / np.sqrt(t.var(-1, keepdims=True) + 1e-12)
  ln = p['mlm']['transform_layer_norm']
  table = p['encoder']['embeddings']['token_embed']['embedding']
  expected = (t * ln['scale'] + ln['bias']) @ table.T + p['mlm']['output_bias']
  np.testing.assert_allclose(full_logits, expected, atol=1e-4)
  assert logits.shape == (2, 3, VOCAB) and logits.dtype == jnp.float32
  assert nsp.shape == (2, 2)
  assert full_logits.shape == (2, 8, VOCAB)
  np.testing.assert_allclose(
      logits, heads.gather_positions(full_logits, positions), atol=1e-5)


def test_mlm_head_is_tied_to_token_embedding():
  ids = random_ids(10, (2, 8), vocab=10)  # table rows >= 10 are reached only by the head
  positions = jnp.array([[1, 2], [3, 4]])
  model = PretrainingModel(tiny_config(embedding_size=8))
  params = random_params(model, ids, None, None, positions)
  tables = [x for x in jax.tree.leaves(params) if x.ndim == 2 and x.shape[0] == VOCAB]
  assert len(tables) == 1  # one V x E table in the whole tree
  assert set(params['mlm']) == {'transform', 'transform_layer_norm', 'output_bias'}

  def mlm_loss(p):
    logits, _ = model.apply({'params': p}, ids, None, None, positions)
    labels = jnp.take_along_axis(ids, positions, axis=1)
    return -jnp.mean(jnp.take_along_axis(
        jax.nn.log_softmax(logits), labels[..., None], axis=-1))

  grads = jax.jit(jax.grad(mlm_loss))(params)
  grad_table = grads['encoder']['embeddings']['token_embed']['embedding']
  assert np.all(np.abs(grad_table[10:]).sum(axis=-1) > 0)


def test_pooler_reads_the_cls_position():
  config = tiny_config()
  pooler = heads.Pooler(config)
  hidden = jax.random.normal(jax.random.key(4), (2, 8, 16))
  params = random_params(pooler, hidden)
  changed = hidden.at[:, 1:].set(0.0)
  pooled = pooler.apply({'params': params}, hidden)
  assert pooled.shape == (2, 16)
  np.testing.assert_allclose(pooled, pooler.apply({'params': params}, changed))


def test_every_parameter_has_known_logical_axes():
  for overrides in ({}, {'embedding_size': 8, 'pre_layer_norm': True},
                    {'type_vocab_size': 0, 'scan_layers': False}):
    model = PretrainingModel(tiny_config(**overrides))
    boxed = jax.eval_shape(model.init, jax.random.key(0), IDS, None, None, IDS)
    leaves = jax.tree.leaves(boxed, is_leaf=lambda x: isinstance(x, nn.Partitioned))
    for leaf in leaves:
      assert isinstance(leaf, nn.LogicallyPartitioned), leaf
      assert len(leaf.names) == leaf.value.ndim, leaf
      assert set(leaf.names) <= set(encoder.LOGICAL_AXIS_NAMES), leaf.names
      # A name used twice would map one mesh axis onto two dimensions.
      assert len(set(leaf.names)) == len(leaf.names), leaf.names


def test_init_under_a_mesh_with_logical_rules():
  """Boxed params unbox under a mesh + rules naming every axis (as the training loop does)."""
  mesh = jax.make_mesh((1, 1, 1), ('data', 'fsdp', 'tensor'),
                       axis_types=(jax.sharding.AxisType.Auto,) * 3)
  to_mesh = {'batch': 'data', 'embed': 'fsdp', 'factorized_embed': 'fsdp',
             'vocab': 'tensor', 'heads': 'tensor', 'mlp': 'tensor',
             'embed_out': 'tensor', 'kv': None}
  rules = [(name, to_mesh.get(name)) for name in encoder.LOGICAL_AXIS_NAMES]
  for overrides in ({}, {'embedding_size': 8, 'scan_layers': False}):
    model = PretrainingModel(tiny_config(**overrides))
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
      boxed = jax.eval_shape(model.init, jax.random.key(0), IDS, None, MASK, IDS)
      jax.eval_shape(model.apply, boxed, IDS, None, MASK, IDS)
    if 'layers' in boxed['params']['encoder']:
      specs = nn.logical_to_mesh(nn.get_partition_spec(boxed), rules)
      query = specs['params']['encoder']['layers']['attention']['query']['kernel']
      assert tuple(query) == (None, 'fsdp', 'tensor', None)


def test_too_long_sequence_raises_user_error():
  model = encoder.Encoder(tiny_config(max_position_embeddings=8, position_offset=2))
  jax.eval_shape(model.init, jax.random.key(0), random_ids(0, (1, 6)))
  with pytest.raises(UserError, match=r'length 7 .*max_position_embeddings 8'):
    jax.eval_shape(model.init, jax.random.key(0), random_ids(0, (1, 7)))
  model = encoder.Encoder(tiny_config())
  with pytest.raises(UserError, match=r'length 17 .*max_position_embeddings 16'):
    jax.eval_shape(model.init, jax.random.key(0), random_ids(0, (1, 17)))


@pytest.mark.parametrize('overrides,message', [
    ({'num_heads': 3}, 'hidden_size 16 is not divisible by model.num_heads 3'),
    ({'hidden_act': 'swish'}, 'hidden_act'),
    ({'remat_policy': 'most'}, 'remat_policy'),
    ({'dtype': 'float16'}, 'dtype'),
    ({'attention_impl': 'flash'}, 'attention_impl'),
    ({'vocab_size': None}, 'vocab_size'),
    ({'dropout_rate': 1.5}, 'dropout_rate'),
])
def test_bad_config_raises_user_error(overrides, message):
  model = encoder.Encoder(tiny_config(**overrides))
  with pytest.raises(UserError, match=message):
    jax.eval_shape(model.init, jax.random.key(0), IDS)


# ---------------------------------------------------------------------------------
# Parameter counts against Hugging Face's module formulas and the papers.


def hf_counts(V, H, L, I, P, T, E=None):
  """Counts of HF BertModel/RobertaModel/AlbertModel-without-sharing parts.

  Embeddings (+ E->H map when factorized), L x (Q, K, V, O Linear, 2 LayerNorms, FFN),
  pooler Linear(H, H); BertLMPredictionHead: Linear(H, E), LayerNorm(E), decoder
  tied to the word embeddings, bias [V]; NSP Linear(H, 2).
  """
  E = E or H
  embeddings = (V + P + T) * E + 2 * E + (E * H + H if E != H else 0)
  layer = 4 * (H * H + H) + (H * I + I) + (I * H + H) + 2 * 2 * H
  return {'encoder': embeddings + L * layer, 'pooler': H * H + H,
          'mlm': H * E + E + 2 * E + V, 'classifier': 2 * H + 2}


PAPER_SIZES = {
    # name: (config, paper params, tolerance)
    # BERT paper (Devlin et al. 2019, sec. 3): base 110M, large 340M. The released
    # large model has 335.1M (HF BertModel), 1.1% under the paper's rounded figure.
    'bert_base': (dict(vocab_size=30522, hidden_size=768, num_layers=12,
                       num_heads=12, intermediate_size=3072,
                       max_position_embeddings=512, type_vocab_size=2), 110e6, 0.01),
    'bert_large': (dict(vocab_size=30522, hidden_size=1024, num_layers=24,
                        num_heads=16, intermediate_size=4096,
                        max_position_embeddings=512, type_vocab_size=2), 340e6, 0.02),
    # RoBERTa (Liu et al. 2019; fairseq model cards): base 125M, large 355M; 514
    # positions (padding_idx + 1 offset), one token type.
    'roberta_base': (dict(vocab_size=50265, hidden_size=768, num_layers=12,
                          num_heads=12, intermediate_size=3072,
                          max_position_embeddings=514, type_vocab_size=1,
                          position_offset=2), 125e6, 0.01),
    'roberta_large': (dict(vocab_size=50265, hidden_size=1024, num_layers=24,
                           num_heads=16, intermediate_size=4096,
                           max_position_embeddings=514, type_vocab_size=1,
                           position_offset=2), 355e6, 0.01),
    # ELECTRA-Small discriminator (Clark et al. 2020, Table 1: 14M); factorized E=128.
    'electra_small': (dict(vocab_size=30522, hidden_size=256, num_layers=12,
                           num_heads=4, intermediate_size=1024, embedding_size=128,
                           max_position_embeddings=512, type_vocab_size=2),
                      14e6, 0.05),
}

# model.num_parameters() of the HF classes for the released checkpoints (published
# figures; not re-run here, the test environment has no torch).
HF_REFERENCE = {
    ('bert_base', 'encoder+pooler'): 109_482_240,     # BertModel
    ('bert_base', 'encoder+mlm'): 109_514_298,        # BertForMaskedLM
    ('bert_base', 'all'): 110_106_428,                # BertForPreTraining
    ('bert_large', 'encoder+pooler'): 335_141_888,    # BertModel
    ('roberta_base', 'encoder+pooler'): 124_645_632,  # RobertaModel
    ('roberta_base', 'encoder+mlm'): 124_697_433,     # RobertaForMaskedLM
    ('roberta_large', 'encoder+pooler'): 355_359_744,  # RobertaModel
    ('roberta_large', 'encoder+mlm'): 355_412_057,    # RobertaForMaskedLM
}


def count_params(config_dict):
  config = ml_collections.ConfigDict(config_dict)
  model = PretrainingModel(config)
  ids = jax.ShapeDtypeStruct((1, 8), jnp.int32)
  shapes = jax.eval_shape(model.init, jax.random.key(0), ids, None, None, ids)
  params = nn.meta.unbox(shapes)['params']
  size = lambda tree: sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))
  return {'encoder': size(params['encoder']), 'pooler': size(params['pooler']),
          'mlm': size(params['mlm']), 'classifier': size(params['nsp'])}


@pytest.mark.parametrize('name', sorted(PAPER_SIZES))
def test_parameter_counts_match_hf_and_paper(name):
  config_dict, paper, tolerance = PAPER_SIZES[name]
  counts = count_params(config_dict)
  c = config_dict
  assert counts == hf_counts(
      c['vocab_size'], c['hidden_size'], c['num_layers'], c['intermediate_size'],
      c['max_position_embeddings'], c['type_vocab_size'], c.get('embedding_size'))
  totals = {'encoder+pooler': counts['encoder'] + counts['pooler'],
            'encoder+mlm': counts['encoder'] + counts['mlm'],
            'all': sum(counts.values())}
  for (ref_name, part), value in HF_REFERENCE.items():
    if ref_name == name:
      assert totals[part] == value, (part, totals[part], value)
  encoder_only = counts['encoder']  # ELECTRA's discriminator has no pooler
  reported = encoder_only if name == 'electra_small' else totals['all']
  assert abs(reported - paper) / paper < tolerance, (reported, paper)
