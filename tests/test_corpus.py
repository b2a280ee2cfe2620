"""Tests for common/data/corpus.py: the default corpus, file/JSONL/TFDS readers, splits."""

import gzip
import json
import os
import sys

import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from common.data import corpus
from common.errors import UserError

tfds.disable_progress_bar()


# ---------------------------------------------------------------- TFDS test dataset


class _TinyText(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """A text dataset prepared from in-memory splits, without TensorFlow.

  GeneratorBasedBuilder writes array_record shards, dataset_info.json and
  features.json through TFDS' own writer and serializer, which need no TensorFlow
  when file_format='array_record'. Not registered: readers find it from the files.
  """

  name = 'bert_family_tiny_text'
  VERSION = tfds.core.Version('1.0.0')

  def __init__(self, *, splits: dict[str, list[str]], text_field: str, **kwargs):
    self._splits = splits
    self._text_field = text_field
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        features=tfds.features.FeaturesDict({
            self._text_field: tfds.features.Text(),
            'id': tfds.features.Scalar(dtype=np.int64),
        }))

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    return {name: self._generate_examples(texts)
            for name, texts in self._splits.items()}

  def _generate_examples(self, texts):
    for i, text in enumerate(texts):
      yield i, {self._text_field: text, 'id': i}


def write_tiny_tfds(data_dir: str, splits: dict[str, list[str]],
                    text_field: str = 'text') -> str:
  """Prepares `bert_family_tiny_text` under data_dir; returns its version dir."""
  builder = _TinyText(splits=splits, text_field=text_field, data_dir=data_dir,
                      file_format='array_record')
  builder.download_and_prepare()
  return builder.data_dir


# ------------------------------------------------------------------------- helpers


def _config(**fields) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(fields)


def _write(path, text: str) -> str:
  path.write_text(text, encoding='utf-8')
  return str(path)


# -------------------------------------------------------------------- splitting


def test_split_sentences():
  text = ('First (sentence here.) Second one,\nwrapped over lines! "Quoted" start?\n'
          '3 starts with a digit.\n\nNew paragraph e.g. lower case stays.\n'
          '*****\n\n>>> x = 1\n>>> x + 1\n2\n')
  assert corpus.split_sentences(text) == [
      'First (sentence here.)', 'Second one, wrapped over lines!',
      '"Quoted" start?', '3 starts with a digit.',
      'New paragraph e.g. lower case stays.',
      '>>> x = 1', '>>> x + 1', '2']
  assert corpus.split_sentences('  \n\n ') == []


# ---------------------------------------------------------------- default corpus


@pytest.fixture(scope='module')
def built(tmp_path_factory):
  """Two independent builds: one direct, one through an empty cache."""
  cache_dir = str(tmp_path_factory.mktemp('cache'))
  first = corpus.build_default_corpus()
  second = corpus.default_corpus(cache_dir)
  return first, second, cache_dir


def test_default_corpus_is_substantial_and_deterministic(built):
  first, second, _ = built
  assert first == second
  assert len(first) > 300  # One document per module plus the pydoc topics.
  assert sorted(map(len, first))[len(first) // 2] >= 10  # Article-sized documents.
  n_sentences = sum(map(len, first))
  n_chars = sum(len(s) for doc in first for s in doc)
  assert n_sentences > 10_000 and n_chars > 1_000_000
  assert all(doc and all(isinstance(s, str) and s.strip() == s and s
                         for s in doc) for doc in first)
  text = '\n'.join(' '.join(doc) for doc in first)
  assert 'nonlocal_stmt' in text  # A pydoc topic.
  assert 'is a subset of JavaScript syntax' in text  # json's docstring.
  # Built from source: modules with import side effects were not imported.
  assert 'antigravity' not in sys.modules and 'this' not in sys.modules


def test_default_corpus_cache_hit_and_corrupt_rebuild(built, monkeypatch):
  first, _, cache_dir = built
  (name,) = os.listdir(cache_dir)
  assert name.startswith('default_corpus-py') and name.endswith('.json.gz')
  path = os.path.join(cache_dir, name)

  def fail():
    raise AssertionError('rebuilt although the cache is valid')

  monkeypatch.setattr(corpus, 'build_default_corpus', fail)
  assert corpus.default_corpus(cache_dir) == first

  # A corrupt cache is rebuilt (from a stub here, to stay fast) and rewritten.
  with open(path, 'wb') as f:
    f.write(b'not gzip')
  monkeypatch.setattr(corpus, 'build_default_corpus', lambda: [['A. B.']])
  assert corpus.default_corpus(cache_dir) == [['A. B.']]
  with gzip.open(path, 'rt', encoding='utf-8') as f:
    assert json.load(f)['documents'] == [['A. B.']]
  assert os.listdir(cache_dir) == [name]  # No temp files left behind.


def test_default_corpus_cache_dir_from_environment(tmp_path, monkeypatch):
  monkeypatch.setenv('BERT_FAMILY_CACHE', str(tmp_path))
  monkeypatch.setattr(corpus, 'build_default_corpus', lambda: [['One. Two.']])
  assert corpus.default_corpus() == [['One. Two.']]
  assert len(os.listdir(tmp_path)) == 1


# -------------------------------------------------------------------- text files


def test_read_text_files_blocks_and_files(tmp_path):
  a = _write(tmp_path / 'a.txt', 'One. Two.\n\nThree here.\n')
  _write(tmp_path / 'b.txt', 'Four.\nStill four. Five!\n')
  assert corpus.read_text_files([a]) == [['One.', 'Two.'], ['Three here.']]
  assert corpus.read_text_files(str(tmp_path / '*.txt'), 'file') == [
      ['One.', 'Two.', 'Three here.'], ['Four.', 'Still four.', 'Five!']]


@pytest.mark.parametrize('setup, message', [
    (lambda d: str(d / 'missing.txt'), 'missing.txt'),
    (lambda d: str(d / 'none*.txt'), 'no files match'),
    (lambda d: str(d), 'is a directory'),
    (lambda d: (d / 'bad.txt').write_bytes(b'\xff\xfe\xfa') and str(d / 'bad.txt'),
     'bad.txt'),
])
def test_read_text_files_bad_input(tmp_path, setup, message):
  with pytest.raises(UserError, match=message):
    corpus.read_text_files([setup(tmp_path)])


def test_read_text_files_unknown_mode(tmp_path):
  with pytest.raises(UserError, match='document_per'):
    corpus.read_text_files([_write(tmp_path / 'a.txt', 'A.')], 'line')


# ------------------------------------------------------------------------- JSONL


def test_read_jsonl(tmp_path):
  path = _write(tmp_path / 'a.jsonl',
                '{"body": "First doc. Second sentence."}\n\n'
                '{"body": ""}\n{"body": "Third."}\n')
  assert corpus.read_jsonl([path], 'body') == [
      ['First doc.', 'Second sentence.'], ['Third.']]


@pytest.mark.parametrize('content, message', [
    ('{"text": "ok"}\n{"text": \n', r'a\.jsonl:2: bad JSON'),
    ('{"other": "x"}\n', r"a\.jsonl:1: no field 'text'"),
    ('{"text": 3}\n', 'not a string'),
    ('[1, 2]\n', 'expected a JSON object'),
])
def test_read_jsonl_bad_input(tmp_path, content, message):
  path = _write(tmp_path / 'a.jsonl', content)
  with pytest.raises(UserError, match=message):
    corpus.read_jsonl([path])


# -------------------------------------------------------------------------- TFDS


@pytest.fixture(scope='module')
def tiny_tfds(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp('tfds'))
  splits = {
      'train': [f'Train doc {i}. It has two sentences.' for i in range(6)],
      'validation': ['Held out one. Yes.', 'Held out two.'],
  }
  version_dir = write_tiny_tfds(data_dir, splits)
  return data_dir, version_dir, splits


def _as_set(docs):
  return {tuple(d) for d in docs}


def test_tfds_by_name_and_by_directory_without_tensorflow(tiny_tfds):
  data_dir, version_dir, splits = tiny_tfds
  expected = _as_set(corpus.split_sentences(t) for t in splits['train'])
  by_name = corpus.read_tfds('bert_family_tiny_text', 'train', data_dir)
  by_dir = corpus.read_tfds(version_dir, 'train')
  assert _as_set(by_name) == expected and len(by_name) == 6
  assert by_dir == by_name
  assert corpus.read_tfds(version_dir, 'validation') == [
      ['Held out one.', 'Yes.'], ['Held out two.']]
  assert 'tensorflow' not in sys.modules


def test_tfds_bad_input(tiny_tfds, tmp_path):
  data_dir, version_dir, _ = tiny_tfds
  with pytest.raises(UserError, match="no field 'body'"):
    corpus.read_tfds(version_dir, 'train', text_field='body')
  with pytest.raises(UserError, match='split'):
    corpus.read_tfds(version_dir, 'test')
  with pytest.raises(UserError, match='no_such_dataset_xyz'):
    corpus.read_tfds('no_such_dataset_xyz', data_dir=data_dir)
  with pytest.raises(UserError, match='cannot open'):
    corpus.read_tfds(str(tmp_path))  # A directory with no dataset_info.json.


def test_load_corpus_tfds(tiny_tfds):
  data_dir, _, _ = tiny_tfds
  config = _config(source='tfds', tfds_name='bert_family_tiny_text',
                   tfds_data_dir=data_dir, heldout_split='validation', seed=0)
  train, heldout = corpus.load_corpus(config)
  assert len(train) == 6 and len(heldout) == 2
  config.max_documents = 3  # Capped while reading: a seeded subset, both splits.
  train, heldout = corpus.load_corpus(config)
  assert len(train) == 3 and len(heldout) == 2
  assert train == corpus.load_corpus(config)[0]
  config.max_documents = 0
  config.heldout_split = None
  config.heldout_fraction = 0.3
  train, heldout = corpus.load_corpus(config)
  assert (len(train), len(heldout)) == (4, 2)


# ---------------------------------------------------------- splits and dispatch


def _docs(n):
  return [[f'Doc {i}.'] for i in range(n)]


def test_split_heldout_deterministic_disjoint_complete():
  docs = _docs(100)
  train, heldout = corpus.split_heldout(docs, 0.1, seed=3)
  assert (train, heldout) == corpus.split_heldout(docs, 0.1, seed=3)
  assert len(heldout) == 10 and len(train) == 90
  assert not _as_set(train) & _as_set(heldout)
  assert _as_set(train) | _as_set(heldout) == _as_set(docs)
  assert corpus.split_heldout(docs, 0.1, seed=4)[1] != heldout
  # Tiny corpora still give two non-empty parts.
  assert [len(p) for p in corpus.split_heldout(_docs(2), 0.01, 0)] == [1, 1]
  assert [len(p) for p in corpus.split_heldout(_docs(5), 0.0, 0, 3)] == [2, 3]


def test_split_heldout_errors():
  with pytest.raises(UserError, match='1 document'):
    corpus.split_heldout(_docs(1), 0.5, 0)
  with pytest.raises(UserError, match='fraction'):
    corpus.split_heldout(_docs(10), 1.0, 0)


def test_load_corpus_text_jsonl_and_cap(tmp_path):
  text = _write(tmp_path / 'a.txt', '\n\n'.join(f'Block {i}. More.' for i in range(50)))
  config = _config(source='text', paths=text, heldout_fraction=0.1, seed=1)
  train, heldout = corpus.load_corpus(config)
  assert (len(train), len(heldout)) == (45, 5)
  # The cap picks a seeded subset, the same one each time.
  config.max_documents = 20
  capped = corpus.load_corpus(config)
  assert capped == corpus.load_corpus(config)
  assert (len(capped[0]), len(capped[1])) == (18, 2)
  assert _as_set(capped[0] + capped[1]) < _as_set(train + heldout)

  jsonl = _write(tmp_path / 'a.jsonl', '{"text": "One. Two."}\n{"text": "Three."}\n')
  train, heldout = corpus.load_corpus(
      _config(source='jsonl', paths=[jsonl], heldout_fraction=0.0))
  assert train == [['One.', 'Two.'], ['Three.']] and heldout == []


def test_load_corpus_errors(tmp_path):
  empty = _write(tmp_path / 'empty.txt', '\n \n')
  with pytest.raises(UserError, match=r"corpus 'text:.*empty\.txt' is empty"):
    corpus.load_corpus(_config(source='text', paths=[empty]))
  with pytest.raises(UserError, match='valid: default, text, jsonl, tfds'):
    corpus.load_corpus(_config(source='wiki'))
  with pytest.raises(UserError, match='paths'):
    corpus.load_corpus(_config(source='jsonl'))
  with pytest.raises(UserError, match='tfds_name'):
    corpus.load_corpus(_config(source='tfds'))
  with pytest.raises(UserError, match='missing.txt'):
    corpus.load_corpus(
        _config(source='text', paths=f'{empty}, {tmp_path}/missing.txt'))
