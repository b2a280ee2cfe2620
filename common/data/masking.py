"""Masked-LM corruption of token ids (numpy only).

Masking is three steps, each a public function, so later strategies replace one
step and keep the others:
1. `candidate_units`: the units that may be masked, each a list of positions.
   Here every non-special, non-pad token is its own unit; whole-word (BERT-wwm),
   phrases/entities (ERNIE) group positions instead.
2. `select_units`: shuffle the units and take them until the budget
   (`num_to_predict`) is spent; n-gram (ALBERT, MacBERT) and span (SpanBERT)
   selection are other step-2 functions over the same units.
3. `replace_tokens`: each selected position becomes [MASK], a random token or
   stays (80/10/10 in BERT, 85/0/15 in ELECTRA); MacBERT's similar-word
   replacement is another step 3.
Whole-word units come from `common/data/word_units.py`; `select_ngrams` (ALBERT,
MacBERT) and `select_spans` (SpanBERT) return the selected groups of units so that
`replace_groups` can decide 80/10/10 once per span; `common/data/mask_strategies.py`
puts the steps together per `masking.strategy`.
`mask_tokens` runs the three on one row and returns the targets padded to
`max_predictions`, the layout of google-research/bert's `masked_lm_positions /
masked_lm_ids / masked_lm_weights`; the MLM head gathers those positions only.

References: google-research/bert `create_pretraining_data.py`
(`create_masked_lm_predictions`), fairseq `MaskTokensDataset` (RoBERTa's dynamic
masking), google-research/electra `pretrain/pretrain_helpers.py` (`mask`).

Budget: all three references count the row's real tokens, [CLS]/[SEP]
included and padding excluded (BERT's `len(tokens)`, fairseq's `len(item)`,
ELECTRA's `sum(input_mask)`), though only non-special tokens are candidates.
Given `pad_id`, we do the same. Without it padding cannot be told from
[CLS]/[SEP], so the budget counts the candidates (the non-special tokens):
2-3 fewer per row, which changes the budget only for rows near a rounding
edge. (fairseq also draws positions among <s> and </s>; here specials are
never masked.)
All randomness comes from an `np.random.Generator`: a seed fixes the output.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from common.errors import UserError

BUDGETS = ('bert', 'roberta', 'electra', 'spanbert')
# p(n) for n-gram lengths 1..len: ALBERT's 1/n for n <= 3 (create_pretraining_data.py,
# 6/11, 3/11, 2/11); MacBERT's 40/30/20/10% for 1..4 (Cui et al. 2020, section 3.3).
NGRAM_PRESETS = {'albert': (6 / 11, 3 / 11, 2 / 11), 'macbert': (0.4, 0.3, 0.2, 0.1)}


# ---------------------------------------------------------------------------
# Step 1: candidate units.


def candidate_units(
    input_ids_L: np.ndarray,
    special_ids: Sequence[int] | np.ndarray) -> list[np.ndarray]:
  """Every token that is not special (pad included among them) is one unit.

  Args:
    input_ids_L: [L] token ids.
    special_ids: ids never masked ([CLS], [SEP], [MASK], pad, ...).

  Returns:
    Units in position order, each an int array of positions (here of length 1).
  """
  positions = np.flatnonzero(~np.isin(input_ids_L, special_ids))
  return list(positions[:, None])


# ---------------------------------------------------------------------------
# Step 2: how many, and which.


def num_to_predict(n_tokens: int, seq_len: int, rng: np.random.Generator, *,
                   mask_prob: float, max_predictions: int,
                   budget: str = 'bert') -> int:
  """Number of tokens to mask in one row, by the reference's rule.

  - 'bert' (google-research/bert): min(max_predictions,
    max(1, round(mask_prob * n_tokens))).
  - 'roberta' (fairseq): int(mask_prob * n_tokens + U[0, 1)), probabilistic
    rounding so the expectation is exact; capped at max_predictions.
  - 'electra' (google-research/electra): max(1, min(N, round(n_tokens *
    mask_prob))) with N = int((mask_prob + 0.005) * seq_len), N capped at
    max_predictions.
  - 'spanbert' (facebookresearch/SpanBERT, `masking.py`): min(max_predictions,
    max(1, ceil(mask_prob * n_tokens))).
  Python's `round` halves to even, as Python 3 `round` in BERT and `tf.round`
  in ELECTRA do.

  Args:
    n_tokens: real (non-pad) tokens in the row, specials included (or the
      candidate count when the caller has no pad id, see the module doc).
    seq_len: the row's length L, padding included (ELECTRA's N only).
    rng: consumed only by 'roberta'.
    mask_prob: fraction of tokens to mask.
    max_predictions: P, the size of the target arrays.
    budget: 'bert', 'roberta' or 'electra'.

  Returns:
    The number of tokens to mask; the caller may find fewer candidates.
  """
  if budget == 'bert':
    return min(max_predictions, max(1, round(mask_prob * n_tokens)))
  if budget == 'roberta':
    return min(max_predictions, int(mask_prob * n_tokens + rng.random()))
  if budget == 'electra':
    cap = min(max_predictions, int((mask_prob + 0.005) * seq_len))
    return max(1, min(cap, round(n_tokens * mask_prob)))
  if budget == 'spanbert':
    return min(max_predictions, max(1, math.ceil(mask_prob * n_tokens - 1e-9)))
  raise UserError(f'budget must be one of {BUDGETS}, got {budget!r}')


def select_units(units: Sequence[np.ndarray], num_to_predict: int,
                 rng: np.random.Generator) -> np.ndarray:
  """Shuffles the units and takes them in turn while they fit the budget.

  As BERT's whole-word loop: a unit that would overshoot the budget is skipped
  and later (smaller) units may still fill it, so a unit is masked whole or not
  at all.

  Args:
    units: candidate units, each an int array of positions; disjoint.
    num_to_predict: the budget in tokens.
    rng: the shuffle.

  Returns:
    [K] int32 selected positions, sorted ascending, K <= num_to_predict.
  """
  if not units or num_to_predict <= 0:
    return np.zeros(0, np.int32)
  order = rng.permutation(len(units))
  lengths = np.fromiter((len(u) for u in units), np.int64, len(units))
  if (lengths == 1).all():  # Single tokens: the greedy loop is a prefix.
    chosen = np.concatenate([units[i] for i in order[:num_to_predict]])
    return np.sort(chosen).astype(np.int32)
  chosen, count = [], 0
  for i in order:
    if count >= num_to_predict:
      break
    if count + lengths[i] > num_to_predict:
      continue
    chosen.append(units[i])
    count += lengths[i]
  if not chosen:
    return np.zeros(0, np.int32)
  return np.sort(np.concatenate(chosen)).astype(np.int32)


def _unit_tables(units: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
  """Per unit: token count, and the length of the run of adjacent units from it.

  Units are adjacent when no special token lies between them, so n-grams and spans
  never cross [SEP] (the references' candidate lists skip specials and could).
  """
  n = len(units)
  lengths = np.fromiter((len(u) for u in units), np.int64, n)
  run = np.ones(n, np.int64)
  for i in range(n - 2, -1, -1):
    if units[i + 1][0] == units[i][-1] + 1:
      run[i] = run[i + 1] + 1
  return lengths, run


def ngram_probs(probs: Sequence[float] | str | None = None,
                max_n: int = 3) -> np.ndarray:
  """p(n) for n = 1..N: a preset name, explicit probabilities, or 1/n up to max_n."""
  if isinstance(probs, str):
    if probs not in NGRAM_PRESETS:
      raise UserError(f'unknown n-gram preset {probs!r}; known: '
                      f'{sorted(NGRAM_PRESETS)}')
    probs = NGRAM_PRESETS[probs]
  if probs is None or len(probs) == 0:
    if max_n < 1:
      raise UserError(f'masking.ngram_max must be >= 1, got {max_n}')
    probs = 1.0 / np.arange(1, max_n + 1)
  probs = np.asarray(probs, np.float64)
  if (probs < 0).any() or probs.sum() <= 0:
    raise UserError(f'n-gram probabilities must be >= 0 with a positive sum, '
                    f'got {probs.tolist()}')
  return probs / probs.sum()


def select_ngrams(units: Sequence[np.ndarray], num_to_predict: int,
                  rng: np.random.Generator,
                  probs_N: np.ndarray) -> list[np.ndarray]:
  """n-gram whole-word selection (ALBERT; MacBERT with its probabilities).

  As google-research/albert `create_masked_lm_predictions`: the unit indices are
  shuffled as n-gram starts; at each start n ~ probs_N; if the n-gram overflows
  the budget, shorter ones are tried; an n-gram touching an already covered
  unit is skipped. Here n is also cut at the end of a run of adjacent units.

  Args:
    units: candidate units (words) in position order.
    num_to_predict: the budget in tokens.
    rng: start order and lengths.
    probs_N: p(n) for n = 1..N.

  Returns:
    The selected n-grams in selection order, each an int array of unit indices.
  """
  if not units or num_to_predict <= 0:
    return []
  lengths, run = _unit_tables(units)
  cumulative = np.concatenate([[0], np.cumsum(lengths)])
  order = rng.permutation(len(units))
  drawn_n = rng.choice(len(probs_N), size=len(units), p=probs_N) + 1
  covered = np.zeros(len(units), bool)
  groups, count = [], 0
  for start, n in zip(order, drawn_n):
    if count >= num_to_predict:
      break
    n = min(int(n), int(run[start]))
    while n > 0 and cumulative[start + n] - cumulative[start] > num_to_predict - count:
      n -= 1
    if n == 0 or covered[start:start + n].any():
      continue
    covered[start:start + n] = True
    count += cumulative[start + n] - cumulative[start]
    groups.append(np.arange(start, start + n))
  return groups


def span_length_probs(p: float = 0.2, max_len: int = 10) -> np.ndarray:
  """SpanBERT's clipped geometric p(l) proportional to p (1 - p)^(l - 1), l = 1..max_len.

  Joshi et al. 2020, section 3.1: p = 0.2, l_max = 10, mean 3.8 words.
  """
  if not 0.0 < p <= 1.0 or max_len < 1:
    raise UserError(f'span masking needs 0 < span_p <= 1 and span_max >= 1, '
                    f'got {p} and {max_len}')
  probs = p * (1.0 - p) ** np.arange(max_len)
  return probs / probs.sum()


def select_spans(units: Sequence[np.ndarray], num_to_predict: int,
                 rng: np.random.Generator,
                 probs_N: np.ndarray) -> list[np.ndarray]:
  """SpanBERT span selection over whole words, until the budget is spent.

  Each span draws a length l (in words) from probs_N, then an anchor uniformly
  among the words where l free, adjacent words start and fit the remaining
  budget; with no such anchor l is shortened (as ALBERT's overflow rule). The
  reference (facebookresearch/SpanBERT `PairWithSpanMaskingScheme`) extends a
  random anchor rightwards instead, cutting a span where the budget ends (even
  mid-word) and letting spans overlap; we keep words whole and spans disjoint,
  so the lengths of all spans but a row's last follow probs_N.

  Args:
    units: candidate units (words) in position order.
    num_to_predict: the budget in tokens.
    rng: lengths and anchors.
    probs_N: p(l) for l = 1..N words (`span_length_probs`).

  Returns:
    The spans in selection order, each an int array of unit indices.
  """
  if not units or num_to_predict <= 0:
    return []
  lengths, run = _unit_tables(units)
  cumulative = np.concatenate([[0], np.cumsum(lengths)])
  n_units = len(units)
  free = np.ones(n_units, bool)
  spans, count = [], 0
  while count < num_to_predict:
    length = int(rng.choice(len(probs_N), p=probs_N)) + 1
    # used_before[i] = covered units before i: a window [i, i+l) is free when equal.
    used_before = np.concatenate([[0], np.cumsum(~free)])
    starts = np.arange(n_units)
    anchors = np.zeros(0, np.int64)
    while length > 0:
      ends = np.minimum(starts + length, n_units)
      ok = ((run >= length) & (used_before[ends] == used_before[starts])
            & (cumulative[ends] - cumulative[starts] <= num_to_predict - count))
      anchors = starts[ok]
      if len(anchors):
        break
      length -= 1
    if not len(anchors):
      break
    start = int(anchors[rng.integers(len(anchors))])
    free[start:start + length] = False
    count += cumulative[start + length] - cumulative[start]
    spans.append(np.arange(start, start + length))
  return spans


def group_positions(units: Sequence[np.ndarray],
                    groups: Sequence[np.ndarray]) -> list[np.ndarray]:
  """Each group of unit indices -> the sorted positions it covers."""
  return [np.concatenate([units[i] for i in g]).astype(np.int32) for g in groups]


# ---------------------------------------------------------------------------
# Step 3: replacement.


def replace_tokens(input_ids_L: np.ndarray, positions_K: np.ndarray,
                   rng: np.random.Generator, *, mask_id: int,
                   random_token_ids: np.ndarray, mask_token_prob: float = 0.8,
                   random_token_prob: float = 0.1) -> np.ndarray:
  """Corrupts the selected positions, each independently.

  With prob `mask_token_prob` a position becomes `mask_id`, with prob
  `random_token_prob` a token drawn uniformly from `random_token_ids` (which may
  equal the original, as in BERT and fairseq), else it keeps its token. The
  keep case exists so the model cannot assume an unmasked token is correct.

  Args:
    input_ids_L: [L] token ids (not modified).
    positions_K: [K] positions to corrupt.
    rng: the draws (two arrays of K, independent of the outcome).
    mask_id: the [MASK] id.
    random_token_ids: [V'] ids for random replacement (non-special vocabulary).
    mask_token_prob: P([MASK]).
    random_token_prob: P(random token).

  Returns:
    [L] int32 corrupted copy.
  """
  out = np.array(input_ids_L, np.int32)
  k = len(positions_K)
  u = rng.random(k)
  out[positions_K[u < mask_token_prob]] = mask_id
  if random_token_prob > 0:
    draws = random_token_ids[rng.integers(0, len(random_token_ids), k)]
    is_random = ((u >= mask_token_prob)
                 & (u < mask_token_prob + random_token_prob))
    out[positions_K[is_random]] = draws[is_random]
  return out


def replace_groups(input_ids_L: np.ndarray, groups: Sequence[np.ndarray],
                   rng: np.random.Generator, *, mask_id: int,
                   random_token_ids: np.ndarray, mask_token_prob: float = 0.8,
                   random_token_prob: float = 0.1) -> np.ndarray:
  """`replace_tokens` with one 80/10/10 decision per group (SpanBERT's spans).

  facebookresearch/SpanBERT `masking.py` draws one number per span: the whole
  span becomes [MASK], or random tokens (each position its own draw), or stays.

  Args:
    input_ids_L: [L] token ids (not modified).
    groups: positions of each group (disjoint).
    rng: one draw per group, then one random token per position.
    mask_id, random_token_ids, mask_token_prob, random_token_prob: as in
      `replace_tokens`.

  Returns:
    [L] int32 corrupted copy.
  """
  out = np.array(input_ids_L, np.int32)
  if not groups:
    return out
  u_G = rng.random(len(groups))
  sizes = np.fromiter((len(g) for g in groups), np.int64, len(groups))
  positions = np.concatenate(groups).astype(np.int64)
  u = np.repeat(u_G, sizes)
  out[positions[u < mask_token_prob]] = mask_id
  if random_token_prob > 0:
    draws = random_token_ids[rng.integers(0, len(random_token_ids), len(positions))]
    is_random = (u >= mask_token_prob) & (u < mask_token_prob + random_token_prob)
    out[positions[is_random]] = draws[is_random]
  return out


def prediction_targets(original_L: np.ndarray, positions_K: np.ndarray,
                       max_predictions: int) -> dict[str, np.ndarray]:
  """The MLM targets padded to P = max_predictions.

  Args:
    original_L: [L] token ids before corruption.
    positions_K: [K] masked positions, K <= P.
    max_predictions: P.

  Returns:
    `masked_positions [P]` int32, `masked_ids [P]` int32 (original ids) and
    `masked_weights [P]` float32 (1.0 real, 0.0 padding); padding entries are
    position 0, id 0.
  """
  k = len(positions_K)
  positions = np.zeros(max_predictions, np.int32)
  ids = np.zeros(max_predictions, np.int32)
  weights = np.zeros(max_predictions, np.float32)
  positions[:k] = positions_K
  ids[:k] = original_L[positions_K]
  weights[:k] = 1.0
  return {'masked_positions': positions, 'masked_ids': ids,
          'masked_weights': weights}


# ---------------------------------------------------------------------------
# Entry points.


def _check_args(input_ids: np.ndarray, ndim: int, *, special_ids: np.ndarray,
                random_token_ids: np.ndarray, mask_prob: float,
                max_predictions: int, mask_token_prob: float,
                random_token_prob: float, budget: str) -> None:
  if input_ids.ndim != ndim or not np.issubdtype(input_ids.dtype, np.integer):
    raise UserError(f'input_ids must be a {ndim}-D integer array, got shape '
                    f'{input_ids.shape} dtype {input_ids.dtype}')
  if budget not in BUDGETS:
    raise UserError(f'budget must be one of {BUDGETS}, got {budget!r}')
  if not 0.0 < mask_prob <= 1.0:
    raise UserError(f'mask_prob must be in (0, 1], got {mask_prob}')
  if not isinstance(max_predictions, (int, np.integer)) or max_predictions < 1:
    raise UserError(f'max_predictions must be an integer >= 1, '
                    f'got {max_predictions!r}')
  if (mask_token_prob < 0 or random_token_prob < 0
      or mask_token_prob + random_token_prob > 1.0 + 1e-9):
    raise UserError('mask_token_prob and random_token_prob must be >= 0 and '
                    f'sum to <= 1, got {mask_token_prob} and '
                    f'{random_token_prob}')
  if random_token_prob > 0:
    if random_token_ids.ndim != 1 or random_token_ids.size == 0:
      raise UserError('random_token_ids must be a non-empty 1-D array when '
                      'random_token_prob > 0')
    if np.isin(random_token_ids, special_ids).any():  # ~40 us at 50k ids.
      raise UserError('random_token_ids must not contain special ids '
                      f'{special_ids.tolist()}')


def _mask_row(input_ids_L: np.ndarray, rng: np.random.Generator, *,
              mask_id: int, pad_id: int | None, special_ids: np.ndarray,
              random_token_ids: np.ndarray, mask_prob: float,
              max_predictions: int, mask_token_prob: float,
              random_token_prob: float, budget: str) -> dict[str, np.ndarray]:
  units = candidate_units(input_ids_L, special_ids)
  if pad_id is None:
    n_tokens = len(units)
  else:
    n_tokens = int(np.count_nonzero(input_ids_L != pad_id))
  k = num_to_predict(n_tokens, len(input_ids_L), rng, mask_prob=mask_prob,
                     max_predictions=max_predictions, budget=budget)
  positions = select_units(units, k, rng)
  out = prediction_targets(input_ids_L, positions, max_predictions)
  out['input_ids'] = replace_tokens(
      input_ids_L, positions, rng, mask_id=mask_id,
      random_token_ids=random_token_ids, mask_token_prob=mask_token_prob,
      random_token_prob=random_token_prob)
  return out


def _prepare(special_ids: Sequence[int] | np.ndarray,
             random_token_ids: np.ndarray, mask_id: int,
             pad_id: int | None) -> tuple[np.ndarray, np.ndarray]:
  # [MASK] and pad are never candidates even if the caller left them out.
  always = [mask_id] if pad_id is None else [mask_id, pad_id]
  special = np.union1d(np.asarray(special_ids, np.int64).ravel(),
                       always).astype(np.int32)
  return special, np.asarray(random_token_ids, np.int32)


def mask_tokens(input_ids_L: np.ndarray, rng: np.random.Generator, *,
                mask_id: int, pad_id: int | None = None,
                special_ids: Sequence[int] | np.ndarray,
                random_token_ids: np.ndarray, max_predictions: int,
                mask_prob: float = 0.15, mask_token_prob: float = 0.8,
                random_token_prob: float = 0.1,
                budget: str = 'bert') -> dict[str, np.ndarray]:
  """Masks one row with single-token units (BERT / RoBERTa / ELECTRA masking).

  Args:
    input_ids_L: [L] token ids, padded or not.
    rng: all randomness.
    mask_id: the [MASK] id.
    pad_id: the padding id: the budget counts the non-pad tokens, [CLS] and
      [SEP] included, as the references do. None: it counts the candidates.
    special_ids: ids never masked ([CLS], [SEP], [MASK], pad, ...).
    random_token_ids: [V'] ids eligible for random replacement (non-special
      vocabulary); may be empty when random_token_prob is 0.
    max_predictions: P, the size of the target arrays and a cap on the budget.
    mask_prob: fraction of the row's real tokens to mask.
    mask_token_prob: P([MASK]) for a selected token (ELECTRA 0.85).
    random_token_prob: P(random token) for a selected token (ELECTRA 0.0).
    budget: 'bert', 'roberta' or 'electra' (see `num_to_predict`).

  Returns:
    `input_ids [L]` int32 corrupted copy, `masked_positions [P]` int32 sorted
    ascending, `masked_ids [P]` int32 originals, `masked_weights [P]` float32.
  """
  input_ids_L = np.asarray(input_ids_L)
  special, random_ids = _prepare(special_ids, random_token_ids, mask_id, pad_id)
  _check_args(input_ids_L, 1, special_ids=special, random_token_ids=random_ids,
              mask_prob=mask_prob, max_predictions=max_predictions,
              mask_token_prob=mask_token_prob,
              random_token_prob=random_token_prob, budget=budget)
  return _mask_row(input_ids_L, rng, mask_id=mask_id, pad_id=pad_id,
                   special_ids=special, random_token_ids=random_ids,
                   mask_prob=mask_prob, max_predictions=max_predictions,
                   mask_token_prob=mask_token_prob,
                   random_token_prob=random_token_prob, budget=budget)
