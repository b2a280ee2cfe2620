"""Tests for common/data/tokenizer.py: fixed specials, word starts, determinism, files."""

import io
import os

import ml_collections
import numpy as np
import pytest
import sentencepiece as spm

from common.data import corpus
from common.data import tokenizer as tok
from common.errors import UserError

VOCAB = 800


@pytest.fixture(scope='module')
def sentences(tmp_path_factory):
  """~4k sentences of the default corpus (a spread of documents, for speed)."""
  docs = corpus.default_corpus(str(tmp_path_factory.mktemp('cache')))
  return [s for doc in docs[::6] for s in doc]


@pytest.fixture(scope='module')
def tokenizer(sentences):
  return tok.Tokenizer.train(sentences, VOCAB)


def test_specials_and_exact_vocab(tokenizer):
  assert tokenizer.vocab_size == VOCAB
  assert [tokenizer.id_to_piece(i) for i in range(5)] == [
      '[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']
  assert (tokenizer.pad_id, tokenizer.unk_id, tokenizer.cls_id, tokenizer.sep_id,
          tokenizer.mask_id) == (0, 1, 2, 3, 4)
  assert tokenizer.special_ids.dtype == np.int32
  np.testing.assert_array_equal(tokenizer.special_ids, np.arange(5))


def test_encode_decode_roundtrip(tokenizer):
  text = 'Return the value of the named attribute of an object. Wörter, 你好!'
  ids = tokenizer.encode(text)
  assert ids.dtype == np.int32 and ids.ndim == 1
  assert not np.isin(ids, tokenizer.special_ids).any()  # Byte fallback: no UNK.
  assert tokenizer.decode(ids) == text
  padded = np.concatenate([ids, np.zeros(3, np.int32)])
  assert tokenizer.decode(padded) == text
  texts = ['One line.', '', text]
  batch = tokenizer.encode_batch(texts)
  assert [list(b) for b in batch] == [list(tokenizer.encode(t)) for t in texts]
  assert all(b.dtype == np.int32 for b in batch)


def test_literal_specials_in_text_are_plain_characters(tokenizer):
  ids = tokenizer.encode('a [MASK] b [CLS] [SEP] [PAD] [UNK]')
  assert not np.isin(ids, tokenizer.special_ids).any()
  # Real special ids decode to their names, padding disappears.
  word = list(tokenizer.encode('word'))
  assert tokenizer.decode([tok.CLS_ID] + word + [tok.MASK_ID, tok.SEP_ID, 0]) == (
      '[CLS] word [MASK] [SEP]')


def test_word_starts(tokenizer):
  pieces = [tokenizer.id_to_piece(i) for i in range(tokenizer.vocab_size)]
  expected = np.array([p.startswith('\u2581') for p in pieces])
  expected[:5] = True
  assert tokenizer.is_word_start.shape == (VOCAB,)
  np.testing.assert_array_equal(tokenizer.is_word_start, expected)
  # Every word starts with a word-start piece, including byte-fallback words.
  text = 'the quick 你好 brown fox'
  ids = tokenizer.encode(text)
  assert tokenizer.is_word_start[ids].sum() == len(text.split())
  assert tokenizer.is_word_start[ids[0]]


def test_random_token_ids_exclude_specials(tokenizer):
  ids = tokenizer.random_token_ids
  assert ids.dtype == np.int32
  np.testing.assert_array_equal(ids, np.arange(5, VOCAB))


def test_training_is_deterministic(sentences, tokenizer):
  again = tok.Tokenizer.train(iter(sentences), VOCAB)
  assert again.model_proto == tokenizer.model_proto


def test_bpe(sentences):
  bpe = tok.Tokenizer.train(sentences[:1000], 600, 'bpe')
  assert bpe.vocab_size == 600 and bpe.id_to_piece(4) == '[MASK]'


def test_save_load(tmp_path, tokenizer):
  path = str(tmp_path / 'sub' / 'tok.model')
  tokenizer.save(path)
  loaded = tok.Tokenizer.load(path)
  assert loaded.model_proto == tokenizer.model_proto
  assert loaded.model_path == path
  text = 'Some text to encode.'
  np.testing.assert_array_equal(loaded.encode(text), tokenizer.encode(text))
  assert os.listdir(tmp_path / 'sub') == ['tok.model']


def test_bad_files(tmp_path, sentences):
  with pytest.raises(UserError, match='missing.model'):
    tok.Tokenizer.load(str(tmp_path / 'missing.model'))
  junk = tmp_path / 'junk.model'
  junk.write_bytes(b'this is not a sentencepiece model')
  with pytest.raises(UserError, match='junk.model'):
    tok.Tokenizer.load(str(junk))
  # A valid sentencepiece model without our specials.
  writer = io.BytesIO()
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(sentences[:500]), model_writer=writer,
      vocab_size=300, minloglevel=2)
  foreign = tmp_path / 'foreign.model'
  foreign.write_bytes(writer.getvalue())
  with pytest.raises(UserError, match='foreign.model.*special'):
    tok.Tokenizer.load(str(foreign))


def test_training_errors(sentences):
  with pytest.raises(UserError, match='too small for vocab_size 5000'):
    tok.Tokenizer.train(sentences[:30], 5000)
  with pytest.raises(UserError, match='vocab_size 100 is too small'):
    tok.Tokenizer.train(sentences[:30], 100)
  with pytest.raises(UserError, match='no sentences'):
    tok.Tokenizer.train([], 500)
  with pytest.raises(UserError, match='model_type'):
    tok.Tokenizer.train(sentences, 500, 'wordpiece')


def test_get_tokenizer_trains_then_resumes(tmp_path, sentences, tokenizer):
  workdir = str(tmp_path / 'run')
  config = ml_collections.ConfigDict({'vocab_size': VOCAB})
  calls = []

  def sentences_fn():
    calls.append(1)
    return sentences

  first = tok.get_tokenizer(config, workdir, sentences_fn)
  assert first.model_proto == tokenizer.model_proto
  assert first.model_path == os.path.join(workdir, 'tokenizer.model')
  resumed = tok.get_tokenizer(config, workdir, sentences_fn)
  assert resumed.model_proto == first.model_proto and len(calls) == 1

  with pytest.raises(UserError, match=f'has vocab size {VOCAB} but the config '
                     'asks for 900'):
    tok.get_tokenizer(ml_collections.ConfigDict({'vocab_size': 900}), workdir,
                      sentences_fn)


def test_get_tokenizer_explicit_path(tmp_path, sentences, tokenizer):
  path = str(tmp_path / 'given.model')
  tokenizer.save(path)
  workdir = str(tmp_path / 'run')
  config = ml_collections.ConfigDict({'path': path})
  no_training = lambda: pytest.fail('should not train')
  assert tok.get_tokenizer(config, workdir, no_training).model_path == path
  # The workdir keeps a copy; a different tokenizer later is refused.
  assert os.path.exists(os.path.join(workdir, 'tokenizer.model'))
  other = tok.Tokenizer.train(sentences[:2000], 500)
  other.save(path)
  with pytest.raises(UserError, match='differs'):
    tok.get_tokenizer(config, workdir, no_training)
  with pytest.raises(UserError, match='vocab size 500 but the config asks for 8'):
    tok.get_tokenizer(ml_collections.ConfigDict({'path': path, 'vocab_size': 8}),
                      None, no_training)
  with pytest.raises(UserError, match='vocab_size must be set'):
    tok.get_tokenizer(ml_collections.ConfigDict(), None, no_training)
