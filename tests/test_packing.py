"""Invariants of common/data/packing.py: nothing lost or crossed, honest labels.

The test corpus numbers its tokens consecutively from FIRST_ID across the whole
corpus, so a token id alone says which document, sentence and position it came
from, and "B follows A" is a comparison of ids.
"""

import numpy as np
import pytest

from common.data import packing
from common.errors import UserError

SPECIALS = packing.SpecialIds(pad=0, cls=2, sep=3, mask=4)
FIRST_ID = 10


class Corpus:
  """A synthetic corpus with a lookup from token id to its origin."""

  def __init__(self, seed, n_docs, max_sentences, min_len, max_len,
               long_every=0, long_len=0):
    rng = np.random.default_rng(seed)
    self.docs = []
    doc_of, sentence_start, sentence_end = [], [], []
    next_id = FIRST_ID
    for d in range(n_docs):
      doc = []
      for s in range(int(rng.integers(1, max_sentences + 1))):
        n = int(rng.integers(min_len, max_len + 1))
        if long_every and (d * 7 + s) % long_every == 0:
          n = long_len
        doc.append(np.arange(next_id, next_id + n, dtype=np.int32))
        doc_of += [d] * n
        sentence_start += [next_id] * n
        sentence_end += [next_id + n - 1] * n
        next_id += n
      self.docs.append(doc)
    self.end_id = next_id
    pad = [-1] * FIRST_ID  # Lookups are indexed by token id.
    self.doc_of = np.asarray(pad + doc_of)
    self.sentence_start = np.asarray(pad + sentence_start)
    self.sentence_end = np.asarray(pad + sentence_end)

  def is_sentence_start(self, t):
    return self.sentence_start[t] == t


def _content(example):
  ids = example['input_ids']
  assert ids[0] == SPECIALS.cls and ids[-1] == SPECIALS.sep
  return ids[1:-1]


# ---------------------------------------------------------------------------
# FULL-SENTENCES and DOC-SENTENCES.


@pytest.fixture(scope='module')
def corpus():
  # Budget 62 with some 150-token sentences: chunks of 62, 62, 26.
  return Corpus(seed=0, n_docs=80, max_sentences=8, min_len=1, max_len=30,
                long_every=11, long_len=150)


@pytest.mark.parametrize('max_len', [64, 7])
def test_full_sentences_reproduce_the_stream(corpus, max_len):
  examples = packing.pack_full_sentences(corpus.docs, max_len, SPECIALS)
  budget = max_len - 2
  sep = SPECIALS.sep
  contents = []
  for ex in examples:
    assert ex['input_ids'].dtype == np.int32
    assert len(ex['input_ids']) <= max_len
    np.testing.assert_array_equal(ex['segment_ids'], 0)
    c = _content(ex)
    assert len(c) > 0 and c[0] != sep and c[-1] != sep
    assert not np.isin(c, [SPECIALS.cls, SPECIALS.pad, SPECIALS.mask]).any()
    contents.append(c)
  tokens = np.concatenate(contents)
  # Nothing lost or duplicated: without separators it is the corpus, in order.
  np.testing.assert_array_equal(tokens[tokens != sep],
                                np.arange(FIRST_ID, corpus.end_id))
  # Within an example, a [SEP] sits exactly where one document ends and the next
  # begins, and nowhere else.
  n_separators = 0
  for c in contents:
    for left, right in zip(c[:-1], c[1:]):
      assert not (left == sep and right == sep)
      if right == sep:
        continue
      if left == sep:
        n_separators += 1
        continue
      assert right == left + 1
      assert corpus.doc_of[left] == corpus.doc_of[right], 'doc crossed, no SEP'
    separator_at = np.flatnonzero(c == sep)
    for k in separator_at:
      assert corpus.doc_of[c[k + 1]] == corpus.doc_of[c[k - 1]] + 1
  # Every document boundary is either inside an example (with a separator) or
  # between two examples (without one).
  at_edges = sum(corpus.doc_of[a[-1]] != corpus.doc_of[b[0]]
                 for a, b in zip(contents[:-1], contents[1:]))
  assert n_separators > 0
  assert n_separators + at_edges == len(corpus.docs) - 1
  # Examples start at a sentence start or a budget-sized chunk of one, and
  # are full: the next example's first piece would not have fitted.
  for a, b in zip(contents[:-1], contents[1:]):
    start = corpus.sentence_start[b[0]]
    assert (b[0] - start) % budget == 0
    piece = min(budget, corpus.sentence_end[b[0]] - b[0] + 1)
    separator = int(corpus.doc_of[a[-1]] != corpus.doc_of[b[0]])
    assert len(a) + separator + piece > budget


def test_full_sentences_packs_across_documents(corpus):
  examples = packing.pack_full_sentences(corpus.docs, 64, SPECIALS)
  contents = [_content(ex) for ex in examples]
  multi_doc = [c for c in contents
               if len(set(corpus.doc_of[c[c != SPECIALS.sep]])) > 1]
  assert multi_doc
  # Denser than DOC-SENTENCES, which pads out every document's last example.
  assert len(examples) < len(
      packing.pack_doc_sentences(corpus.docs, 64, SPECIALS))


def test_doc_sentences_never_cross_documents(corpus):
  examples = packing.pack_doc_sentences(corpus.docs, 64, SPECIALS)
  contents = [_content(ex) for ex in examples]
  for c in contents:
    assert len(c) <= 62
    assert SPECIALS.sep not in c
    assert len(set(corpus.doc_of[c])) == 1
    np.testing.assert_array_equal(np.diff(c), 1)
  np.testing.assert_array_equal(np.concatenate(contents),
                                np.arange(FIRST_ID, corpus.end_id))
  # A new document always starts a new example.
  for a, b in zip(contents[:-1], contents[1:]):
    if corpus.doc_of[a[-1]] == corpus.doc_of[b[0]]:
      piece = min(62, corpus.sentence_end[b[0]] - b[0] + 1)
      assert len(a) + piece > 62
    else:
      assert corpus.doc_of[b[0]] == corpus.doc_of[a[-1]] + 1


def test_packing_is_deterministic(corpus):
  a = packing.pack_full_sentences(corpus.docs, 64, SPECIALS)
  b = packing.pack_full_sentences(corpus.docs, 64, SPECIALS)
  assert len(a) == len(b)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x['input_ids'], y['input_ids'])


# ---------------------------------------------------------------------------
# ELECTRA's sentence segments.


def _segments(example):
  """(A, B) contents of a one- or two-segment example; B empty for one segment."""
  ids, seg = example['input_ids'], example['segment_ids']
  assert ids[0] == SPECIALS.cls and ids[-1] == SPECIALS.sep
  a_end = int(np.argmax(ids[1:] == SPECIALS.sep)) + 1
  a, b = ids[1:a_end], ids[a_end + 1:-1]
  assert (seg[:a_end + 1] == 0).all() and (seg[a_end + 1:] == 1).all()
  assert SPECIALS.sep not in a and SPECIALS.sep not in b
  return a, b


def test_sentence_segments_follow_electra_example_builder(corpus):
  rng = np.random.default_rng(0)
  examples = packing.pack_sentence_segments(corpus.docs, 64, SPECIALS, rng)
  single, lengths = 0, []
  previous_end = FIRST_ID - 1
  for ex in examples:
    assert len(ex['input_ids']) <= 64 and 'next_sentence_label' not in ex
    a, b = _segments(ex)
    content = np.concatenate([a, b])
    # One document, in order, each token once; A starts at a sentence. (A short
    # sentence after one that went to B may still join A, as in the reference.)
    assert len(set(corpus.doc_of[content])) == 1
    assert corpus.is_sentence_start(a[0]) and a[0] > previous_end
    assert (np.diff(a) > 0).all() and (np.diff(b) > 0).all()
    assert len(np.unique(content)) == len(content)
    if len(b):
      assert corpus.is_sentence_start(b[0]) and b[0] > a[0]
    single += not len(b)
    lengths.append(len(ex['input_ids']))
    previous_end = content.max()
  # 10% single-segment by design, more where a chunk holds one sentence.
  assert 0.1 <= single / len(examples) < 0.5
  # Most examples fill the length; some are cut short by a document's end.
  assert np.mean(np.asarray(lengths) >= 60) > 0.3


def test_sentence_segments_keep_tokens_but_the_trimmed(corpus):
  """Without trimming (sentences shorter than L), every token is used once."""
  small = Corpus(seed=3, n_docs=40, max_sentences=6, min_len=1, max_len=8)
  examples = packing.pack_sentence_segments(small.docs, 64, SPECIALS,
                                            np.random.default_rng(1))
  content = np.concatenate([np.concatenate(_segments(ex)) for ex in examples])
  np.testing.assert_array_equal(np.sort(content), np.arange(FIRST_ID, small.end_id))


def test_sentence_segments_are_seeded(corpus):
  a, b, c = (packing.pack_sentence_segments(corpus.docs, 64, SPECIALS,
                                            np.random.default_rng(seed))
             for seed in (5, 5, 6))
  assert all(np.array_equal(x['input_ids'], y['input_ids']) for x, y in zip(a, b))
  assert len(a) != len(c) or any(not np.array_equal(x['segment_ids'], y['segment_ids'])
                                 for x, y in zip(a, c))
  with pytest.raises(UserError, match='single_segment_prob'):
    packing.pack_sentence_segments(corpus.docs, 64, SPECIALS,
                                   np.random.default_rng(0), single_segment_prob=2.0)


# ---------------------------------------------------------------------------
# Segment pairs (NSP, SOP).

PAIR_LEN = 128


# Short sentences with a few long ones, so that truncation happens.
_PAIR_CORPUS = Corpus(seed=1, n_docs=150, max_sentences=60, min_len=4,
                      max_len=16, long_every=40, long_len=200)
# Only short sentences: with short_seq_prob=0 (target = max_num_tokens) a chunk
# then has one sentence only if it is the last sentence of its document, so A
# is exactly that sentence: one-sentence chunks are recognisable from outside.
_SHORT_CORPUS = Corpus(seed=2, n_docs=150, max_sentences=60, min_len=4,
                       max_len=16)


def _split_pair(ex, corpus=_PAIR_CORPUS):
  ids, seg = ex['input_ids'], ex['segment_ids']
  assert len(ids) <= PAIR_LEN
  assert ids.dtype == np.int32 and seg.dtype == np.int32
  sep_at = np.flatnonzero(ids == SPECIALS.sep)
  assert len(sep_at) == 2 and sep_at[1] == len(ids) - 1
  assert ids[0] == SPECIALS.cls and SPECIALS.cls not in ids[1:]
  expected = np.zeros(len(ids), np.int32)
  expected[sep_at[0] + 1:] = 1
  np.testing.assert_array_equal(seg, expected)
  a, b = ids[1:sep_at[0]], ids[sep_at[0] + 1:-1]
  assert len(a) >= 1 and len(b) >= 1
  # Each segment is a contiguous run of one document.
  for s in (a, b):
    np.testing.assert_array_equal(np.diff(s), 1)
    assert len(set(corpus.doc_of[s])) == 1
  return a, b


def _assert_in_order(corpus, first, second, truncated):
  """`second` is the segment right after `first` in one document."""
  assert corpus.doc_of[first[0]] == corpus.doc_of[second[0]]
  assert second[0] > first[-1]
  # Before truncation they met at a sentence boundary between them.
  boundary = [t for t in range(first[-1] + 1, second[0] + 1)
              if corpus.is_sentence_start(t)]
  assert boundary
  if not truncated:
    assert second[0] == first[-1] + 1


def _pairs(task, seed, corpus=_PAIR_CORPUS, **kw):
  return packing.create_segment_pairs(
      corpus.docs, PAIR_LEN, SPECIALS, np.random.default_rng(seed),
      task=task, **kw)


def _is_last_sentence(corpus, a):
  doc = corpus.docs[corpus.doc_of[a[0]]]
  return len(a) == len(doc[-1]) and a[0] == doc[-1][0]


def _within(count, n, p=0.5, sigmas=4.0):
  return abs(count - n * p) <= sigmas * np.sqrt(n * p * (1 - p))


def test_nsp_pairs():
  corpus = _PAIR_CORPUS
  examples = _pairs('nsp', 0) + _pairs('nsp', 1)
  labels = np.asarray([ex['next_sentence_label'] for ex in examples])
  assert labels.dtype == np.int32
  assert len(examples) > 1000
  truncated_front = 0
  for ex, label in zip(examples, labels):
    a, b = _split_pair(ex)
    truncated = len(a) + len(b) == PAIR_LEN - 3
    if label == 0:
      _assert_in_order(corpus, a, b, truncated)
    else:
      assert corpus.doc_of[a[0]] != corpus.doc_of[b[0]]
    truncated_front += not corpus.is_sentence_start(a[0])
  # Truncation takes from the front too, not only the back.
  assert truncated_front > 0


@pytest.mark.parametrize('task', ['nsp', 'sop'])
def test_label_balance(task):
  corpus = _SHORT_CORPUS
  examples = [ex for seed in range(3)
              for ex in _pairs(task, seed, corpus, short_seq_prob=0.0)]
  key = 'next_sentence_label' if task == 'nsp' else 'sentence_order_label'
  single, labels = 0, []
  for ex in examples:
    a, b = _split_pair(ex, corpus)
    other_doc = corpus.doc_of[b[0]] != corpus.doc_of[a[0]]
    # NSP: A is never a chunk's last sentence unless the chunk has one. SOP: a
    # swapped A may be, but only a one-sentence chunk looks elsewhere for B.
    if _is_last_sentence(corpus, a) if task == 'nsp' else other_doc:
      # A one-sentence chunk: B from another document, labelled 1 (BERT's
      # rule for NSP, ALBERT's quirk for SOP).
      single += 1
      assert other_doc and _is_last_sentence(corpus, a)
      assert ex[key] == 1
    else:
      labels.append(ex[key])
  assert single > 0 and len(labels) > 1000
  # Every other chunk is a fair coin.
  assert _within(np.sum(labels), len(labels))


def test_nsp_puts_unused_sentences_back():
  # Every sentence reaches some example as part of its own document's A or
  # in-order B, since a random B's chunk leftovers start the next chunk; only
  # truncation loses a few. (Without the put-back about 20% would be lost.)
  corpus = _SHORT_CORPUS
  covered = np.zeros(corpus.end_id, bool)
  for ex in _pairs('nsp', 0, corpus, short_seq_prob=0.0):
    a, b = _split_pair(ex, corpus)
    covered[a] = True
    if ex['next_sentence_label'] == 0:
      covered[b] = True
  starts = np.asarray([s[0] for doc in corpus.docs for s in doc])
  hit = np.add.reduceat(covered.astype(int), starts)
  assert (hit == 0).mean() < 0.02


def test_sop_pairs_paper_mode():
  corpus = _PAIR_CORPUS
  examples = (_pairs('sop', 0, sop_single_sentence='skip')
              + _pairs('sop', 1, sop_single_sentence='skip'))
  labels = np.asarray([ex['sentence_order_label'] for ex in examples])
  assert 'next_sentence_label' not in examples[0]
  assert len(examples) > 1000
  assert _within(labels.sum(), len(labels))
  for ex, label in zip(examples, labels):
    a, b = _split_pair(ex)
    truncated = len(a) + len(b) == PAIR_LEN - 3
    if label == 0:
      _assert_in_order(corpus, a, b, truncated)
    else:  # Swapped: B precedes A in the document.
      _assert_in_order(corpus, b, a, truncated)


def test_sop_one_sentence_chunk_takes_a_random_document():
  corpus = _PAIR_CORPUS
  examples = _pairs('sop', 0)
  other_doc = 0
  for ex in examples:
    a, b = _split_pair(ex)
    truncated = len(a) + len(b) == PAIR_LEN - 3
    if corpus.doc_of[a[0]] != corpus.doc_of[b[0]]:
      other_doc += 1
      assert ex['sentence_order_label'] == 1  # ALBERT: is_random_next.
    elif ex['sentence_order_label'] == 0:
      _assert_in_order(corpus, a, b, truncated)
    else:
      _assert_in_order(corpus, b, a, truncated)
  assert other_doc > 0  # This corpus has some one-sentence chunks.
  # Same seed, the quirk only adds examples: 'skip' keeps the others.
  assert len(_pairs('sop', 0, sop_single_sentence='skip')) < len(examples)


def test_short_seq_prob_gives_short_examples():
  full = _pairs('nsp', 0, short_seq_prob=0.0)
  short = _pairs('nsp', 0, short_seq_prob=1.0)
  mean = lambda exs: np.mean([len(ex['input_ids']) for ex in exs])
  assert mean(short) < 0.75 * mean(full)


@pytest.mark.parametrize('task', ['nsp', 'sop'])
def test_pairs_are_deterministic(task):
  a, b, c = _pairs(task, 5), _pairs(task, 5), _pairs(task, 6)
  assert len(a) == len(b)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x['input_ids'], y['input_ids'])
    np.testing.assert_array_equal(x['segment_ids'], y['segment_ids'])
  same = len(a) == len(c) and all(
      np.array_equal(x['input_ids'], y['input_ids']) for x, y in zip(a, c))
  assert not same


# ---------------------------------------------------------------------------
# Padding and bad input.


def test_pad_example():
  ex = _pairs('nsp', 0)[0]
  n = len(ex['input_ids'])
  padded = packing.pad_example(ex, 160, SPECIALS.pad)
  for key in ('input_ids', 'segment_ids', 'attention_mask'):
    assert padded[key].shape == (160,) and padded[key].dtype == np.int32
  np.testing.assert_array_equal(padded['input_ids'][:n], ex['input_ids'])
  np.testing.assert_array_equal(padded['input_ids'][n:], SPECIALS.pad)
  np.testing.assert_array_equal(padded['segment_ids'][:n], ex['segment_ids'])
  np.testing.assert_array_equal(padded['segment_ids'][n:], 0)
  np.testing.assert_array_equal(padded['attention_mask'],
                                np.arange(160) < n)
  assert padded['next_sentence_label'] == ex['next_sentence_label']
  assert len(ex['input_ids']) == n  # The input is not modified.
  with pytest.raises(UserError, match='longer than max_seq_length'):
    packing.pad_example(ex, n - 1, SPECIALS.pad)


def test_bad_input_is_a_user_error():
  docs = _PAIR_CORPUS.docs
  rng = np.random.default_rng(0)
  with pytest.raises(UserError, match='empty'):
    packing.pack_full_sentences([[], [np.zeros(0, np.int32)]], 64, SPECIALS)
  with pytest.raises(UserError, match='special token'):
    packing.pack_full_sentences([[np.array([11, 3, 12])]], 64, SPECIALS)
  with pytest.raises(UserError, match='1-D'):
    packing.pack_doc_sentences([[np.ones((2, 2), np.int32) * 11]], 64, SPECIALS)
  with pytest.raises(UserError, match='max_seq_length'):
    packing.pack_full_sentences(docs, 2, SPECIALS)
  with pytest.raises(UserError, match='max_seq_length'):
    packing.create_segment_pairs(docs, 4, SPECIALS, rng)
  with pytest.raises(UserError, match='two non-empty documents'):
    packing.create_segment_pairs(docs[:1] + [[]], 64, SPECIALS, rng)
  with pytest.raises(UserError, match='task'):
    packing.create_segment_pairs(docs, 64, SPECIALS, rng, task='mlm')
