"""ERNIE 1.0 knowledge units: phrases and entities masked whole (numpy only).

ERNIE 1.0 (Sun et al. 2019, "ERNIE: Enhanced Representation through Knowledge
Integration", section 3.2) masks phrases and named entities as units, found by a
segmenter and a lexicon that were not released. Here units come from what can be
computed or supplied locally:
- phrases: collocations of adjacent words with high pointwise mutual
  information over the training corpus, PMI = log(c(ab) N / (c(a) c(b))), kept
  when c(ab) >= `min_count` and PMI >= `min_pmi`. As word2phrase (Mikolov et al.
  2013, "Distributed Representations of Words and Phrases", section 4), this runs
  in `passes`: each pass joins the phrases found so far into single tokens and
  scores adjacent pairs again, so 2 passes find phrases of up to 4 words
  ("New York" + "Times"); the `max_phrases` best of all passes are kept; and/or a
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
from common.data import similar_words
from common.data import word_units
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


def capitalised_pieces(pieces: Sequence[str], word_mark: str = '') -> np.ndarray:
  """bool[V]: the piece's first letter, after leading word-start marks ('▁', and the
  tokenizer's own `word_mark` such as byte-level BPE's 'Ġ', which would itself read as
  a capital), is upper case."""
  marks = word_mark + '\u2581'
  return np.array([p.lstrip(marks)[:1].isupper() for p in pieces], bool)


def build(token_docs, is_word_start_V: np.ndarray, *, min_count: int = 5,
          min_pmi: float = 3.0, max_phrases: int = 2000, passes: int = 2,
          max_words: int = 4) -> PhraseLexicon:
  """Adjacent-word collocations by PMI over the tokenized corpus (module doc).

  Args:
    token_docs: documents of sentences of piece ids.
    is_word_start_V: bool[V], pieces that begin a word.
    min_count, min_pmi: a pair (of words or phrases) is kept when seen at least
      min_count times with PMI at least min_pmi.
    max_phrases: the best phrases kept, by PMI, over all passes.
    passes: rounds of pair scoring; phrases found in one round are single tokens in
      the next, so `passes` rounds reach 2**passes words.
    max_words: no phrase longer than this many words.
  """
  sentences = [[(w,) for w in s]
               for s in similar_words.corpus_words(token_docs, is_word_start_V)]
  scored = {}  # phrase (piece ids) -> PMI when found
  for _ in range(passes):
    unigrams = collections.Counter(u for s in sentences for u in s)
    bigrams = collections.Counter(pair for s in sentences for pair in zip(s, s[1:]))
    n = sum(unigrams.values())
    found = set()
    for (a, b), c in bigrams.items():
      if c >= min_count and len(a) + len(b) <= max_words:
        pmi = math.log(c * n / (unigrams[a] * unigrams[b]))
        if pmi >= min_pmi:
          found.add((a, b))
          pieces = sum(a + b, ())
          scored[pieces] = max(pmi, scored.get(pieces, pmi))
    if not found:
      break
    sentences = [_join_pairs(s, found) for s in sentences]
  # Ties by piece ids: deterministic.
  best = sorted(scored, key=lambda p: (-scored[p], p))[:max_phrases]
  return PhraseLexicon.from_phrases(best, is_word_start_V)


def _join_pairs(sentence: list[tuple], pairs: set[tuple]) -> list[tuple]:
  """Left to right, each adjacent pair in `pairs` becomes one token (its words)."""
  out, i = [], 0
  while i < len(sentence):
    if i + 1 < len(sentence) and (sentence[i], sentence[i + 1]) in pairs:
      out.append(sentence[i] + sentence[i + 1])
      i += 2
    else:
      out.append(sentence[i])
      i += 1
  return out


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
                  min_pmi=masking_config.get('phrase_min_pmi', 3.0),
                  passes=masking_config.get('phrase_passes', 2))
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
