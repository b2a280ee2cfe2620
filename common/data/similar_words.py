"""MacBERT's similar-word table and "MLM as correction" replacement (numpy only).

MacBERT (Cui et al. 2020, "Revisiting Pre-Trained Models for Chinese Natural
Language Processing", section 3.3) replaces a selected word by a similar word
instead of [MASK] (the paper uses word2vec neighbours from the Synonyms toolkit),
so pretraining never sees [MASK]. No training code was released. Here the table
is built from the training corpus itself, with no download:
1. words = whole words (a word-start piece and its continuations) of the tokenized
   corpus, the `max_words` most frequent with at least `min_count` occurrences;
2. symmetric co-occurrence counts within +-`window` words of a sentence;
3. PPMI (positive pointwise mutual information), then a rank-`dim` truncated SVD
   (randomized range finder from a seeded rng; Levy et al. 2015 show PPMI-SVD
   vectors are comparable to word2vec's);
4. the `k` nearest neighbours by cosine among words with the SAME number of
   pieces, so a replacement never changes the row's length or target alignment.
   A word without such a neighbour (or not in the table) falls back to a random
   word, as the paper does for words without a similar word.

A word is a tuple of piece ids. The random-word replacement draws each piece of
the word uniformly from the non-special vocabulary (BERT's random token, per
piece), again keeping the length.

A user-supplied table (`masking.similar_words_path`) is a UTF-8 text file, one
word per line: the word, a tab, then its neighbours separated by spaces, e.g.
`big<TAB>large huge giant`. Each word is encoded with the run's tokenizer as a
standalone word; neighbours with another piece count are dropped (see 4).
The built table is saved as JSON (`similar_words.json` in the workdir: piece-id
tuples, not text) and reused on resume.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
from typing import Callable, Sequence

import numpy as np

from common import atomic_files
from common.data import word_units
from common.errors import UserError


@dataclasses.dataclass(frozen=True)
class SimilarWords:
  """word (tuple of piece ids) -> candidate replacements, each with its piece count."""
  neighbours: dict[tuple[int, ...], tuple[tuple[int, ...], ...]]

  def lookup(self, word: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
    return self.neighbours.get(word, ())

  def to_json(self, vocab_size: int) -> str:
    words = sorted(self.neighbours)
    return json.dumps({'vocab_size': vocab_size,
                       'table': [[list(w), [list(n) for n in self.neighbours[w]]]
                                 for w in words]})

  @classmethod
  def from_json(cls, text: str, vocab_size: int, path: str) -> 'SimilarWords':
    data = json.loads(text)
    if data.get('vocab_size') != vocab_size:
      raise UserError(f'{path} was built for a vocabulary of {data.get("vocab_size")}'
                      f' pieces, not {vocab_size}; remove it to rebuild')
    return cls({tuple(w): tuple(tuple(n) for n in ns) for w, ns in data['table']})


def corpus_words(token_docs: Sequence[Sequence[np.ndarray]],
                 is_word_start_V: np.ndarray) -> list[list[tuple[int, ...]]]:
  """Sentences of the tokenized corpus as lists of words (tuples of piece ids)."""
  sentences = []
  for doc in token_docs:
    for ids in doc:
      units = word_units.word_units(ids, np.zeros(0, np.int32), is_word_start_V)
      sentences.append([tuple(ids[u].tolist()) for u in units])
  return sentences


def build(token_docs: Sequence[Sequence[np.ndarray]], is_word_start_V: np.ndarray,
          *, seed: int, max_words: int = 3000, min_count: int = 5, window: int = 2,
          dim: int = 64, k: int = 10) -> SimilarWords:
  """Nearest neighbours of PPMI-SVD word vectors over the corpus (module doc)."""
  sentences = corpus_words(token_docs, is_word_start_V)
  counts = collections.Counter(w for s in sentences for w in s)
  # Ties broken by the piece ids: the same corpus gives the same table.
  vocab = sorted((w for w, c in counts.items() if c >= min_count),
                 key=lambda w: (-counts[w], w))[:max_words]
  if len(vocab) < 2:
    return SimilarWords({})
  index = {w: i for i, w in enumerate(vocab)}
  n = len(vocab)
  cooc_WxW = np.zeros((n, n), np.float64)
  for sentence in sentences:
    ids = np.array([index.get(w, -1) for w in sentence], np.int64)
    for d in range(1, window + 1):
      a, b = ids[:-d], ids[d:]
      keep = (a >= 0) & (b >= 0)
      np.add.at(cooc_WxW, (a[keep], b[keep]), 1.0)
      np.add.at(cooc_WxW, (b[keep], a[keep]), 1.0)
  total = cooc_WxW.sum()
  row_W = cooc_WxW.sum(1)
  with np.errstate(divide='ignore', invalid='ignore'):
    pmi = np.log(cooc_WxW * total / np.outer(row_W, row_W))
  ppmi_WxW = np.where(np.isfinite(pmi) & (pmi > 0), pmi, 0.0)
  vectors_WxD = _truncated_svd(ppmi_WxW, min(dim, n - 1), np.random.default_rng(seed))
  norms = np.linalg.norm(vectors_WxD, axis=1, keepdims=True)
  unit_WxD = vectors_WxD / np.maximum(norms, 1e-12)
  cosine_WxW = unit_WxD @ unit_WxD.T
  pieces_W = np.array([len(w) for w in vocab])
  cosine_WxW[pieces_W[:, None] != pieces_W[None, :]] = -np.inf
  np.fill_diagonal(cosine_WxW, -np.inf)
  cosine_WxW[(norms[:, 0] < 1e-12)] = -np.inf  # Words with no co-occurrence.
  table = {}
  for i, w in enumerate(vocab):
    order = np.argsort(-cosine_WxW[i], kind='stable')[:k]
    order = order[np.isfinite(cosine_WxW[i, order])]
    if len(order):
      table[w] = tuple(vocab[j] for j in order)
  return SimilarWords(table)


def _truncated_svd(m_WxW: np.ndarray, dim: int, rng: np.random.Generator) -> np.ndarray:
  """U sqrt(S) of a rank-dim SVD (Halko et al. 2011 randomized range finder)."""
  g_WxR = rng.standard_normal((m_WxW.shape[1], dim + 10))
  q_WxR, _ = np.linalg.qr(m_WxW @ g_WxR)
  for _ in range(2):  # Power iterations sharpen the spectrum.
    q_WxR, _ = np.linalg.qr(m_WxW @ (m_WxW.T @ q_WxR))
  u_RxR, s_R, _ = np.linalg.svd(q_WxR.T @ m_WxW, full_matrices=False)
  return (q_WxR @ u_RxR)[:, :dim] * np.sqrt(s_R[:dim])


def load_text(path: str, encode: Callable[[str], np.ndarray]) -> SimilarWords:
  """A user table: 'word<TAB>neighbour neighbour ...' per line (module doc)."""
  try:
    with open(path, encoding='utf-8') as f:
      lines = f.read().splitlines()
  except (OSError, UnicodeDecodeError) as e:
    raise UserError(f'cannot read the similar-word table {path}: {e}') from e
  table = {}
  for number, line in enumerate(lines, 1):
    if not line.strip():
      continue
    if '\t' not in line:
      raise UserError(f'{path}:{number}: expected "word<TAB>neighbours", got {line!r}')
    word, rest = line.split('\t', 1)
    key = tuple(encode(word.strip()).tolist())
    found = [tuple(encode(n).tolist()) for n in rest.split()]
    found = tuple(n for n in found if len(n) == len(key) and n != key)
    if key and found:
      table[key] = found
  return SimilarWords(table)


def get_table(masking_config, token_docs, tokenizer, workdir: str | None,
              seed: int) -> SimilarWords:
  """The user's table, or the one saved in the workdir, or a new one (then saved)."""
  path = masking_config.get('similar_words_path', '')
  if path:
    return load_text(path, tokenizer.encode)
  cache = os.path.join(workdir, 'similar_words.json') if workdir else None
  if cache and os.path.exists(cache):
    with open(cache) as f:
      return SimilarWords.from_json(f.read(), tokenizer.vocab_size, cache)
  table = build(token_docs, tokenizer.is_word_start, seed=seed,
                max_words=masking_config.get('similar_words_max', 3000))
  if cache:
    atomic_files.write_text(cache, table.to_json(tokenizer.vocab_size))
  return table


def replace_words(input_ids_L: np.ndarray, words: Sequence[np.ndarray],
                  rng: np.random.Generator, table: SimilarWords, *,
                  random_token_ids: np.ndarray, similar_prob: float = 0.8,
                  random_prob: float = 0.1) -> tuple[np.ndarray, dict[str, int]]:
  """MacBERT replacement, one decision per word; never [MASK].

  Args:
    input_ids_L: [L] token ids (not modified).
    words: the positions of each selected word (each word of each n-gram).
    rng: the draws.
    table: similar words.
    random_token_ids: [V'] non-special ids for the random word.
    similar_prob: P(similar word) (MacBERT 0.8); with no neighbour, a random word.
    random_prob: P(random word) (0.1); else the word is kept.

  Returns:
    [L] int32 corrupted copy, and counts 'similar', 'random', 'fallback', 'kept'.
  """
  out = np.array(input_ids_L, np.int32)
  stats = dict(similar=0, random=0, fallback=0, kept=0)
  u_W = rng.random(len(words))
  for u, positions in zip(u_W, words):
    if u >= similar_prob + random_prob:
      stats['kept'] += 1
      continue
    if u < similar_prob:
      candidates = table.lookup(tuple(out[positions].tolist()))
      if candidates:
        out[positions] = candidates[rng.integers(len(candidates))]
        stats['similar'] += 1
        continue
      stats['fallback'] += 1
    else:
      stats['random'] += 1
    out[positions] = random_token_ids[rng.integers(0, len(random_token_ids),
                                                   len(positions))]
  return out, stats
