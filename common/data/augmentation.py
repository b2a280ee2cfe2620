"""TinyBERT's data augmentation: more task examples by replacing words with similar ones.

Jiao et al. 2020 (arXiv:1909.10351), section 3.4 and Algorithm 1; reference
huawei-noah/Pretrained-Language-Model TinyBERT/data_augmentation.py. For each word of a
training text, K candidates:
- a word that is one piece of the vocabulary: the K most likely whole-word pieces a
  pretrained masked LM predicts with that word masked in its text;
- any other word: its K nearest whole-word pieces by cosine of word embeddings (the
  paper's GloVe; here the same masked LM's input embeddings, averaged over the word's
  pieces, so nothing is downloaded).
Then N new texts per example: each word replaced by a random one of its candidates with
probability p, duplicates (and copies of the original) dropped, the original first.
Paper section 4.1: p = 0.4, N = 20, K = 15 (the reference script's defaults: N 30,
M 15, p 0.4). Pair tasks: each text of the pair is augmented independently (ours; the
paper does not say).

Words are maximal runs of word characters; punctuation and spaces between them are
kept as they are and never replaced. The candidate model is
common/model/word_candidates.py; this module is numpy only.
"""

from collections.abc import Callable
import re

import numpy as np

# Paper section 4.1 (Algorithm 1's p_t, N_a, K).
REPLACE_PROB = 0.4
NUM_AUGMENTED = 20
NUM_CANDIDATES = 15

_TOKEN = re.compile(r'\w+|\W+')
_WORD = re.compile(r'\w+')

# A text -> the candidates of each of its words, in order (`split_words`; an empty
# list: never replaced).
CandidateFn = Callable[[str], list[list[str]]]


def split_words(text: str) -> tuple[list[str], list[bool]]:
  """The text as alternating runs: (runs, is_word); ''.join(runs) == text."""
  runs = _TOKEN.findall(text)
  return runs, [bool(_WORD.fullmatch(r)) for r in runs]


def augmented_texts(text: str, candidates: CandidateFn, num_augmented: int,
                    replace_prob: float, rng: np.random.Generator) -> list[str]:
  """The text and up to `num_augmented` distinct variants of it (Algorithm 1).

  Args:
    candidates: the candidates of each word of a text.
    rng: draws which words are replaced and by what.

  Returns:
    [text, variant, ...]: each variant differs from the text and from the others.
    A text whose words have no candidates yields [text].
  """
  runs, is_word = split_words(text)
  word_at = [i for i, w in enumerate(is_word) if w]
  options = candidates(text) if word_at else []
  out, seen = [text], {text}
  if not any(options):
    return out
  # Draws are bounded: short texts with few candidates have few distinct variants.
  for _ in range(4 * num_augmented):
    if len(out) > num_augmented:
      break
    new = list(runs)
    for i, cands in zip(word_at, options):
      if cands and rng.random() < replace_prob:
        new[i] = cands[rng.integers(len(cands))]
    variant = ''.join(new)
    if variant not in seen:
      seen.add(variant)
      out.append(variant)
  return out


def rewrite_rows(candidates: CandidateFn, num_augmented: int, replace_prob: float,
                 seed: int) -> Callable[[list[str | None]], list[list[str | None]]]:
  """A row rewriter for `glue.write_rewritten_train`: the row's texts, then each
  variant (the texts of a pair varied independently; where one has fewer variants,
  its original fills the rest)."""
  rng = np.random.default_rng(seed)

  def rewrite(texts: list[str | None]) -> list[list[str | None]]:
    per_text = [augmented_texts(t, candidates, num_augmented, replace_prob, rng)
                if t else [t] for t in texts]
    count = max(len(v) for v in per_text)
    return [[v[k] if k < len(v) else v[0] for v in per_text] for k in range(count)]

  return rewrite
