"""Building pretraining examples from a tokenized corpus (numpy only).

A corpus is `list[list[np.ndarray]]`: documents -> sentences -> 1-D integer
token ids without special tokens. An example is a dict of UNPADDED 1-D int32
arrays, `input_ids` (specials included) and `segment_ids` of the same length,
plus an int32 scalar label for the two-segment objectives. `pad_example` turns
one into fixed-size arrays for batching. Masking is a separate step
(`common/data/masking.py`).

Three ways to cut a corpus into examples, each following its reference:
- `pack_full_sentences`: RoBERTa FULL-SENTENCES, fairseq `TokenBlockDataset`
  with break_mode='complete': whole sentences packed contiguously up to the
  budget, crossing documents with an extra separator between them (fairseq's
  </s>, our [SEP]). `pack_doc_sentences` is DOC-SENTENCES ('complete_doc'),
  never crossing.
- `pack_sentence_segments`: ELECTRA, google-research/electra
  `build_pretraining_dataset.py` (`ExampleBuilder`): sentences of one document
  up to a target length, as one segment or split into two, no label.
- `create_segment_pairs`: google-research/bert `create_pretraining_data.py`
  (`create_instances_from_document`, `truncate_seq_pair`) for next-sentence
  prediction, and google-research/albert's version of it for sentence-order
  prediction.

Everything random takes an `np.random.Generator`, so a seed fixes the output.
Empty sentences and empty documents are dropped first (BERT skips empty
documents; an empty sentence would only make empty segments possible).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from common.errors import UserError

Corpus = Sequence[Sequence[np.ndarray]]
Example = dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class SpecialIds:
  """Ids of the special tokens, passed in so nothing hard-codes a vocabulary."""
  pad: int
  cls: int
  sep: int
  mask: int

  def as_array(self) -> np.ndarray:
    return np.asarray([self.pad, self.cls, self.sep, self.mask], np.int32)


# ---------------------------------------------------------------------------
# Input checks.


def _clean_corpus(docs: Corpus, specials: SpecialIds) -> list[list[np.ndarray]]:
  """Checks the corpus and returns it as int32 arrays without empty parts."""
  if not isinstance(specials, SpecialIds):
    raise UserError('specials must be a SpecialIds, got '
                    f'{type(specials).__name__}')
  special_arr = specials.as_array()
  out = []
  for d, doc in enumerate(docs):
    sentences = []
    for s, sent in enumerate(doc):
      arr = np.asarray(sent)
      integer = np.issubdtype(arr.dtype, np.integer)
      if arr.ndim != 1 or (arr.size and not integer):
        raise UserError(f'corpus document {d} sentence {s} is not a 1-D array '
                        f'of integer token ids (shape {arr.shape}, dtype '
                        f'{arr.dtype})')
      if arr.size:
        sentences.append(arr.astype(np.int32, copy=False))
    if sentences:
      # One check per document: specials inside the text would be mistaken for
      # separators by everything downstream.
      if np.isin(np.concatenate(sentences), special_arr).any():
        raise UserError(f'corpus document {d} contains special token ids '
                        f'{special_arr.tolist()}; tokenize without specials')
      out.append(sentences)
  if not out:
    raise UserError('corpus is empty: no document has any tokens')
  return out


def _check_length(max_seq_length: int, minimum: int) -> None:
  is_int = isinstance(max_seq_length, (int, np.integer))
  if not is_int or max_seq_length < minimum:
    raise UserError(f'max_seq_length must be an integer >= {minimum}, '
                    f'got {max_seq_length!r}')


# ---------------------------------------------------------------------------
# Single-segment packing (RoBERTa).


def _single_segment(content: list[np.ndarray], specials: SpecialIds) -> Example:
  ids = np.concatenate([np.asarray([specials.cls], np.int32), *content,
                        np.asarray([specials.sep], np.int32)])
  return {'input_ids': ids, 'segment_ids': np.zeros_like(ids)}


def _pack(docs: Corpus, max_seq_length: int, specials: SpecialIds,
          cross_documents: bool) -> list[Example]:
  """Greedy sentence packing shared by FULL- and DOC-SENTENCES."""
  _check_length(max_seq_length, 3)
  docs = _clean_corpus(docs, specials)
  budget = max_seq_length - 2  # [CLS] and the final [SEP].
  sep = np.asarray([specials.sep], np.int32)
  examples: list[Example] = []
  content: list[np.ndarray] = []
  length = 0

  def flush():
    nonlocal content, length
    if content:
      examples.append(_single_segment(content, specials))
    content, length = [], 0

  for doc in docs:
    if not cross_documents:
      flush()
    new_doc = True
    for sent in doc:
      # Sentences over the budget become budget-sized chunks, each a "sentence".
      for start in range(0, len(sent), budget):
        piece = sent[start:start + budget]
        # The document separator rides with the first piece of the next
        # document, so it is only ever written between two pieces of one
        # example.
        needs_sep = new_doc and length > 0
        cost = len(piece) + int(needs_sep)
        if length + cost > budget:
          flush()
          needs_sep, cost = False, len(piece)
        if needs_sep:
          content.append(sep)
        content.append(piece)
        length += cost
        new_doc = False
  flush()
  return examples


def pack_full_sentences(docs: Corpus, max_seq_length: int,
                        specials: SpecialIds) -> list[Example]:
  """RoBERTa FULL-SENTENCES packing (fairseq break_mode='complete').

  Whole sentences are taken in corpus order and packed into `[CLS] tokens [SEP]`
  until the next sentence would not fit in `max_seq_length - 2` tokens. Packing
  crosses document boundaries; where it does, one [SEP] is written between the
  two documents (counted in the budget). A document boundary that falls between
  two examples gets no separator, so an example never starts or ends with one.
  A sentence longer than the budget is split into budget-sized chunks.

  Args:
    docs: documents -> sentences -> 1-D integer token ids, no specials.
    max_seq_length: the full example length L, specials included (>= 3).
    specials: the special token ids.

  Returns:
    Examples with `input_ids [<=L]` int32 and `segment_ids [<=L]` (all 0).
  """
  return _pack(docs, max_seq_length, specials, cross_documents=True)


def pack_doc_sentences(docs: Corpus, max_seq_length: int,
                       specials: SpecialIds) -> list[Example]:
  """RoBERTa DOC-SENTENCES packing (fairseq break_mode='complete_doc').

  As `pack_full_sentences`, but an example never crosses a document boundary, so
  the last example of a document may be short (RoBERTa compensates with a
  variable batch size; here padding does).

  Args:
    docs: documents -> sentences -> 1-D integer token ids, no specials.
    max_seq_length: the full example length L, specials included (>= 3).
    specials: the special token ids.

  Returns:
    Examples with `input_ids [<=L]` int32 and `segment_ids [<=L]` (all 0).
  """
  return _pack(docs, max_seq_length, specials, cross_documents=False)


# ---------------------------------------------------------------------------
# ELECTRA's one-or-two-segment examples.


def _segments_example(first: np.ndarray, second: np.ndarray,
                      specials: SpecialIds) -> Example:
  cls = np.asarray([specials.cls], np.int32)
  sep = np.asarray([specials.sep], np.int32)
  if not len(second):
    return _single_segment([first], specials)
  ids = np.concatenate([cls, first, sep, second, sep])
  segment_ids = np.zeros_like(ids)
  segment_ids[len(first) + 2:] = 1
  return {'input_ids': ids, 'segment_ids': segment_ids}


def pack_sentence_segments(docs: Corpus, max_seq_length: int, specials: SpecialIds,
                           rng: np.random.Generator, *,
                           single_segment_prob: float = 0.1,
                           short_seq_prob: float = 0.05) -> list[Example]:
  """ELECTRA's examples (google-research/electra build_pretraining_dataset.py).

  As the reference's `ExampleBuilder`: sentences of a document are gathered until
  their length reaches the target (`max_seq_length`, or with prob `short_seq_prob`
  after each example a random length in [5, max_seq_length] for the next one); a
  document's end closes the example early. With prob `single_segment_prob` all the
  sentences form one segment `[CLS] A [SEP]`; else sentences go to A while A stays
  under (target - 3) // 2 tokens (the first one always, and the one that crosses
  that length with prob 0.5 when B is still empty), the rest to B (a short
  sentence after one that went to B can still join A, as in the reference):
  `[CLS] A [SEP] B [SEP]`, segment ids 0 then 1. A is cut to L - 2 tokens and B to
  what is left of L - 3; the tokens cut off are dropped, as in the reference.

  Args:
    docs: documents -> sentences -> 1-D integer token ids, no specials.
    max_seq_length: the full example length L, specials included (>= 5).
    specials: the special token ids.
    rng: all randomness.
    single_segment_prob: probability of a one-segment example (0.1 reference).
    short_seq_prob: probability that the next example aims at a random length
      (0.05 reference).

  Returns:
    Examples with `input_ids [<=L]` and `segment_ids [<=L]`, no label.
  """
  for name, prob in (('single_segment_prob', single_segment_prob),
                     ('short_seq_prob', short_seq_prob)):
    if not 0.0 <= prob <= 1.0:
      raise UserError(f'{name} must be in [0, 1], got {prob}')
  _check_length(max_seq_length, 5)
  docs = _clean_corpus(docs, specials)
  examples: list[Example] = []
  target = max_seq_length

  def create(sentences: list[np.ndarray]) -> None:
    nonlocal target
    first_target = (target - 3) // 2
    if rng.random() < single_segment_prob:
      first_target = np.inf
    first, second = [], []
    first_length = 0
    for sentence in sentences:
      if (not first or first_length + len(sentence) < first_target or
          (not second and first_length < first_target and rng.random() < 0.5)):
        first.append(sentence)
        first_length += len(sentence)
      else:
        second.append(sentence)
    a = np.concatenate(first)[:max_seq_length - 2]
    b = np.concatenate(second) if second else np.zeros(0, np.int32)
    b = b[:max(0, max_seq_length - len(a) - 3)]
    examples.append(_segments_example(a, b, specials))
    target = max_seq_length
    if rng.random() < short_seq_prob:
      target = int(rng.integers(5, max_seq_length + 1))

  for doc in docs:
    sentences, length = [], 0
    for sentence in doc:
      sentences.append(sentence)
      length += len(sentence)
      if length >= target:
        create(sentences)
        sentences, length = [], 0
    if sentences:
      create(sentences)
  return examples


# ---------------------------------------------------------------------------
# Two-segment examples (BERT NSP, ALBERT SOP).


def _truncate_pair(a: np.ndarray, b: np.ndarray, max_num_tokens: int,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """BERT's truncate_seq_pair: trims the longer segment, one token at a time.

  The reference flips a coin per removed token (front or back). Which segment
  loses each token depends only on the lengths, so the same distribution is one
  binomial draw per segment for the number taken from the front.
  """
  la, lb = len(a), len(b)
  excess = la + lb - max_num_tokens
  if excess > 0:
    # The reference loop shortens the longer one (B on a tie) until they are
    # equal, then alternates starting with B; in closed form:
    d = min(excess, abs(la - lb))
    if la > lb:
      la -= d
    else:
      lb -= d
    excess -= d
    lb -= (excess + 1) // 2
    la -= excess // 2
  out = []
  for seg, keep in ((a, la), (b, lb)):
    cut = len(seg) - keep
    front = int(rng.binomial(cut, 0.5)) if cut else 0
    out.append(seg[front:front + keep])
  return out[0], out[1]


def _random_other_document(n_docs: int, doc_index: int,
                           rng: np.random.Generator) -> int:
  # BERT retries randint up to 10 times to avoid the current document (and keeps
  # it on the 10th failure); drawing from the others directly never keeps it.
  r = int(rng.integers(0, n_docs - 1))
  return r + 1 if r >= doc_index else r


def _pair_example(a: np.ndarray, b: np.ndarray, label_key: str, label: int,
                  specials: SpecialIds) -> Example:
  cls = np.asarray([specials.cls], np.int32)
  sep = np.asarray([specials.sep], np.int32)
  ids = np.concatenate([cls, a, sep, b, sep])
  segment_ids = np.zeros_like(ids)
  segment_ids[len(a) + 2:] = 1  # B and its closing [SEP].
  return {'input_ids': ids, 'segment_ids': segment_ids,
          label_key: np.int32(label)}


def _pairs_from_document(docs: list[list[np.ndarray]], doc_index: int,
                         max_seq_length: int, specials: SpecialIds,
                         rng: np.random.Generator, task: str,
                         short_seq_prob: float,
                         sop_single_sentence: str) -> list[Example]:
  """create_instances_from_document, BERT's for 'nsp', ALBERT's for 'sop'."""
  document = docs[doc_index]
  max_num_tokens = max_seq_length - 3  # [CLS], [SEP], [SEP].
  # Mostly full-length examples; a few short ones so fine-tuning on short inputs
  # is not out of distribution. Drawn once per document, as in the reference.
  target_seq_length = max_num_tokens
  if rng.random() < short_seq_prob:
    target_seq_length = int(rng.integers(2, max_num_tokens + 1))
  label_key = 'next_sentence_label' if task == 'nsp' else 'sentence_order_label'

  examples = []
  chunk: list[np.ndarray] = []
  chunk_length = 0
  i = 0
  while i < len(document):
    chunk.append(document[i])
    chunk_length += len(document[i])
    if i == len(document) - 1 or chunk_length >= target_seq_length:
      a_end = 1
      if len(chunk) >= 2:
        a_end = int(rng.integers(1, len(chunk)))  # randint(1, len - 1).
      a = np.concatenate(chunk[:a_end])
      label = None
      if task == 'nsp':
        random_next = len(chunk) == 1 or rng.random() < 0.5
      else:
        random_next = (len(chunk) == 1
                       and sop_single_sentence == 'random_document')
      if random_next:
        # B: a run of sentences from another document, long enough to fill.
        target_b_length = target_seq_length - len(a)
        other = docs[_random_other_document(len(docs), doc_index, rng)]
        start = int(rng.integers(0, len(other)))
        b_parts, b_length = [], 0
        for sent in other[start:]:
          b_parts.append(sent)
          b_length += len(sent)
          if b_length >= target_b_length:
            break
        b = np.concatenate(b_parts)
        # The chunk's sentences after A were not used: put them back.
        i -= len(chunk) - a_end
        label = 1
      elif len(chunk) >= 2:
        b = np.concatenate(chunk[a_end:])
        label = 0
        if task == 'sop' and rng.random() < 0.5:
          a, b = b, a  # ALBERT: the same two segments in swapped order.
          label = 1
      if label is not None:  # None: a one-sentence SOP chunk under 'skip'.
        a, b = _truncate_pair(a, b, max_num_tokens, rng)
        examples.append(_pair_example(a, b, label_key, label, specials))
      chunk, chunk_length = [], 0
    i += 1
  return examples


def create_segment_pairs(docs: Corpus, max_seq_length: int,
                         specials: SpecialIds, rng: np.random.Generator, *,
                         task: str = 'nsp', short_seq_prob: float = 0.1,
                         sop_single_sentence: str = 'random_document'
                         ) -> list[Example]:
  """Two-segment examples `[CLS] A [SEP] B [SEP]`: NSP (BERT) or SOP (ALBERT).

  Follows google-research/bert `create_instances_from_document` per document, in
  corpus order. Sentences gather into a chunk until it reaches the target length
  (max_seq_length - 3, or with prob `short_seq_prob` a random length in
  [2, max_seq_length - 3], drawn once per document); A is the first
  randint(1, len(chunk) - 1) sentences of the chunk. Then:
  - 'nsp': with prob 0.5, or always for a one-sentence chunk, B is a run of
    sentences from another random document (`next_sentence_label` 1) and the
    chunk's unused sentences are put back; else B is the rest of the chunk
    (label 0). Label 1 = random next, BERT's convention.
  - 'sop': B is the rest of the chunk; with prob 0.5 A and B are swapped
    (`sentence_order_label` 1), else kept in order (0). A one-sentence chunk
    follows google-research/albert's code by default ('random_document'): B
    comes from another random document, labelled 1 like a swap, since in ALBERT
    both are `is_random_next`. 'skip' drops such chunks instead: pure
    sentence-order pairs as in the ALBERT paper.
  Finally the longer segment loses tokens from a random end until the pair fits.
  Call once per `dupe_factor` with different rngs, and shuffle the result, as
  the reference does.

  Args:
    docs: documents -> sentences -> 1-D integer token ids, no specials. At least
      two non-empty documents (B may come from another document).
    max_seq_length: the full example length L, specials included (>= 5).
    specials: the special token ids.
    rng: all randomness.
    task: 'nsp' or 'sop'.
    short_seq_prob: probability of a shorter target length per document.
    sop_single_sentence: 'random_document' (ALBERT code) or 'skip' (paper); only
      for 'sop'.

  Returns:
    Examples with `input_ids [<=L]`, `segment_ids [<=L]` (0 for [CLS] A [SEP],
    1 for B [SEP]) and an int32 scalar `next_sentence_label` ('nsp') or
    `sentence_order_label` ('sop').
  """
  if task not in ('nsp', 'sop'):
    raise UserError(f"task must be 'nsp' or 'sop', got {task!r}")
  if sop_single_sentence not in ('random_document', 'skip'):
    raise UserError("sop_single_sentence must be 'random_document' or 'skip', "
                    f'got {sop_single_sentence!r}')
  if not 0.0 <= short_seq_prob <= 1.0:
    raise UserError(f'short_seq_prob must be in [0, 1], got {short_seq_prob}')
  _check_length(max_seq_length, 5)  # Room for one token in A and one in B.
  docs = _clean_corpus(docs, specials)
  if len(docs) < 2:
    raise UserError('sentence-pair examples need at least two non-empty '
                    f'documents, got {len(docs)}')
  examples = []
  for doc_index in range(len(docs)):
    examples.extend(_pairs_from_document(
        docs, doc_index, max_seq_length, specials, rng, task, short_seq_prob,
        sop_single_sentence))
  return examples


# ---------------------------------------------------------------------------
# Padding.


def pad_example(example: Example, max_seq_length: int, pad_id: int) -> Example:
  """Pads one example to fixed size for batching.

  Args:
    example: `input_ids [n]` and `segment_ids [n]`, n <= max_seq_length, plus
      any labels (passed through untouched).
    max_seq_length: L.
    pad_id: id written into the padding.

  Returns:
    A new dict with `input_ids [L]` (pad_id after n), `segment_ids [L]` (0 after
    n), `attention_mask [L]` (int32, 1 = real token) and the other entries.
  """
  ids = np.asarray(example['input_ids'])
  n = len(ids)
  if n > max_seq_length:
    raise UserError(f'example of {n} tokens is longer than max_seq_length '
                    f'{max_seq_length}')
  out = dict(example)
  out['input_ids'] = np.full(max_seq_length, pad_id, np.int32)
  out['input_ids'][:n] = ids
  out['segment_ids'] = np.zeros(max_seq_length, np.int32)
  out['segment_ids'][:n] = example['segment_ids']
  out['attention_mask'] = np.zeros(max_seq_length, np.int32)
  out['attention_mask'][:n] = 1
  return out
