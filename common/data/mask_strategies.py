"""Masking strategies: one row of token ids -> the MLM fields, per `masking.strategy`.

Every strategy is the three steps of `common/data/masking.py` with other units, another
selection or another replacement, and returns the same fields (`input_ids`,
`masked_positions`, `masked_ids`, `masked_weights`), so any strategy works with
any MLM-style objective:

| strategy | units | selection | replacement |
|---|---|---|---|
| token | tokens | shuffle, budget (BERT) | 80/10/10 per token |
| whole_word | words (BERT-wwm) | shuffle, budget | 80/10/10 per token |
| ngram | words | n-grams, p(n) (ALBERT 1/n) | 80/10/10 per token |
| span | words | geometric spans (SpanBERT) | 80/10/10 per span |
| macbert | words | n-grams 40/30/20/10% | similar / random / kept per word |
| ernie | phrases, entities, words | each unit p = mask_prob | 80/10/10 per token |
| frequency | tokens | p ~ count^-mlm_smoothing, budget | 80/10/10 per token |

ERNIE mixes per input, as ERNIE r2.0 `batching.py` (`mask_word_tags`): with prob
`ernie_knowledge_prob` a row uses knowledge units, else single tokens, each unit
or token selected with p = mask_prob (Bernoulli, not a fixed count, as the
reference). The mixing probability is not stated in the paper; 0.5 is our
default (unverified). Selections over `max_predictions` keep a random subset of
whole units.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from common.data import masking
from common.data import phrases
from common.data import similar_words
from common.data import word_units
from common.errors import UserError

STRATEGIES = ('token', 'whole_word', 'ngram', 'span', 'macbert', 'ernie',
              'frequency')


@dataclasses.dataclass(frozen=True)
class MaskingVocab:
  """What masking needs from the tokenizer (and corpus-built tables)."""
  mask_id: int
  pad_id: int
  special_ids: np.ndarray
  random_token_ids: np.ndarray
  is_word_start: np.ndarray
  is_capitalised: np.ndarray | None = None
  similar_words: similar_words.SimilarWords | None = None
  phrase_lexicon: phrases.PhraseLexicon | None = None
  token_weights: np.ndarray | None = None  # 'frequency': [V] selection weights.


def check_strategy(cfg: Any) -> str:
  strategy = cfg.get('strategy', 'token')
  if strategy not in STRATEGIES:
    raise UserError(f'unknown masking.strategy {strategy!r}; known: {STRATEGIES}')
  return strategy


def _budget(cfg, input_ids_L, vocab, rng, default: str) -> int:
  n_tokens = int(np.count_nonzero(input_ids_L != vocab.pad_id))
  return masking.num_to_predict(
      n_tokens, len(input_ids_L), rng, mask_prob=cfg.mask_prob,
      max_predictions=cfg.max_predictions_per_seq,
      budget=cfg.get('budget', default) or default)


def _bernoulli_units(units, rng, mask_prob: float, max_predictions: int):
  """Each unit selected with mask_prob; over the cap, a random subset that fits."""
  chosen = [u for u, keep in zip(units, rng.random(len(units)) < mask_prob) if keep]
  return masking.select_units(chosen, max_predictions, rng)


def mask_row(input_ids_L: np.ndarray, rng: np.random.Generator, cfg: Any,
             vocab: MaskingVocab) -> dict[str, np.ndarray]:
  """Masks one padded row by `cfg.strategy` (not 'token': see `masking.mask_tokens`).

  Args:
    input_ids_L: [L] padded token ids.
    rng: all randomness.
    cfg: the masking ConfigDict.
    vocab: ids, word-start table and the strategy's tables.

  Returns:
    input_ids [L], masked_positions [P], masked_ids [P], masked_weights [P].
  """
  strategy = check_strategy(cfg)
  ids_L = np.asarray(input_ids_L, np.int32)
  special = np.union1d(vocab.special_ids, [vocab.mask_id, vocab.pad_id])
  replace = dict(mask_id=vocab.mask_id, random_token_ids=vocab.random_token_ids,
                 mask_token_prob=cfg.mask_token_prob,
                 random_token_prob=cfg.random_token_prob)
  if strategy == 'ernie':
    if rng.random() < cfg.get('ernie_knowledge_prob', 0.5):
      units = phrases.knowledge_units(ids_L, special, vocab.is_word_start,
                                      vocab.is_capitalised, vocab.phrase_lexicon)
    else:
      units = masking.candidate_units(ids_L, special)
    positions = _bernoulli_units(units, rng, cfg.mask_prob, cfg.max_predictions_per_seq)
    corrupted = masking.replace_tokens(ids_L, positions, rng, **replace)
  elif strategy == 'frequency':
    candidates = np.flatnonzero(~np.isin(ids_L, special))
    weights = (np.ones(len(candidates)) if vocab.token_weights is None
               else vocab.token_weights[ids_L[candidates]].astype(np.float64))
    budget = min(_budget(cfg, ids_L, vocab, rng, 'bert'),
                 int(np.count_nonzero(weights)))
    positions = np.zeros(0, np.int64)
    if budget:
      positions = np.sort(rng.choice(candidates, size=budget, replace=False,
                                     p=weights / weights.sum()))
    corrupted = masking.replace_tokens(ids_L, positions, rng, **replace)
  else:
    units = word_units.word_units(ids_L, special, vocab.is_word_start)
    budget = _budget(cfg, ids_L, vocab, rng, 'spanbert' if strategy == 'span' else 'bert')
    if strategy == 'whole_word':
      positions = masking.select_units(units, budget, rng)
      corrupted = masking.replace_tokens(ids_L, positions, rng, **replace)
    elif strategy == 'span':
      probs = masking.span_length_probs(cfg.get('span_p', 0.2), cfg.get('span_max', 10))
      groups = masking.group_positions(
          units, masking.select_spans(units, budget, rng, probs))
      positions = np.sort(np.concatenate(groups)) if groups else np.zeros(0, np.int32)
      corrupted = masking.replace_groups(ids_L, groups, rng, **replace)
    else:  # ngram, macbert
      preset = 'macbert' if strategy == 'macbert' else None
      probs = masking.ngram_probs(cfg.get('ngram_probs', None) or preset,
                                  cfg.get('ngram_max', 3))
      groups = masking.select_ngrams(units, budget, rng, probs)
      words = [units[i] for g in groups for i in g]
      positions = (np.sort(np.concatenate(words)).astype(np.int32) if words
                   else np.zeros(0, np.int32))
      if strategy == 'ngram':
        corrupted = masking.replace_tokens(ids_L, positions, rng, **replace)
      else:
        table = vocab.similar_words or similar_words.SimilarWords({})
        corrupted, _ = similar_words.replace_words(
            ids_L, words, rng, table, random_token_ids=vocab.random_token_ids,
            similar_prob=cfg.get('similar_word_prob', 0.8),
            random_prob=cfg.random_token_prob)
  out = masking.prediction_targets(ids_L, positions.astype(np.int32),
                                   cfg.max_predictions_per_seq)
  out['input_ids'] = corrupted
  return out
