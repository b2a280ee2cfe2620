"""The word-order probe keeps every token and target, and loses only the order."""

import numpy as np

from common.data import packing
from common.data import word_order_probe

SPECIALS = packing.SpecialIds(pad=0, cls=2, sep=3, mask=4)
B, L, P = 64, 40, 6


def _batch(seed=0):
  """Rows `[CLS] a [SEP] b [SEP] pad...` with P selected positions, some padding."""
  rng = np.random.default_rng(seed)
  ids = np.zeros((B, L), np.int32)
  positions = np.zeros((B, P), np.int32)
  weights = np.zeros((B, P), np.float32)
  for r in range(B):
    n = int(rng.integers(12, L + 1))
    row = rng.integers(5, 1000, n).astype(np.int32)
    row[0], row[n - 1], row[int(rng.integers(3, n - 3))] = 2, 3, 3
    k = int(rng.integers(1, P + 1))  # Rows with fewer targets have padding entries.
    candidates = np.nonzero(row > 4)[0]
    positions[r, :k] = np.sort(rng.choice(candidates, k, replace=False))
    weights[r, :k] = 1.0
    row[positions[r, :k][rng.random(k) < 0.8]] = 4
    ids[r, :n] = row
  return {'input_ids': ids, 'attention_mask': (ids > 0).astype(np.int32),
          'segment_ids': np.cumsum(ids == 3, axis=1) * (ids > 0),
          'masked_positions': positions, 'masked_weights': weights,
          'masked_ids': np.where(weights > 0, 7, 0).astype(np.int32)}


def _segments(row_ids):
  """The runs of tokens between special tokens, as lists."""
  runs, run = [], []
  for token in row_ids:
    if token in (0, 2, 3):
      runs.append(run)
      run = []
    else:
      run.append(int(token))
  return runs + [run]


def test_only_the_order_of_unselected_tokens_changes():
  batch = _batch()
  shuffled = word_order_probe.shuffle_context(batch, SPECIALS, np.random.default_rng(0))
  before, after = batch['input_ids'], shuffled['input_ids']
  for key in batch:
    if key != 'input_ids':
      np.testing.assert_array_equal(shuffled[key], batch[key])
  selected = np.zeros((B, L), bool)
  for r in range(B):
    selected[r, batch['masked_positions'][r][batch['masked_weights'][r] > 0]] = True
  fixed = selected | np.isin(before, [0, 2, 3])
  np.testing.assert_array_equal(after[fixed], before[fixed])  # specials, pad, targets
  for r in range(B):  # The same tokens in each segment: none moved across a [SEP].
    for run_before, run_after in zip(_segments(before[r]), _segments(after[r])):
      assert sorted(run_before) == sorted(run_after)
  moved = (after != before) & ~fixed
  assert moved.sum() > 0.8 * (~fixed & (before > 0)).sum()  # Most tokens did move.
  np.testing.assert_array_equal(batch['input_ids'], _batch()['input_ids'])  # No aliasing.


def test_context_moves_across_the_masks():
  """A segment is bounded by [CLS]/[SEP]/padding only: the words beside a [MASK] change."""
  ids = np.array([[2, *range(10, 20), 4, *range(20, 30), 3]], np.int32)
  batch = {'input_ids': ids, 'attention_mask': np.ones_like(ids),
           'masked_positions': np.array([[11]], np.int32),
           'masked_weights': np.ones((1, 1), np.float32)}
  shuffled = word_order_probe.shuffle_context(batch, SPECIALS, np.random.default_rng(0))
  assert shuffled['input_ids'][0, 11] == 4
  assert set(shuffled['input_ids'][0, 1:11]) != set(range(10, 20))


def test_shuffle_is_a_function_of_the_rng():
  batch = _batch(1)
  first = word_order_probe.shuffle_context(batch, SPECIALS, np.random.default_rng(3))
  again = word_order_probe.shuffle_context(batch, SPECIALS, np.random.default_rng(3))
  other = word_order_probe.shuffle_context(batch, SPECIALS, np.random.default_rng(4))
  np.testing.assert_array_equal(first['input_ids'], again['input_ids'])
  assert (first['input_ids'] != other['input_ids']).any()


def test_an_order_reading_predictor_loses_its_accuracy():
  """Rows count up by one, so 'previous token + 1' is always right until shuffled."""
  ids = np.zeros((B, L), np.int32)
  ids[:, 0], ids[:, L - 1] = 2, 3
  ids[:, 1:L - 1] = 10 + np.arange(L - 2)[None] + 50 * np.arange(B)[:, None]
  positions = np.tile(np.arange(5, 5 + 3 * P, 3), (B, 1)).astype(np.int32)
  batch = {'input_ids': ids, 'attention_mask': np.ones_like(ids),
           'masked_positions': positions, 'masked_weights': np.ones((B, P), np.float32)}
  targets = np.take_along_axis(ids, positions, 1)

  def accuracy(b):
    previous = np.take_along_axis(b['input_ids'], positions - 1, 1)
    return np.mean(previous + 1 == targets)

  shuffled = word_order_probe.shuffle_context(batch, SPECIALS, np.random.default_rng(0))
  assert accuracy(batch) == 1.0
  assert accuracy(shuffled) < 0.1
