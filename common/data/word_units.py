"""Whole words as masking units, from a per-piece word-start table (numpy only).

BERT-wwm, n-gram (ALBERT, MacBERT), SpanBERT and ERNIE all mask whole words: every
piece of a word or none. A word is a word-start piece followed by its continuation
pieces. The only vocabulary-specific part is the bool[V] table of word-start pieces:
- sentencepiece: a piece starting with '▁' (`Tokenizer.is_word_start`);
- WordPiece: a piece NOT starting with '##' (an imported HF tokenizer's table,
  common/interop/hf_tokenizer.py), as BERT's create_pretraining_data.py groups "##"
  pieces with the previous word.
Special and padding ids are never part of a word, and a continuation piece right
after a special (a truncated word) starts a unit of its own.

Reference: google-research/bert `create_pretraining_data.py`
(`create_masked_lm_predictions`, `do_whole_word_mask`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

def word_start_flags(input_ids_L: np.ndarray, special_ids: Sequence[int] | np.ndarray,
                     is_word_start_V: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Which positions are candidates and which of them begin a word.

  Returns:
    (candidate_L, starts_L) bool arrays; starts_L implies candidate_L.
  """
  ids_L = np.asarray(input_ids_L)
  candidate_L = ~np.isin(ids_L, special_ids)
  previous_L = np.concatenate([[False], candidate_L[:-1]])
  starts_L = candidate_L & (np.asarray(is_word_start_V)[ids_L] | ~previous_L)
  return candidate_L, starts_L


def word_units(input_ids_L: np.ndarray, special_ids: Sequence[int] | np.ndarray,
               is_word_start_V: np.ndarray) -> list[np.ndarray]:
  """The row's words, in order, each an int array of its (contiguous) positions.

  Args:
    input_ids_L: [L] token ids.
    special_ids: ids never masked ([CLS], [SEP], [MASK], pad, ...).
    is_word_start_V: bool[V], True where a piece begins a word.

  Returns:
    Units for `masking.select_units` and the n-gram/span selectors.
  """
  candidate_L, starts_L = word_start_flags(input_ids_L, special_ids, is_word_start_V)
  positions = np.flatnonzero(candidate_L)
  if not len(positions):
    return []
  cuts = np.flatnonzero(starts_L[positions])[1:]
  return np.split(positions, cuts)
