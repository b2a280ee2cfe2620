"""Shared fixtures: tiny versions of the experiment files that train in seconds."""

import importlib
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='session', autouse=True)
def corpus_cache(tmp_path_factory):
  """One default-corpus cache for the whole session, outside the user's home."""
  path = os.environ.get('BERT_FAMILY_TEST_CACHE') or str(tmp_path_factory.mktemp('cache'))
  os.environ['BERT_FAMILY_CACHE'] = path
  return path


def tiny_config(recipe: str = 'bert'):
  """The recipe's demo config shrunk to a model and corpus that train in seconds."""
  config = importlib.import_module(f'experiments.{recipe}').get_config('demo')
  config.model.update(vocab_size=600, hidden_size=64, num_layers=2, num_heads=2,
                      intermediate_size=256)
  config.data.update(max_documents=150, heldout_fraction=0.1, max_seq_length=64)
  config.masking.update(max_predictions_per_seq=10)
  config.optimizer.update(learning_rate=3e-3, warmup_steps=10)
  config.train.update(steps=60, batch_size=16, log_every=10, eval_every=30,
                      eval_batches=4, eval_batch_size=16, checkpoint_every=20,
                      data_threads=1)
  return config


@pytest.fixture(scope='session')
def tiny_bert_workdir(tmp_path_factory):
  """A finished 20-step pretraining of the tiny BERT: a starting point and masked LM
  for the tests that only read one (fine-tuning, augmentation)."""
  from common.train import pretraining  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path_factory.mktemp('tiny_bert'))
  config = tiny_config('bert')
  config.train.update(steps=20, eval_every=20, checkpoint_every=20)
  pretraining.pretrain(config, workdir)
  return workdir


def wordpiece_word_starts(pieces):
  """bool[V] word-start table of a WordPiece vocabulary, as BERT's
  create_pretraining_data.py reads one: every piece not starting with '##'."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  return np.array([not p.startswith('##') for p in pieces], dtype=bool)


def import_hf():
  """(torch, transformers) for the interop tests, or skip without the 'hf' extra.

  CI sets BERT_FAMILY_REQUIRE_HF=1, which turns the skip into a failure: the interop
  tests must run there, not silently disappear.
  """
  try:
    import torch  # pylint: disable=g-import-not-at-top
    import transformers  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    if os.environ.get('BERT_FAMILY_REQUIRE_HF'):
      raise
    pytest.skip(f"needs the 'hf' extra (pip install -e '.[hf]'): {e}")
  return torch, transformers


def parameter_count(config) -> int:
  """Parameters of the recipe's whole pretraining model, counted without allocating.

  Zero batches with every field the objective reads: [1, 8] per token, [1, 2] per
  prediction (field names ending in '_positions', '_left', '_right', '_offsets',
  '_ids' or '_weights' of masked predictions are shaped like `masked_positions`).
  """
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from common.train import objectives  # pylint: disable=g-import-not-at-top

  objective = objectives.get_objective(config)
  length, predictions = 8, 2
  per_token = ('input_ids', 'segment_ids', 'attention_mask')
  batch = {}
  for key in objective.batch_keys:
    if key in per_token:
      batch[key] = jnp.ones((1, length), jnp.int32)
    elif key.endswith('_label'):
      batch[key] = jnp.zeros((1,), jnp.int32)
    else:
      batch[key] = jnp.zeros((1, predictions), jnp.int32)
  shapes = jax.eval_shape(objective.model.init, jax.random.PRNGKey(0), batch)
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nn.unbox(shapes)))
