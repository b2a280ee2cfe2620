"""Tests for common/interop/hf_tokenizer.py: imported HF tokenizers give transformers' ids.

Every tokenizer is built locally (tokenizers and sentencepiece trainers on the default
corpus); nothing is downloaded. Tests that compare with transformers skip without the
'hf' extra (and fail in CI, which requires it).
"""

import io
import json
import os

import ml_collections
import numpy as np
import pytest
import sentencepiece as spm
import tokenizers

from common.data import corpus
from common.interop import hf_tokenizer as hft
from common.data import packing
from common.data import pipeline
from common.data import tokenizer as tok
from common.data import word_units
from common.errors import UserError
from tests import conftest

SAMPLES = (
    'Hello World! The quick brown fox jumps over the lazy dog.',
    'Café naïve résumé: Ünïcödé ÀÉÎÕÜ façade',
    'Numbers 12345, 3.14159 and 1,000,000; dates 2024-01-02.',
    'Punctuation!?... (parens) [brackets] {braces} "quotes" ``tex\'\' \'single\'',
    'zzqxjv unknownishword supercalifragilisticexpialidocious',
    '  leading,   inner\t\ttabs\nnewline   and trailing  ',
    '你好，世界 日本語のテキスト 한국어',
    'emoji 😀 ﬁ ligature Ｆｕｌｌｗｉｄｔｈ a\u00a0b',
    'def f(x): return x ** 2  # Python code',
    'CamelCaseWords and ALLCAPS and mIxEd',
    '',
)
BERT_SPECIALS = ('[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]')


@pytest.fixture(scope='module')
def sentences(tmp_path_factory):
  docs = corpus.default_corpus(os.environ.get('BERT_FAMILY_CACHE')
                               or str(tmp_path_factory.mktemp('cache')))
  return [s for doc in docs[::8] for s in doc][:3000]


def _write(directory, name, content):
  os.makedirs(directory, exist_ok=True)
  mode = 'wb' if isinstance(content, bytes) else 'w'
  with open(os.path.join(directory, name), mode) as f:
    f.write(content if isinstance(content, (str, bytes)) else json.dumps(content))


def _wordpiece_dir(directory, sentences, lowercase):
  """A BERT-layout vocab.txt: [PAD]=0, [unused*], [UNK]=100 .. [MASK]=103."""
  trainer = tokenizers.BertWordPieceTokenizer(lowercase=lowercase)
  trainer.train_from_iterator(sentences, vocab_size=700, special_tokens=[])
  learned = sorted(trainer.get_vocab(), key=trainer.get_vocab().get)
  vocab = (['[PAD]'] + [f'[unused{i}]' for i in range(99)] + list(BERT_SPECIALS[1:])
           + [p for p in learned if p not in BERT_SPECIALS])
  _write(directory, 'vocab.txt', ''.join(p + '\n' for p in vocab))
  _write(directory, 'tokenizer_config.json',
         {'tokenizer_class': 'BertTokenizer', 'do_lower_case': lowercase})
  return str(directory)


def _bpe(sentences):
  """Byte-level BPE with RoBERTa's specials: <s>=0 <pad>=1 </s>=2 <unk>=3, <mask> last."""
  bpe = tokenizers.ByteLevelBPETokenizer()
  bpe.train_from_iterator(sentences, vocab_size=700,
                          special_tokens=['<s>', '<pad>', '</s>', '<unk>'])
  bpe.add_special_tokens(['<mask>'])
  return bpe


def _spiece_dir(directory, sentences, config):
  """ALBERT's sentencepiece layout, with its user-defined punctuation pieces."""
  writer = io.BytesIO()
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(sentences), model_writer=writer, vocab_size=800,
      pad_id=0, unk_id=1, bos_id=-1, eos_id=-1, pad_piece='<pad>',
      unk_piece='<unk>', control_symbols=['[CLS]', '[SEP]', '[MASK]'],
      user_defined_symbols=['(', ')', '"', '-', '.', '–', '£', '€'],
      character_coverage=0.9995, num_threads=1, minloglevel=2)
  _write(directory, 'spiece.model', writer.getvalue())
  _write(directory, 'tokenizer_config.json', config)
  return str(directory)


@pytest.fixture(scope='module')
def model_dirs(sentences, tmp_path_factory):
  """name -> an HF model directory with only tokenizer files."""
  root = tmp_path_factory.mktemp('hf')
  bpe = _bpe(sentences)
  dirs = {
      'bert_uncased': _wordpiece_dir(root / 'bert_uncased', sentences, True),
      'bert_cased': _wordpiece_dir(root / 'bert_cased', sentences, False),
      'albert': _spiece_dir(root / 'albert', sentences,
                            {'tokenizer_class': 'AlbertTokenizer'}),
      'albert_cased': _spiece_dir(root / 'albert_cased', sentences,
                                  {'tokenizer_class': 'AlbertTokenizer',
                                   'do_lower_case': False, 'keep_accents': True}),
  }
  os.makedirs(root / 'roberta_files')
  bpe.save_model(str(root / 'roberta_files'))
  _write(root / 'roberta_files', 'vocab.json', bpe.get_vocab())  # <mask> included.
  _write(root / 'roberta_files', 'config.json', {'model_type': 'roberta'})
  dirs['roberta_files'] = str(root / 'roberta_files')
  os.makedirs(root / 'roberta_json')
  bpe.save(str(root / 'roberta_json' / 'tokenizer.json'))
  _write(root / 'roberta_json', 'tokenizer_config.json',
         {'tokenizer_class': 'RobertaTokenizerFast'})
  dirs['roberta_json'] = str(root / 'roberta_json')
  # A tokenizer.json used as it is, special tokens named in tokenizer_config.json.
  os.makedirs(root / 'generic')
  bpe.save(str(root / 'generic' / 'tokenizer.json'))
  _write(root / 'generic', 'tokenizer_config.json', {
      'tokenizer_class': 'PreTrainedTokenizerFast', 'pad_token': '<pad>',
      'unk_token': '<unk>', 'cls_token': '<s>', 'sep_token': '</s>',
      'mask_token': '<mask>'})
  dirs['generic'] = str(root / 'generic')
  return dirs


def _hf_ids(transformers, model_dir, texts):
  hf = transformers.AutoTokenizer.from_pretrained(model_dir)
  return hf, [hf(t, add_special_tokens=False)['input_ids'] for t in texts]


def _ours(tokenizer, texts):
  return [tokenizer.encode(t).tolist() for t in texts]


@pytest.mark.parametrize('name', ['bert_uncased', 'bert_cased', 'albert',
                                  'albert_cased', 'roberta_files', 'roberta_json',
                                  'generic'])
def test_ids_equal_transformers(model_dirs, sentences, name):
  _, transformers = conftest.import_hf()
  ours = hft.load_hf_tokenizer(model_dirs[name])
  texts = list(SAMPLES) + sentences[-200:]
  hf, expected = _hf_ids(transformers, model_dirs[name], texts)
  assert _ours(ours, texts) == expected
  assert [b.tolist() for b in ours.encode_batch(texts)] == expected
  assert (ours.pad_id, ours.cls_id, ours.sep_id, ours.mask_id, ours.unk_id) == (
      hf.pad_token_id, hf.cls_token_id, hf.sep_token_id, hf.mask_token_id,
      hf.unk_token_id)
  # With specials: one text as our packing builds it, and a pair.
  a, b = ours.encode(SAMPLES[0]), ours.encode(SAMPLES[2])
  specials = pipeline.special_ids(ours)
  packed = packing.pack_doc_sentences([[a]], 512, specials)[0]['input_ids']
  if name == 'generic':  # Its tokenizer.json adds no specials (export adds them).
    return
  assert hf(SAMPLES[0])['input_ids'] == packed.tolist()
  if not name.startswith('roberta'):  # RoBERTa: <s> A </s></s> B </s>.
    pair = [ours.cls_id, *a, ours.sep_id, *b, ours.sep_id]
    assert hf(SAMPLES[0], SAMPLES[2])['input_ids'] == pair


def test_special_ids_are_the_models_own(model_dirs):
  bert = hft.load_hf_tokenizer(model_dirs['bert_uncased'])
  assert (bert.pad_id, bert.unk_id, bert.cls_id, bert.sep_id, bert.mask_id) == (
      0, 100, 101, 102, 103)
  roberta = hft.load_hf_tokenizer(model_dirs['roberta_files'])
  assert (roberta.cls_id, roberta.pad_id, roberta.sep_id, roberta.unk_id) == (
      0, 1, 2, 3)
  assert roberta.mask_id == roberta.vocab_size - 1
  albert = hft.load_hf_tokenizer(model_dirs['albert'])
  assert [albert.id_to_piece(i) for i in range(5)] == [
      '<pad>', '<unk>', '[CLS]', '[SEP]', '[MASK]']
  assert (albert.pad_id, albert.unk_id, albert.cls_id, albert.sep_id,
          albert.mask_id) == (0, 1, 2, 3, 4)
  for t in (bert, roberta, albert):
    assert t.special_ids.dtype == t.random_token_ids.dtype == np.int32
    assert not np.isin(t.random_token_ids, t.special_ids).any()
    assert len(t.random_token_ids) + len(t.special_ids) == t.vocab_size
  # BERT's [unused*] pieces stay random-replacement candidates, as in BERT.
  assert np.isin(np.arange(1, 100), bert.random_token_ids).all()
  # Literal special-token text is plain characters, as with our sentencepiece.
  for t in (bert, roberta, albert):
    ids = t.encode(f'a {t.special_tokens["mask"]} b {t.special_tokens["cls"]}')
    assert not np.isin(ids, t.special_ids).any()


def test_word_starts(model_dirs):
  bert = hft.load_hf_tokenizer(model_dirs['bert_uncased'])
  pieces = [bert.id_to_piece(i) for i in range(bert.vocab_size)]
  np.testing.assert_array_equal(
      bert.is_word_start | np.isin(np.arange(bert.vocab_size), bert.special_ids),
      conftest.wordpiece_word_starts(pieces) | np.isin(
          np.arange(bert.vocab_size), bert.special_ids))
  assert any(p.startswith('##') for p in pieces)
  text = 'supercalifragilistic unknownishword quick'
  ids = bert.encode(text)
  assert bert.is_word_start[ids].sum() == 3 and len(ids) > 3
  roberta = hft.load_hf_tokenizer(model_dirs['roberta_files'])
  ids = roberta.encode(' ' + text)
  assert roberta.is_word_start[ids].sum() == 3 and len(ids) > 3
  assert all(roberta.id_to_piece(i).startswith('\u0120')
             for i in ids[roberta.is_word_start[ids]])
  albert = hft.load_hf_tokenizer(model_dirs['albert'])
  ids = albert.encode(text)
  assert albert.is_word_start[ids].sum() == 3 and len(ids) > 3
  # ERNIE's entity units: the byte-level space mark 'Ġ' is no capital letter.
  config = conftest.tiny_config('ernie')
  capital = pipeline.masking_vocab(config, roberta).is_capitalised
  first = lambda word: roberta.encode(word)[0]
  assert capital[first(' Python')] and not capital[first(' python')]


@pytest.mark.parametrize('strategy', ['whole_word', 'ngram', 'span', 'macbert',
                                      'ernie'])
def test_word_masking_never_splits_a_word(model_dirs, sentences, strategy):
  bert = hft.load_hf_tokenizer(model_dirs['bert_uncased'])
  config = conftest.tiny_config({'span': 'spanbert', 'macbert': 'macbert',
                                 'ernie': 'ernie'}.get(strategy, 'bert_wwm'))
  config.masking.strategy = strategy  # n-gram: ALBERT's defaults, up to 3 words.
  if strategy == 'ernie':
    config.masking.ernie_knowledge_prob = 1.0  # Not ERNIE's basic (piece) level.
  config.masking.mask_prob = 0.3
  docs = pipeline.tokenize_corpus([sentences[i:i + 20] for i in range(0, 400, 20)],
                                  bert)
  vocab = pipeline.masking_vocab(config, bert, docs)
  masker = pipeline.Masker(bert, config.masking, 64, vocab)
  examples = packing.pack_full_sentences(docs, 64, pipeline.special_ids(bert))
  masked_any = False
  for n, example in enumerate(examples[:40]):
    out = masker(example, (0, n))
    ids = out['input_ids'].copy()
    positions = out['masked_positions'][out['masked_weights'] > 0]
    original = ids.copy()
    original[positions] = out['masked_ids'][out['masked_weights'] > 0]
    chosen = np.zeros(len(ids), bool)
    chosen[positions] = True
    for unit in word_units.word_units(original, bert.special_ids, bert.is_word_start):
      assert chosen[unit].all() or not chosen[unit].any(), (
          [bert.id_to_piece(i) for i in original[unit]])
    masked_any |= chosen.any()
    assert not np.isin(original[chosen], bert.special_ids).any()
  assert masked_any


@pytest.mark.parametrize('model_type', ['unigram', 'bpe'])
def test_export_our_sentencepiece(sentences, tmp_path, model_type):
  _, transformers = conftest.import_hf()
  ours = tok.Tokenizer.train(sentences, 800, model_type)
  out = str(tmp_path / 'export')
  hft.export_hf_tokenizer(ours, out, 'bert', model_max_length=128)
  texts = list(SAMPLES) + sentences[-300:]
  hf, expected = _hf_ids(transformers, out, texts)
  assert _ours(ours, texts) == expected
  assert hf(SAMPLES[0])['input_ids'] == [2, *ours.encode(SAMPLES[0]), 3]
  assert hf.mask_token_id == ours.mask_id and hf.pad_token_id == ours.pad_id
  assert hf.model_max_length == 128


@pytest.mark.parametrize('name,model_type', [
    ('bert_uncased', 'bert'), ('bert_cased', 'distilbert'), ('albert', 'albert'),
    ('roberta_files', 'roberta'), ('generic', 'roberta')])
def test_export_imported_round_trip(model_dirs, sentences, tmp_path, name,
                                    model_type):
  _, transformers = conftest.import_hf()
  imported = hft.load_hf_tokenizer(model_dirs[name])
  imported.save(str(tmp_path / 'work' / hft.WORKDIR_FILE))
  reloaded = hft.HFTokenizer.load(str(tmp_path / 'work' / hft.WORKDIR_FILE))
  out = str(tmp_path / 'export')
  hft.export_hf_tokenizer(reloaded, out, model_type)
  texts = list(SAMPLES) + sentences[-100:]
  hf, expected = _hf_ids(transformers, out, texts)
  assert _ours(imported, texts) == expected
  assert hf(SAMPLES[0])['input_ids'] == [
      imported.cls_id, *imported.encode(SAMPLES[0]), imported.sep_id]
  assert ('token_type_ids' in hf(SAMPLES[0])) == (model_type != 'distilbert')
  # Importing the export gives the same tokenizer again.
  assert hft.load_hf_tokenizer(out).serialized == imported.serialized


def test_get_tokenizer_uses_an_imported_tokenizer(model_dirs, tmp_path):
  no_training = lambda: pytest.fail('should not train')
  workdir = str(tmp_path / 'run')
  config = ml_collections.ConfigDict({'path': model_dirs['bert_uncased']})
  first = tok.get_tokenizer(config, workdir, no_training)
  assert isinstance(first, hft.HFTokenizer) and first.mask_id == 103
  assert os.listdir(workdir) == [hft.WORKDIR_FILE]
  # A resumed run finds it in the workdir; the same path again is accepted.
  resumed = tok.get_tokenizer(ml_collections.ConfigDict(), workdir, no_training)
  assert resumed.serialized == first.serialized
  assert resumed.model_path == os.path.join(workdir, hft.WORKDIR_FILE)
  tok.get_tokenizer(config, workdir, no_training)
  # tokenizer.path may also name the workdir file itself.
  again = tok.get_tokenizer(
      ml_collections.ConfigDict({'path': resumed.model_path}), None, no_training)
  assert again.serialized == first.serialized
  with pytest.raises(UserError, match='differs'):
    tok.get_tokenizer(ml_collections.ConfigDict({'path': model_dirs['bert_cased']}),
                      workdir, no_training)
  with pytest.raises(UserError, match='but the config asks for 5'):
    tok.get_tokenizer(ml_collections.ConfigDict({'vocab_size': 5}), workdir,
                      no_training)


def _snapshot(directory):
  return {name: open(os.path.join(directory, name), 'rb').read()
          for name in sorted(os.listdir(directory))}


def test_bad_input(model_dirs, tmp_path):
  empty = tmp_path / 'empty'
  empty.mkdir()
  with pytest.raises(UserError, match='no tokenizer in .*empty.*vocab.txt.*spiece'):
    hft.load_hf_tokenizer(str(empty))
  with pytest.raises(UserError, match='not a directory'):
    hft.load_hf_tokenizer(str(tmp_path / 'missing'))

  no_mask = tmp_path / 'no_mask'
  _write(no_mask, 'vocab.txt', '[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\n##s\n')
  with pytest.raises(UserError, match=r"mask token '\[MASK\]' is not in"):
    hft.load_hf_tokenizer(str(no_mask))

  corrupt = tmp_path / 'corrupt'
  _write(corrupt, 'vocab.json', '{"<s>": 0, "a": ')
  _write(corrupt, 'merges.txt', '#version: 0.2\na b\n')
  with pytest.raises(UserError, match='vocab.json is not valid JSON'):
    hft.load_hf_tokenizer(str(corrupt))
  _write(corrupt, 'vocab.json', {'<s>': 0, '<pad>': 1, '</s>': 2, '<unk>': 3,
                                 '<mask>': 4, 'a': 5})
  with pytest.raises(UserError, match='corrupt BPE vocabulary'):
    hft.load_hf_tokenizer(str(corrupt))  # The merge 'a b' names a missing 'b'.

  junk = tmp_path / 'junk'
  _write(junk, 'spiece.model', b'not a sentencepiece model')
  with pytest.raises(UserError, match='spiece.model is not a sentencepiece model'):
    hft.load_hf_tokenizer(str(junk))

  other = tmp_path / 'other'
  _write(other, 'vocab.txt', '[PAD]\n')
  _write(other, 'tokenizer_config.json', {'tokenizer_class': 'XLNetTokenizer'})
  with pytest.raises(UserError, match='XLNetTokenizer is not supported'):
    hft.load_hf_tokenizer(str(other))

  with pytest.raises(UserError, match='not an imported tokenizer file'):
    hft.HFTokenizer.load(str(tmp_path / 'other' / 'tokenizer_config.json'))

  # A refused export writes nothing, even into a directory with files in it.
  out = tmp_path / 'out'
  _write(out, 'config.json', {'model_type': 'xlnet'})
  before = _snapshot(out)
  bert = hft.load_hf_tokenizer(model_dirs['bert_uncased'])
  with pytest.raises(UserError, match="model type 'xlnet'"):
    hft.export_hf_tokenizer(bert, str(out), 'xlnet')
  assert _snapshot(out) == before
