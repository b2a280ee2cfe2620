"""ERNIE 1.0 knowledge units: phrases and entities masked whole (numpy only).

ERNIE 1.0 (Sun et al. 2019, "ERNIE: Enhanced Representation through Knowledge
Integration", section 3.2) masks phrases and named entities as units, found by a
segmenter and a lexicon that were not released. Here units come from what can be
computed or supplied locally:
- phrases: collocations of 2 adjacent words with high pointwise mutual
  information over the training corpus, PMI = log(c(ab) N / (c(a) c(b))), kept
  when c(ab) >= `min_count` and PMI >= `min_pmi`, the `max_phrases` best; and/or a
  user lexicon (`masking.phrase_lexicon_path`: UTF-8 text, one phrase per line,
  each encoded with the run's tokenizer, words separated by spaces);
- entities: runs of 2 or more capitalised words (first piece starts with an
  upper-case letter), a proxy for named entities in English text.
A row is cut into units left to right: the longest lexicon phrase starting at a
word, else a capitalised run, else the single word. Units never cross a special
token. The built lexicon is saved as JSON (`phrases.json` in the workdir, piece-id
tuples) and reused on resume.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import os
from typing import Callable, Sequence

import numpy as np

from common import atomic_files
from common import similar_words
from common import word_units
from common.errors import UserError


@dataclasses.dataclass(frozen=True)
class PhraseLexicon:
  """Phrases as tuples of piece ids; `max_words` bounds the lookup."""
  phrases: frozenset[tuple[int, ...]]
  max_words: int

  @classmethod
  def from_phrases(cls, phrases, is_word_start_V: np.ndarray) -> 'PhraseLexicon':
    phrases = frozenset(tuple(int(i) for i in p) for p in phrases if len(p))
    words = [int(np.asarray(is_word_start_V)[list(p)].sum()) for p in phrases]
    return cls(phrases, max(words, default=0))

  def to_json(self, vocab_size: int) -> str:
    return json.dumps({'vocab_size': vocab_size,
                       'phrases': sorted(list(p) for p in self.phrases)})


def capitalised_pieces(pieces: Sequence[str]) -> np.ndarray:
  """bool[V]: the piece's first letter (after '▁') is upper case."""
  return np.array([p.lstrip('\u2581')[:1].isupper() for p in pieces], bool)


def build(token_docs, is_word_start_V: np.ndarray, *, min_count: int = 5,
          min_pmi: float = 3.0, max_phrases: int = 2000) -> PhraseLexicon:
  """Adjacent-word collocations by PMI over the tokenized corpus (module doc)."""
  sentences = similar_words.corpus_words(token_docs, is_word_start_V)
  unigrams = collections.Counter(w for s in sentences for w in s)
  bigrams = collections.Counter(pair for s in sentences for pair in zip(s, s[1:]))
  n = sum(unigrams.values())
  scored = []
  for (a, b), c in bigrams.items():
    if c >= min_count:
      pmi = math.log(c * n / (unigrams[a] * unigrams[b]))
      if pmi >= min_pmi:
        scored.append((-pmi, a + b))
  scored.sort()  # Ties by piece ids: deterministic.
  return PhraseLexicon.from_phrases([p for _, p in scored[:max_phrases]],
                                    is_word_start_V)


def get_lexicon(masking_config, token_docs, tokenizer, workdir: str | None
                ) -> PhraseLexicon:
  """The user's lexicon if given, else the workdir's saved one, else a new one."""
  path = masking_config.get('phrase_lexicon_path', '')
  if path:
    return load_text(path, tokenizer.encode, tokenizer.is_word_start)
  cache = os.path.join(workdir, 'phrases.json') if workdir else None
  if cache and os.path.exists(cache):
    with open(cache) as f:
      data = json.load(f)
    if data.get('vocab_size') != tokenizer.vocab_size:
      raise UserError(f'{cache} was built for another vocabulary; remove it to rebuild')
    return PhraseLexicon.from_phrases(data['phrases'], tokenizer.is_word_start)
  lexicon = build(token_docs, tokenizer.is_word_start,
                  min_pmi=masking_config.get('phrase_min_pmi', 3.0))
  if cache:
    atomic_files.write_text(cache, lexicon.to_json(tokenizer.vocab_size))
  return lexicon


def load_text(path: str, encode: Callable[[str], np.ndarray],
              is_word_start_V: np.ndarray) -> PhraseLexicon:
  """A user lexicon: one phrase per line."""
  try:
    with open(path, encoding='utf-8') as f:
      lines = [line.strip() for line in f.read().splitlines()]
  except (OSError, UnicodeDecodeError) as e:
    raise UserError(f'cannot read the phrase lexicon {path}: {e}') from e
  return PhraseLexicon.from_phrases([encode(line) for line in lines if line],
                                    is_word_start_V)


def knowledge_units(input_ids_L: np.ndarray, special_ids, is_word_start_V: np.ndarray,
                    is_capitalised_V: np.ndarray,
                    lexicon: PhraseLexicon | None) -> list[np.ndarray]:
  """The row cut into phrase, entity and word units, in position order.

  Returns:
    Units (int position arrays) for `masking.select_units` or per-unit selection.
  """
  words = word_units.word_units(input_ids_L, special_ids, is_word_start_V)
  if not words:
    return []
  ids_L = np.asarray(input_ids_L)
  adjacent = [words[i + 1][0] == words[i][-1] + 1 for i in range(len(words) - 1)]
  capital = [bool(is_capitalised_V[ids_L[w[0]]]) for w in words]
  units, i = [], 0
  while i < len(words):
    # Furthest word j such that words i..j are adjacent.
    j = i
    while j < len(words) - 1 and adjacent[j]:
      j += 1
    n = 1
    if lexicon is not None:
      for m in range(min(lexicon.max_words, j - i + 1), 1, -1):
        pieces = tuple(ids_L[words[i][0]:words[i + m - 1][-1] + 1].tolist())
        if pieces in lexicon.phrases:
          n = m
          break
    if n == 1 and capital[i]:
      while i + n <= j and capital[i + n]:
        n += 1
    units.append(np.concatenate(words[i:i + n]))
    i += n
  return units
