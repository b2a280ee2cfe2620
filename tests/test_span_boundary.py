"""SpanBERT's span-boundary objective: head shapes, and a tiny run whose loss falls."""

import jax
import jax.numpy as jnp
import numpy as np

from common.model import heads
from common.train import objectives
from common.data import span_boundary
from common.train import pretraining
from tests.conftest import tiny_config


def test_span_boundary_head_shapes():
  config = tiny_config('spanbert').model
  b, l, p, h, v = 2, 16, 5, config.hidden_size, config.vocab_size
  table_VxH = jnp.ones((v, h))
  head = heads.SpanBoundaryHead(config, max_positions=8)
  args = (jnp.ones((b, l, h)), jnp.zeros((b, p), jnp.int32),
          jnp.full((b, p), 3, jnp.int32), jnp.arange(b * p).reshape(b, p),
          lambda x: x @ table_VxH.T)
  params = head.init(jax.random.PRNGKey(0), *args)
  logits = head.apply(params, *args)
  assert logits.shape == (b, p, v) and logits.dtype == jnp.float32
  shapes = jax.tree.map(jnp.shape, params['params'])
  assert shapes['position_embeddings'].value == (8, h)
  assert shapes['dense_0']['kernel'].value == (3 * h, h)


def test_mlm_sbo_objective_reads_the_span_fields():
  objective = objectives.get_objective(tiny_config('spanbert'))
  assert objective.name == 'mlm_sbo'
  assert set(span_boundary.SPAN_FIELDS) <= set(objective.batch_keys)


def test_tiny_spanbert_learns(tmp_path):
  config = tiny_config('spanbert')
  config.train.update(steps=80, eval_every=40)
  summary = pretraining.pretrain(config, str(tmp_path))
  first, last = summary['first_eval'], summary['eval']
  assert last['sbo_loss'] < first['eval_sbo_loss'] - 1.0
  assert last['mlm_loss'] < first['eval_mlm_loss'] - 1.0
  assert np.isfinite(last['loss'])
