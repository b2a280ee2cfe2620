"""Invariants of every masking strategy over many rows (common/data/mask_strategies.py).

Budget, units never split, span lengths, MacBERT never [MASK], ERNIE units whole,
specials and padding never masked, determinism; word units for sentencepiece and
WordPiece tables; span-boundary targets.
"""

import ml_collections
import numpy as np
import pytest

from common.data import mask_strategies
from common.data import masking
from common.data import phrases
from common.data import similar_words
from common.data import span_boundary
from common.data import word_units
from common.errors import UserError
from tests import conftest

PAD, UNK, CLS, SEP, MASK = 0, 1, 2, 3, 4
SPECIAL = np.asarray([PAD, UNK, CLS, SEP, MASK], np.int32)
VOCAB = 1000
RANDOM_IDS = np.arange(5, VOCAB, dtype=np.int32)
# Ids 5..599 start words, 600..999 continue them: words of 1, 2, 3... pieces.
IS_WORD_START = np.arange(VOCAB) < 600
IS_WORD_START[:5] = True
B, L, P = 600, 128, 20


def _rows(seed=0, batch=B, length=L):
  """[B, L] rows `[CLS] a [SEP] b [SEP] pad...` of random words."""
  rng = np.random.default_rng(seed)
  ids = np.full((batch, length), PAD, np.int32)
  for r in range(batch):
    n = int(rng.integers(20, length + 1))
    row = np.where(rng.random(n) < 0.6, rng.integers(5, 600, n),
                   rng.integers(600, VOCAB, n)).astype(np.int32)
    row[0], row[n - 1] = CLS, SEP
    row[int(rng.integers(5, n - 5))] = SEP
    ids[r, :n] = row
  return ids


ROWS = _rows()
N_TOKENS = (ROWS != PAD).sum(1)


def _config(strategy, **kw):
  cfg = dict(strategy=strategy, mask_prob=0.15, mask_token_prob=0.8,
             random_token_prob=0.1, max_predictions_per_seq=P, budget='',
             dynamic=True, dupe_factor=1)
  cfg.update(kw)
  return ml_collections.ConfigDict(cfg)


def _vocab(**kw):
  return mask_strategies.MaskingVocab(
      mask_id=MASK, pad_id=PAD, special_ids=SPECIAL, random_token_ids=RANDOM_IDS,
      is_word_start=IS_WORD_START, **kw)


def _mask_all(cfg, vocab=None, rows=ROWS, seed=0):
  vocab = vocab or _vocab()
  outs = [mask_strategies.mask_row(row, np.random.default_rng([seed, i]), cfg, vocab)
          for i, row in enumerate(rows)]
  return {k: np.stack([o[k] for o in outs]) for k in outs[0]}


def _selected(out, rows=ROWS):
  k = (out['masked_weights'] == 1).sum(1)
  sel = np.zeros(rows.shape, bool)
  for r in range(len(rows)):
    pos = out['masked_positions'][r, :k[r]]
    assert (np.diff(pos) > 0).all()
    np.testing.assert_array_equal(out['masked_ids'][r, :k[r]], rows[r, pos])
    sel[r, pos] = True
  assert not (sel & np.isin(rows, SPECIAL)).any()  # Never specials or padding.
  np.testing.assert_array_equal(out['input_ids'][~sel], rows[~sel])
  return k, sel


def _words_whole(rows, sel):
  """Every word is selected entirely or not at all."""
  for row, s in zip(rows, sel):
    for unit in word_units.word_units(row, SPECIAL, IS_WORD_START):
      assert s[unit].all() or not s[unit].any()


def test_word_units_sentencepiece_and_wordpiece():
  # sentencepiece: '▁' starts a word; a continuation after [SEP] starts its own unit.
  pieces = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', '▁new', 'er', '▁york', 's']
  table = np.array([p.startswith('▁') for p in pieces])
  table[:5] = True
  ids = np.array([CLS, 5, 6, 7, 8, SEP, 6, 7, SEP, PAD])
  units = word_units.word_units(ids, SPECIAL, table)
  assert [u.tolist() for u in units] == [[1, 2], [3, 4], [6], [7]]
  # WordPiece: '##' pieces continue the previous word.
  wp = conftest.wordpiece_word_starts(
      ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', 'un', '##aff', '##able', 'x'])
  ids = np.array([CLS, 5, 6, 7, 8, 5, SEP])
  units = word_units.word_units(ids, SPECIAL, wp)
  assert [u.tolist() for u in units] == [[1, 2, 3], [4], [5]]


@pytest.mark.parametrize('strategy', ['whole_word', 'ngram', 'macbert'])
def test_word_strategies_budget_and_whole_words(strategy):
  cfg = _config(strategy, ngram_max=3)
  vocab = _vocab(similar_words=similar_words.SimilarWords({}))
  out = _mask_all(cfg, vocab)
  k, sel = _selected(out)
  _words_whole(ROWS, sel)
  budget = np.minimum(P, np.maximum(1, np.round(0.15 * N_TOKENS)))
  assert (k <= budget).all()
  # Whole words rarely fit the budget exactly: within a word or two of it.
  assert k.sum() / budget.sum() > 0.95, k.sum() / budget.sum()


def test_ngram_lengths_follow_albert_distribution():
  rng = np.random.default_rng(0)
  probs = masking.ngram_probs('albert')
  np.testing.assert_allclose(probs, [6 / 11, 3 / 11, 2 / 11])
  np.testing.assert_allclose(masking.ngram_probs(None, 3), probs)
  counts = np.zeros(3)
  for row in _rows(seed=1, batch=300, length=512):
    units = word_units.word_units(row, SPECIAL, IS_WORD_START)
    groups = masking.select_ngrams(units, 10_000, rng, probs)  # No budget limit.
    for g in groups:
      assert (np.diff(np.concatenate([units[i] for i in g])) == 1).all()
    counts += np.bincount([len(g) for g in groups], minlength=4)[1:]
  # Long n-grams are blocked by covered units more often: a loose check of the shape.
  observed = counts / counts.sum()
  assert observed[0] > observed[1] > observed[2] > 0.05, observed


def test_span_budget_contiguous_and_geometric_lengths():
  cfg = _config('span', budget='spanbert', max_predictions_per_seq=L)
  out = _mask_all(cfg)
  k, sel = _selected(out)
  _words_whole(ROWS, sel)
  budget = np.ceil(0.15 * N_TOKENS - 1e-9)
  assert (k <= budget).all() and k.sum() / budget.sum() > 0.97
  # Span lengths (in words) follow Geo(0.2) clipped at 10 while the budget left
  # cannot cut a span short: one-piece words, spans drawn with >= 10 tokens left.
  rng = np.random.default_rng(0)
  probs = masking.span_length_probs(0.2, 10)
  lengths = []
  for row in _rows(seed=2, batch=300, length=512):
    row = np.where(row >= 600, row - 595, row)  # Only word-start pieces.
    units = word_units.word_units(row, SPECIAL, IS_WORD_START)
    budget = int(np.ceil(0.15 * (row != PAD).sum()))
    spans = masking.select_spans(units, budget, rng, probs)
    used = 0
    for s in spans:
      assert (np.diff(np.concatenate([units[i] for i in s])) == 1).all()
      if budget - used >= 10:
        lengths.append(len(s))
      used += len(s)
  hist = np.bincount(lengths, minlength=11)[1:]
  n = hist.sum()
  sigma = np.sqrt(n * probs * (1 - probs))
  assert (np.abs(hist - n * probs) < 4 * sigma + 2).all(), (hist, n * probs)
  assert abs(np.mean(lengths) - 3.8) < 0.15  # Paper: mean 3.8 words.


def test_span_replacement_decided_once_per_span():
  rng = np.random.default_rng(0)
  probs = masking.span_length_probs()
  n_mask = n_random = n_spans = 0
  for row in ROWS:
    units = word_units.word_units(row, SPECIAL, IS_WORD_START)
    groups = masking.group_positions(units, masking.select_spans(units, 20, rng, probs))
    out = masking.replace_groups(row, groups, rng, mask_id=MASK,
                                 random_token_ids=RANDOM_IDS)
    for g in groups:
      is_mask = out[g] == MASK
      assert is_mask.all() or not is_mask.any()
      n_mask += is_mask.all()
      n_random += (out[g] != row[g]).any() and not is_mask.any()
      n_spans += 1
  assert abs(n_mask / n_spans - 0.8) < 0.03
  assert abs(n_random / n_spans - 0.1) < 0.03


def test_macbert_never_masks_and_uses_the_table():
  # Table: every 1-piece word 5..99 -> the word id + 100; longer words: none.
  table = similar_words.SimilarWords({(i,): ((i + 100,),) for i in range(5, 100)})
  out = _mask_all(_config('macbert', ngram_probs='macbert', mask_token_prob=0.0),
                  _vocab(similar_words=table))
  _, sel = _selected(out)
  new, old = out['input_ids'], ROWS
  assert not (new == MASK).any()
  assert not np.isin(new[~np.isin(ROWS, SPECIAL)], SPECIAL).any()
  in_table = sel & (old >= 5) & (old < 100) & np.isin(np.roll(ROWS, -1, 1),
                                                     np.arange(5, 600))
  changed = in_table & (new != old)
  # A table word, when changed, became its neighbour (80%) or a random id (10%).
  similar = changed & (new == old + 100)
  assert similar.sum() / in_table.sum() > 0.7
  assert ((new[changed] == old[changed] + 100) | np.isin(new[changed], RANDOM_IDS)).all()


def test_macbert_replace_words_fallback_and_split():
  rng = np.random.default_rng(0)
  ids = np.arange(5, 65, dtype=np.int32)
  words = [np.array([i]) for i in range(60)]
  counts = dict(similar=0, random=0, fallback=0, kept=0)
  for _ in range(100):
    _, stats = similar_words.replace_words(ids, words, rng, similar_words.SimilarWords({}),
                                           random_token_ids=RANDOM_IDS)
    for key in counts:
      counts[key] += stats[key]
  n = sum(counts.values())
  assert counts['similar'] == 0  # No table: the similar case falls back to random.
  assert abs(counts['fallback'] / n - 0.8) < 0.02
  assert abs(counts['random'] / n - 0.1) < 0.02


def test_similar_word_table_from_corpus_and_file(tmp_path):
  # Two families of interchangeable words in the same contexts: 10/11, 20/21.
  rng = np.random.default_rng(0)
  docs = [[np.array([5, rng.choice([10, 11]), 6, 7]),
           np.array([8, rng.choice([20, 21]), 9, 7])] for _ in range(200)]
  start = np.ones(50, bool)
  table = similar_words.build(docs, start, seed=0, min_count=5, dim=4, k=1)
  assert table.lookup((10,)) == ((11,),) and table.lookup((20,)) == ((21,),)
  assert similar_words.build(docs, start, seed=0, min_count=5, dim=4, k=1) == table
  assert similar_words.SimilarWords.from_json(table.to_json(50), 50, 'x') == table
  path = tmp_path / 'similar.tsv'
  path.write_text('big\tlarge huge\nodd\n'[:-5] + '\n', encoding='utf-8')
  encode = {'big': [10], 'large': [11], 'huge': [12, 13]}
  loaded = similar_words.load_text(str(path), lambda w: np.array(encode[w]))
  assert loaded.lookup((10,)) == ((11,),)  # 'huge' has 2 pieces: dropped.
  path.write_text('no tab here\n')
  with pytest.raises(UserError, match='expected'):
    similar_words.load_text(str(path), lambda w: np.array([5]))


def test_ernie_phrases_and_entities_masked_whole():
  # Phrase: words (5, 600) (6): pieces 5 600 6; capitalised ids: 7, 8.
  lexicon = phrases.PhraseLexicon.from_phrases([(5, 600, 6)], IS_WORD_START)
  assert lexicon.max_words == 2
  capital = np.zeros(VOCAB, bool)
  capital[[7, 8]] = True
  row = np.array([CLS, 9, 5, 600, 6, 7, 8, 601, 9, SEP, 7, 9, SEP, PAD], np.int32)
  units = phrases.knowledge_units(row, SPECIAL, IS_WORD_START, capital, lexicon)
  assert [u.tolist() for u in units] == [[1], [2, 3, 4], [5, 6, 7], [8], [10], [11]]
  # Many rows with planted phrases: units whole, ~15% of candidates selected.
  rows = ROWS.copy()
  for r in range(len(rows)):
    rows[r, 3:11] = (5, 600, 6, 9, 9, 7, 8, 9)  # Phrase, entity, each then a word.
  vocab = _vocab(is_capitalised=capital, phrase_lexicon=lexicon)
  out = _mask_all(_config('ernie', ernie_knowledge_prob=1.0, max_predictions_per_seq=L),
                  vocab, rows)
  _, sel = _selected(out, rows)
  for r, row in enumerate(rows):
    for unit in phrases.knowledge_units(row, SPECIAL, IS_WORD_START, capital, lexicon):
      assert sel[r, unit].all() or not sel[r, unit].any()
  phrase_hit = sel[:, 3]
  assert (sel[phrase_hit, 4:6]).all() and (sel[sel[:, 8], 9]).all()
  assert abs(phrase_hit.mean() - 0.15) < 0.05
  candidates = ~np.isin(rows, SPECIAL)
  assert abs(sel.sum() / candidates.sum() - 0.15) < 0.02
  # Mixed per input: token-level rows split words.
  out = _mask_all(_config('ernie', ernie_knowledge_prob=0.0, max_predictions_per_seq=L),
                  vocab, rows)
  _, sel = _selected(out, rows)
  assert (sel[:, 3] != sel[:, 4]).any()


def test_ernie_lexicon_from_corpus_and_file(tmp_path):
  docs = [[np.array([5, 600, 6, 7, 9]), np.array([8, 5, 600, 6, 11])]
          for _ in range(20)] + [[np.array([i, 12, 13])] for i in range(20, 200)]
  lexicon = phrases.build(docs, IS_WORD_START, min_count=5, min_pmi=1.0)
  assert (5, 600, 6) in lexicon.phrases
  # Pairs seen fewer than min_count times are never phrases.
  assert not any(20 <= p[0] < 200 for p in lexicon.phrases)
  # A second pass joins phrases found by the first: (5 600, 6) + (7, 9), 4 words.
  assert (5, 600, 6, 7, 9) in lexicon.phrases
  one_pass = phrases.build(docs, IS_WORD_START, min_count=5, min_pmi=1.0, passes=1)
  assert max(len(p) for p in one_pass.phrases) == 3  # 2 words: (5, 600) is one word
  assert lexicon.max_words <= 4
  path = tmp_path / 'lexicon.txt'
  path.write_text('new york\n\n')
  loaded = phrases.load_text(str(path), lambda t: np.array([20, 21]), IS_WORD_START)
  assert loaded.phrases == {(20, 21)} and loaded.max_words == 2


@pytest.mark.parametrize('strategy', mask_strategies.STRATEGIES[1:])
def test_deterministic_and_cap(strategy):
  cfg = _config(strategy, max_predictions_per_seq=4)
  vocab = _vocab(is_capitalised=np.zeros(VOCAB, bool),
                 similar_words=similar_words.SimilarWords({}))
  a = _mask_all(cfg, vocab, ROWS[:50], seed=3)
  b = _mask_all(cfg, vocab, ROWS[:50], seed=3)
  for key in a:
    np.testing.assert_array_equal(a[key], b[key])
  assert (a['masked_weights'].sum(1) <= 4).all()


def test_unknown_strategy_is_a_user_error():
  with pytest.raises(UserError, match='masking.strategy'):
    mask_strategies.mask_row(ROWS[0], np.random.default_rng(0), _config('spans'),
                             _vocab())


def test_boundary_targets():
  positions = np.array([3, 4, 5, 9, 12, 13, 0, 0])
  weights = np.array([1, 1, 1, 1, 1, 1, 0, 0], np.float32)
  out = span_boundary.boundary_targets(positions, weights, 14)
  np.testing.assert_array_equal(out['masked_span_left'], [2, 2, 2, 8, 11, 11, 0, 0])
  np.testing.assert_array_equal(out['masked_span_right'], [6, 6, 6, 10, 13, 13, 0, 0])
  np.testing.assert_array_equal(out['masked_span_offsets'], [0, 1, 2, 0, 0, 1, 0, 0])
