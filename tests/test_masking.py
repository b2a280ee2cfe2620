"""Invariants of common/data/masking.py over many rows: budget, split, the rest."""

import numpy as np
import pytest

from common.data import masking
from common.errors import UserError

PAD, UNK, CLS, SEP, MASK = 0, 1, 2, 3, 4
SPECIAL = np.asarray([PAD, UNK, CLS, SEP, MASK])
VOCAB = 1000
# Rows use ids 5..999; random replacements only the upper half, so a replaced
# token is recognisably drawn from random_token_ids.
RANDOM_IDS = np.arange(500, VOCAB, dtype=np.int32)
B, L, P = 2000, 128, 20


def _rows(seed=0, batch=B, length=L):
  """[B, L] padded rows `[CLS] a [SEP] b [SEP] pad...`, some with [UNK]."""
  rng = np.random.default_rng(seed)
  ids = np.full((batch, length), PAD, np.int32)
  for r in range(batch):
    n = int(rng.integers(6, length + 1))
    row = rng.integers(5, VOCAB, n).astype(np.int32)
    row[0], row[n - 1] = CLS, SEP
    row[int(rng.integers(2, n - 2))] = SEP
    row[rng.random(n) < 0.02] = UNK
    ids[r, :n] = row
  return ids


ROWS = _rows()
N_TOKENS = (ROWS != PAD).sum(1)
N_CANDIDATES = (~np.isin(ROWS, SPECIAL)).sum(1)


def _mask(ids=ROWS, seed=0, **kw):
  args = dict(mask_id=MASK, pad_id=PAD, special_ids=SPECIAL,
              random_token_ids=RANDOM_IDS, max_predictions=P)
  args.update(kw)
  rng = np.random.default_rng(seed)  # One rng, consumed row by row.
  rows = [masking.mask_tokens(row, rng, **args) for row in np.asarray(ids)]
  return {key: np.stack([r[key] for r in rows]) for key in rows[0]}


def _check_consistent(ids, out, p=P):
  """Structure every masking must keep, whatever the budget and split."""
  b, l = ids.shape
  assert out['input_ids'].shape == (b, l) and out['input_ids'].dtype == np.int32
  for key, dtype in (('masked_positions', np.int32), ('masked_ids', np.int32),
                     ('masked_weights', np.float32)):
    assert out[key].shape == (b, p) and out[key].dtype == dtype
  w = out['masked_weights']
  k = (w == 1.0).sum(1)
  # Real targets first, then padding entries (0, 0, 0.0).
  np.testing.assert_array_equal(w, np.arange(p)[None] < k[:, None])
  real = w == 1.0
  assert (out['masked_positions'][~real] == 0).all()
  assert (out['masked_ids'][~real] == 0).all()
  selected = np.zeros((b, l), bool)
  for r in range(b):
    pos = out['masked_positions'][r, :k[r]]
    assert (np.diff(pos) > 0).all()  # Sorted, no repeats.
    selected[r, pos] = True
    np.testing.assert_array_equal(out['masked_ids'][r, :k[r]], ids[r, pos])
  # Specials and padding are never selected; nothing unselected changes.
  assert not (selected & np.isin(ids, SPECIAL)).any()
  np.testing.assert_array_equal(out['input_ids'][~selected], ids[~selected])
  return k, selected


def test_bert_budget_exact_per_row():
  out = _mask()
  k, _ = _check_consistent(ROWS, out)
  expected = [min(P, max(1, round(0.15 * n)), c)
              for n, c in zip(N_TOKENS, N_CANDIDATES)]
  np.testing.assert_array_equal(k, expected)
  # 15% of the real tokens on average (rounding per row moves it a little).
  assert abs(k.sum() / N_TOKENS.sum() - 0.15) < 0.005


def test_without_pad_id_the_budget_counts_candidates():
  out = _mask(pad_id=None)
  k, _ = _check_consistent(ROWS, out)
  np.testing.assert_array_equal(
      k, [min(P, max(1, round(0.15 * c)), c) for c in N_CANDIDATES])


def test_roberta_budget_probabilistic_rounding():
  out = _mask(budget='roberta')
  k, _ = _check_consistent(ROWS, out)
  floor = np.floor(0.15 * N_TOKENS).astype(int)
  assert ((k == floor) | (k == floor + 1)).all()
  # E[k] = 0.15 * n exactly; the per-row variance is frac * (1 - frac) <= 1/4.
  frac = 0.15 * N_TOKENS - floor
  sigma = np.sqrt((frac * (1 - frac)).sum())
  assert abs(k.sum() - 0.15 * N_TOKENS.sum()) < 4 * sigma
  # Not plain rounding: rows with a small fraction still round up sometimes.
  low = (frac > 0.1) & (frac < 0.5)
  ups = (k[low] > floor[low]).sum()
  sigma_low = np.sqrt((frac * (1 - frac))[low].sum())
  assert abs(ups - frac[low].sum()) < 4 * sigma_low


def test_electra_budget_and_split():
  out = _mask(budget='electra', mask_token_prob=0.85, random_token_prob=0.0,
              random_token_ids=np.zeros(0, np.int32))
  k, selected = _check_consistent(ROWS, out)
  cap = min(P, int((0.15 + 0.005) * L))
  expected = [min(max(1, min(cap, round(0.15 * n))), c)
              for n, c in zip(N_TOKENS, N_CANDIDATES)]
  np.testing.assert_array_equal(k, expected)
  changed = out['input_ids'] != ROWS
  # No random replacement: every change is a [MASK].
  assert (out['input_ids'][changed] == MASK).all()
  n_mask, n = changed.sum(), selected.sum()
  assert abs(n_mask - 0.85 * n) < 4 * np.sqrt(n * 0.85 * 0.15)


def test_80_10_10_split():
  out = _mask()
  _, selected = _check_consistent(ROWS, out)
  new, old = out['input_ids'][selected], ROWS[selected]
  n = selected.sum()
  is_mask = new == MASK
  is_random = (new != MASK) & (new != old)
  # Random draws come only from random_token_ids.
  assert np.isin(new[is_random], RANDOM_IDS).all()
  # A random draw equal to the original counts as kept: P(keep) a bit over 0.1.
  p_same = 0.1 * np.isin(old, RANDOM_IDS).mean() / len(RANDOM_IDS)
  for count, p in ((is_mask.sum(), 0.8), (is_random.sum(), 0.1 - p_same),
                   ((new == old).sum(), 0.1 + p_same)):
    assert abs(count - n * p) < 4 * np.sqrt(n * p * (1 - p)), (count, n, p)


def test_custom_split_probabilities():
  out = _mask(mask_token_prob=0.0, random_token_prob=1.0)
  _, selected = _check_consistent(ROWS, out)
  new = out['input_ids'][selected]
  assert not (new == MASK).any()
  assert np.isin(new, RANDOM_IDS).all()


def test_cap_at_max_predictions():
  out = _mask(max_predictions=5)
  k, _ = _check_consistent(ROWS, out, p=5)
  np.testing.assert_array_equal(
      k, np.minimum(5, np.maximum(1, np.round(0.15 * N_TOKENS))))


def test_few_candidates():
  ids = np.asarray([[CLS, SEP, PAD, PAD], [CLS, 7, SEP, PAD]], np.int32)
  out = _mask(ids)
  k, _ = _check_consistent(ids, out)
  np.testing.assert_array_equal(k, [0, 1])  # Budget 1; only one candidate.
  assert out['masked_positions'][1, 0] == 1


def test_determinism():
  a, b, c = _mask(seed=7), _mask(seed=7), _mask(seed=8)
  for key in a:
    np.testing.assert_array_equal(a[key], b[key])
  assert not np.array_equal(a['masked_positions'], c['masked_positions'])
  assert not np.array_equal(a['input_ids'], c['input_ids'])


def test_select_units_keeps_units_whole():
  # The plug-in point for whole-word / phrase masking: units of 1-3 positions.
  rng = np.random.default_rng(0)
  sizes = [3, 1, 2, 3, 1, 1, 2, 3, 2]
  starts = np.cumsum([0] + sizes[:-1])
  units = [np.arange(s, s + n) for s, n in zip(starts, sizes)]
  for _ in range(300):
    budget = int(rng.integers(1, 12))
    chosen = masking.select_units(units, budget, rng)
    assert len(chosen) <= budget
    assert (np.diff(chosen) > 0).all()
    for u in units:
      assert np.isin(u, chosen).all() or not np.isin(u, chosen).any()
  assert len(masking.select_units([], 5, rng)) == 0


def test_candidate_units_skip_specials():
  ids = np.asarray([CLS, 9, UNK, 8, SEP, PAD], np.int32)
  units = masking.candidate_units(ids, SPECIAL)
  assert [u.tolist() for u in units] == [[1], [3]]


def test_bad_arguments_are_user_errors():
  with pytest.raises(UserError, match='budget'):
    _mask(ROWS[:2], budget='xlnet')
  with pytest.raises(UserError, match='sum'):
    _mask(ROWS[:2], mask_token_prob=0.8, random_token_prob=0.3)
  with pytest.raises(UserError, match='random_token_ids must not contain'):
    _mask(ROWS[:2], random_token_ids=np.arange(0, 100))
  with pytest.raises(UserError, match='non-empty'):
    _mask(ROWS[:2], random_token_ids=np.zeros(0, np.int32))
  with pytest.raises(UserError, match='1-D'):  # mask_tokens masks one row.
    masking.mask_tokens(ROWS[:2], np.random.default_rng(0), mask_id=MASK, pad_id=PAD,
                        special_ids=SPECIAL, random_token_ids=RANDOM_IDS,
                        max_predictions=P)
  with pytest.raises(UserError, match='max_predictions'):
    _mask(ROWS[:2], max_predictions=0)
  with pytest.raises(UserError, match='mask_prob'):
    _mask(ROWS[:2], mask_prob=0.0)
