"""Tests for common/data/probe_tasks.py: the probe suite built from held-out text."""

import collections
import json
import os

import ml_collections
import numpy as np
import pytest

from common.data import corpus
from common.data import probe_tasks
from common.errors import UserError

SHARED = 'This sentence appears in every single document of the corpus.'
SMALL = {'train': 64, 'dev': 32, 'test': 32}


@pytest.fixture(scope='module')
def small_config(tmp_path_factory):
  """A JSONL corpus of 40 documents of made-up sentences, half held out; every
  document also holds SHARED, so a training sentence sits in held-out text."""
  rng = np.random.default_rng(0)
  vocab = [f'w{i}' for i in range(500)]
  path = tmp_path_factory.mktemp('corpus') / 'docs.jsonl'
  with open(path, 'w') as f:
    for _ in range(40):
      sentences = [SHARED]
      for _ in range(rng.integers(8, 60)):
        words = list(rng.choice(vocab, rng.integers(3, 16)))
        sentences.append(' '.join([words[0].upper()] + words[1:]) + '.')
      f.write(json.dumps({'text': ' '.join(sentences)}) + '\n')
  return ml_collections.ConfigDict(dict(corpus.source_config('jsonl'), paths=str(path),
                                        heldout_fraction=0.5, seed=0))


@pytest.fixture(scope='module')
def small_suite(small_config, tmp_path_factory):
  out = str(tmp_path_factory.mktemp('suites') / 'small')
  return out, probe_tasks.build_probe_suite(small_config, out, seed=0, sizes=SMALL)


def _read(out, task, split):
  with open(os.path.join(out, task, f'{split}.tsv'), encoding='utf-8') as f:
    lines = f.read().split('\n')
  assert lines[-1] == '' and all(lines[:-1])  # newline-terminated, no blank rows
  return [line.split('\t') for line in lines[:-1]]


def _rows(out, task, split):
  header, *rows = _read(out, task, split)
  return header, [tuple(r[:-1]) for r in rows], [r[-1] for r in rows]


def test_files_parse_and_agree_with_task_json(small_suite):
  out, index = small_suite
  assert set(index['tasks']) == {'word_order', 'sentence_order', 'same_document'}
  assert 'default corpus' in index['skipped']['topic']  # a JSONL corpus has no topic
  with open(os.path.join(out, 'probes.json')) as f:
    assert json.load(f) == index
  readme = open(os.path.join(out, 'README.md')).read()
  assert 'Skipped `topic`' in readme
  for name, meta in index['tasks'].items():
    with open(os.path.join(out, name, 'task.json')) as f:
      assert json.load(f) == meta
    assert meta['label_column'] == 'label' and meta['metrics'] == ['accuracy']
    assert meta['seed'] == 0 and meta['source'] == index['source']
    for split in probe_tasks.SPLITS:
      raw = _read(out, name, split)
      assert raw[0] == meta['text_columns'] + ['label']
      assert all(len(r) == len(raw[0]) for r in raw)
      _, texts, labels = _rows(out, name, split)
      assert len(labels) == meta['sizes'][split] == SMALL[split]
      counts = collections.Counter(labels)
      assert sorted(counts) == meta['labels'] == ['0', '1']
      assert len(set(counts.values())) == 1  # balanced
      assert meta['majority_baseline'][split] == max(counts.values()) / len(labels)
      assert all(t and t == ' '.join(t.split()) for row in texts for t in row)
      assert len({row for row in texts}) == len(texts)


def _heldout_index(config):
  """sentence -> held-out document index, and the training sentences."""
  train, heldout = corpus.load_corpus(config)
  where = {s: d for d, doc in enumerate(heldout) for s in doc}
  return where, {s for doc in train for s in doc}, heldout


def test_no_training_sentence_and_splits_by_document(small_config, small_suite):
  out, index = small_suite
  where, training, _ = _heldout_index(small_config)
  assert SHARED in training
  for name in index['tasks']:
    texts, docs = {}, {}
    for split in probe_tasks.SPLITS:
      _, rows, _ = _rows(out, name, split)
      texts[split] = {t for row in rows for t in row}
      docs[split] = {where[t] for t in texts[split] if t in where}
      assert not texts[split] & training, (name, split)
    for a, b in (('train', 'dev'), ('train', 'test'), ('dev', 'test')):
      assert not texts[a] & texts[b], (name, a, b)
      assert not docs[a] & docs[b], (name, a, b)  # each document in one split


def test_examples_are_what_their_labels_say(small_config, small_suite):
  out, _ = small_suite
  where, _, heldout = _heldout_index(small_config)
  position = {s: i for doc in heldout for i, s in enumerate(doc)}
  key = lambda s: (s.split()[0], s.split()[-1], tuple(sorted(s.split())))
  originals = {key(s): s for s in where}
  for split in probe_tasks.SPLITS:
    _, rows, labels = _rows(out, 'word_order', split)
    for (text,), label in zip(rows, labels):
      assert (text in where) == (label == '1')
      if label == '0':  # same words, same first and last, two swaps away
        source = originals[key(text)].split()
        assert sum(a != b for a, b in zip(source, text.split())) == 4
    _, rows, labels = _rows(out, 'sentence_order', split)
    for (a, b), label in zip(rows, labels):
      first, second = (a, b) if label == '1' else (b, a)
      assert where[first] == where[second]
      assert position[second] == position[first] + 1
    _, rows, labels = _rows(out, 'same_document', split)
    for (a, b), label in zip(rows, labels):
      assert (where[a] == where[b]) == (label == '1')


def test_deterministic_for_a_seed_and_different_for_another(small_config, small_suite,
                                                           tmp_path):
  out, index = small_suite
  again = probe_tasks.build_probe_suite(small_config, str(tmp_path / 'a'), seed=0,
                                        sizes=SMALL)
  other = probe_tasks.build_probe_suite(small_config, str(tmp_path / 'b'), seed=1,
                                        sizes=SMALL)
  assert again == index and other['fingerprint'] == index['fingerprint']
  for name in index['tasks']:
    for split in probe_tasks.SPLITS:
      assert _read(out, name, split) == _read(str(tmp_path / 'a'), name, split)
      assert _read(out, name, split) != _read(str(tmp_path / 'b'), name, split)


def test_sizes_are_capped_by_the_heldout_documents(small_config, tmp_path):
  sizes = {'train': 100_000, 'dev': 8}
  index = probe_tasks.build_probe_suite(small_config, str(tmp_path / 's'), sizes=sizes)
  assert index['sizes'] == {'train': 100_000, 'dev': 8, 'test': 256}
  for meta in index['tasks'].values():
    for split, n in meta['sizes'].items():
      assert 0 < n <= index['sizes'][split] and n % 2 == 0
    assert SMALL['train'] < meta['sizes']['train'] < index['eligible_sentences']


def test_reuses_the_same_suite_and_refuses_others(small_config, small_suite, tmp_path):
  out, index = small_suite
  stamp = os.path.getmtime(os.path.join(out, 'word_order', 'train.tsv'))
  assert probe_tasks.build_probe_suite(small_config, out, seed=0, sizes=SMALL) == index
  assert os.path.getmtime(os.path.join(out, 'word_order', 'train.tsv')) == stamp
  with pytest.raises(UserError, match='seed'):
    probe_tasks.build_probe_suite(small_config, out, seed=1, sizes=SMALL)
  with pytest.raises(UserError, match='sizes'):
    probe_tasks.build_probe_suite(small_config, out, seed=0)
  other = tmp_path / 'other'
  other.mkdir()
  (other / 'notes.txt').write_text('mine')
  with pytest.raises(UserError, match='not a probe suite'):
    probe_tasks.build_probe_suite(small_config, str(other))
  assert (other / 'notes.txt').read_text() == 'mine'
  empty = tmp_path / 'empty'
  empty.mkdir()
  probe_tasks.build_probe_suite(small_config, str(empty), sizes=SMALL)
  assert (empty / 'probes.json').exists()
  assert not [p for p in os.listdir(tmp_path) if p.startswith('.probes-tmp')]


def test_bad_input(small_config, tmp_path):
  with pytest.raises(UserError, match='sizes'):
    probe_tasks.build_probe_suite(small_config, str(tmp_path / 's'), sizes={'val': 8})
  with pytest.raises(UserError, match='sizes'):
    probe_tasks.build_probe_suite(small_config, str(tmp_path / 's'), sizes={'dev': 1})
  config = ml_collections.ConfigDict(small_config.to_dict())
  config.heldout_fraction = 0.0
  with pytest.raises(UserError, match='held-out'):
    probe_tasks.build_probe_suite(config, str(tmp_path / 's'))
  assert not os.path.exists(tmp_path / 's')


def test_assign_documents_keeps_every_split_and_the_ratio():
  weights = [700, 200, 150, 50, 20, 15, 10, 5, 3, 0]
  split_of = probe_tasks._assign_documents(weights, probe_tasks.SIZES, min_docs=2)
  assert split_of[-1] == ''  # nothing to give, no split
  count = collections.Counter(s for s in split_of if s)
  assert all(count[s] >= 2 for s in probe_tasks.SPLITS)
  assert split_of[0] == 'train'
  assert probe_tasks._assign_documents([5, 5], probe_tasks.SIZES, 1) == ['train', 'dev']


# ------------------------------------------------------------ the default corpus


def test_named_default_corpus_aligns_with_the_build():
  named = probe_tasks._named_default_corpus()
  assert [list(doc) for _, doc in named] == corpus.default_corpus()
  sources = [s for s, _ in named]
  assert sources.count('pydoc_topics') > 10
  for module, package in (('json/__init__.py', 'json'), ('email/message.py', 'email'),
                          ('asyncio/tasks.py', 'asyncio'), ('difflib.py', 'difflib'),
                          ('pydoc_topics', 'pydoc_topics')):
    assert module in sources
    assert probe_tasks.top_level_package(module) == package
  assert probe_tasks.top_level_package('xml/dom/minidom.py') == 'xml'


@pytest.fixture(scope='module')
def default_suite(tmp_path_factory):
  config = ml_collections.ConfigDict(dict(corpus.source_config('default'),
                                          heldout_fraction=0.2, seed=0))
  out = str(tmp_path_factory.mktemp('suites') / 'default')
  return config, out, probe_tasks.build_probe_suite(config, out, seed=0)


def test_topic_labels_are_the_package_of_each_sentence(default_suite):
  config, out, index = default_suite
  meta = index['tasks']['topic']
  assert len(meta['labels']) >= 3 and 'pydoc_topics' in meta['labels']
  assert 'default corpus' in meta['source'] and not index['skipped']
  package_of = collections.defaultdict(set)
  document_of = {}
  for d, (source, doc) in enumerate(probe_tasks._named_default_corpus()):
    for s in doc:
      package_of[s].add(probe_tasks.top_level_package(source))
      document_of[s] = d
  modules = {}
  for split in probe_tasks.SPLITS:
    _, rows, labels = _rows(out, 'topic', split)
    assert len(labels) == meta['sizes'][split] > 0
    assert collections.Counter(labels) == {
        label: len(labels) // len(meta['labels']) for label in meta['labels']}
    assert meta['majority_baseline'][split] == 1 / len(meta['labels'])
    for (text,), label in zip(rows, labels):
      assert package_of[text] == {label}
    modules[split] = {document_of[t] for (t,) in rows}
  for a, b in (('train', 'dev'), ('train', 'test'), ('dev', 'test')):
    assert not modules[a] & modules[b]  # held-out modules, not only sentences


def test_default_corpus_probes_avoid_the_training_split(default_suite):
  config, out, index = default_suite
  train, _ = corpus.load_corpus(config)
  training = {s for doc in train for s in doc}
  for name, meta in index['tasks'].items():
    for split in probe_tasks.SPLITS:
      _, rows, _ = _rows(out, name, split)
      assert not {t for row in rows for t in row} & training, (name, split)


def test_default_heldout_fraction_is_too_small_for_topic(tmp_path):
  config = ml_collections.ConfigDict(corpus.source_config('default'))
  index = probe_tasks.build_probe_suite(config, str(tmp_path / 's'))
  assert index['heldout_documents'] == 10
  assert 'heldout_fraction' in index['skipped']['topic']
  assert index['tasks']['word_order']['sizes']['train'] == 512
