"""Tests for common/data/glue.py: GLUE-format task files, encoding, submission files.

Fixtures are written in the exact layouts of the `glue_data/<TASK>/` directories that
download_glue_data.py produces (CoLA without a header, MRPC with a byte-order mark,
unquoted sentences with lone double quotes, QQP's malformed rows).
"""

import csv
import json
import os

import numpy as np
import pytest
import tokenizers

from common.data import glue
from common.errors import UserError
from common.interop import hf_tokenizer

Example = glue.Example
T = '\t'


def _write(directory, name, lines, *, bom=False, newline='\n'):
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, name)
  text = ''.join(line + newline for line in lines)
  with open(path, 'wb') as f:
    f.write((b'\xef\xbb\xbf' if bom else b'') + text.encode('utf-8'))
  return path


def _read_lines(path):
  with open(path, encoding='utf-8') as f:
    return f.read().split('\n')


class FakeTokenizer:
  """Whitespace words -> ids from 10 on; specials where our Tokenizer has them."""
  pad_id, unk_id, cls_id, sep_id, mask_id = 0, 1, 2, 3, 4

  def __init__(self):
    self.vocab = {}

  def encode(self, text):
    return np.asarray([self.vocab.setdefault(w, 10 + len(self.vocab))
                       for w in text.split()], np.int32)


# ---------------------------------------------------------------------------
# Task specs.


def test_get_task_accepts_glue_spellings():
  assert glue.get_task('SST-2').name == 'sst2'
  assert glue.get_task('sts-b').name == 'stsb'
  assert glue.get_task('STSB').glue_dir == 'STS-B'
  assert glue.get_task('MNLI') is glue.GLUE_TASKS['mnli']
  assert set(glue.GLUE_TASKS) == {'cola', 'sst2', 'mrpc', 'qqp', 'stsb', 'mnli', 'qnli',
                                  'rte', 'wnli'}


def test_unknown_task_lists_known_ones():
  with pytest.raises(UserError,
                     match=r"unknown task 'squad'; known: cola, sst2, .*generic"):
    glue.get_task('squad')
  with pytest.raises(UserError, match='only generic'):
    glue.get_task('cola', text_columns='x')


def test_task_specs_match_glue():
  mnli = glue.get_task('mnli')
  assert mnli.labels == ('contradiction', 'entailment', 'neutral')
  assert mnli.dev_splits == ('dev_matched', 'dev_mismatched')
  assert [mnli.split(s).submission for s in mnli.test_splits] == [
      'MNLI-m.tsv', 'MNLI-mm.tsv', 'AX.tsv']
  assert mnli.split('diagnostic').optional
  stsb = glue.get_task('stsb')
  assert stsb.regression and stsb.labels is None and stsb.num_labels == 1
  assert stsb.metrics == ('pearson', 'spearman') and stsb.score_range == (0.0, 5.0)
  assert glue.get_task('cola').main_metrics == ('matthews',)
  for name in ('mrpc', 'qqp'):
    task = glue.get_task(name)
    assert set(task.metrics) == {'accuracy', 'f1'}
    assert task.score({'f1': 0.9, 'accuracy': 0.8}) == pytest.approx(0.85)
  assert glue.get_task('qnli').labels == ('entailment', 'not_entailment')
  assert glue.get_task('rte').labels == ('entailment', 'not_entailment')
  assert glue.get_task('wnli').labels == ('0', '1')
  subs = {glue.get_task(n).split('test').submission
          for n in ('cola', 'sst2', 'mrpc', 'qqp', 'stsb', 'qnli', 'rte', 'wnli')}
  assert subs == {'CoLA.tsv', 'SST-2.tsv', 'MRPC.tsv', 'QQP.tsv', 'STS-B.tsv',
                  'QNLI.tsv', 'RTE.tsv', 'WNLI.tsv'}
  with pytest.raises(UserError, match="no split 'dev'.*train, dev_matched"):
    mnli.split('dev')


# ---------------------------------------------------------------------------
# Reading the GLUE layouts.


def test_cola_without_header_and_unquoted_sentences(tmp_path):
  _write(tmp_path, 'train.tsv', [
      f'gj04{T}1{T}{T}He said "hi" to me.',
      f'gj04{T}0{T}*{T}"',
      f'cj99{T}0{T}??{T}The "more" you eat , the "less.',
  ])
  _write(tmp_path, 'dev.tsv', [f'in01{T}1{T}{T}Fred watered the plants flat.'])
  _write(tmp_path, 'test.tsv', [f'index{T}sentence', f'0{T}Bill "rolled" out.',
                                f'1{T}What did you see ?'])
  task = glue.get_task('cola')
  train = glue.read_split(task, str(tmp_path), 'train')
  assert train == [Example('He said "hi" to me.', None, 1, '0'),
                   Example('"', None, 0, '1'),
                   Example('The "more" you eat , the "less.', None, 0, '2')]
  assert train.path == str(tmp_path / 'train.tsv') and train.skipped_rows == 0
  assert glue.read_split(task, str(tmp_path), 'dev') == [
      Example('Fred watered the plants flat.', None, 1, '0')]
  assert glue.read_split(task, str(tmp_path), 'test') == [
      Example('Bill "rolled" out.', None, None, '0'),
      Example('What did you see ?', None, None, '1')]


def test_sst2(tmp_path):
  _write(tmp_path, 'train.tsv', [f'sentence{T}label', f'hide new secretions {T}0',
                                 f'" a gorgeous film "{T}1'])
  _write(tmp_path, 'test.tsv', [f'index{T}sentence', f'0{T}uneasy mishmash .'])
  task = glue.get_task('sst2')
  assert glue.read_split(task, str(tmp_path), 'train') == [
      Example('hide new secretions ', None, 0, '0'),
      Example('" a gorgeous film "', None, 1, '1')]
  assert glue.read_split(task, str(tmp_path), 'test') == [
      Example('uneasy mishmash .', None, None, '0')]


def test_mrpc_with_byte_order_mark(tmp_path):
  header = f'Quality{T}#1 ID{T}#2 ID{T}#1 String{T}#2 String'
  _write(tmp_path, 'train.tsv', [
      header,
      f'1{T}702876{T}702977{T}Amrozi called him " the witness " .{T}Referring to him .',
      f'0{T}2108705{T}2108831{T}Yucaipa owned it .{T}Yucaipa bought it .'], bom=True)
  _write(tmp_path, 'dev.tsv', [header, f'1{T}1{T}2{T}a b{T}c d'], bom=True)
  _write(tmp_path, 'test.tsv', [
      f'index{T}#1 ID{T}#2 ID{T}#1 String{T}#2 String',
      f'0{T}1089874{T}1089925{T}PCCW said .{T}Its chief said .'])
  task = glue.get_task('mrpc')
  assert glue.read_split(task, str(tmp_path), 'train') == [
      Example('Amrozi called him " the witness " .', 'Referring to him .', 1, '0'),
      Example('Yucaipa owned it .', 'Yucaipa bought it .', 0, '1')]
  assert glue.read_split(task, str(tmp_path), 'dev') == [Example('a b', 'c d', 1, '0')]
  assert glue.read_split(task, str(tmp_path), 'test') == [
      Example('PCCW said .', 'Its chief said .', None, '0')]


def test_qqp_skips_and_counts_malformed_rows(tmp_path):
  _write(tmp_path, 'train.tsv', [
      f'id{T}qid1{T}qid2{T}question1{T}question2{T}is_duplicate',
      f'133273{T}213221{T}213222{T}How is the life?{T}Which is better?{T}0',
      f'363362{T}19{T}7{T}How do I "grow"?',   # Too few columns: skipped.
      'its second line',                      # Too few columns: skipped.
      f'402555{T}536040{T}536041{T}Where to go?{T}Where should I go?{T}1'])
  _write(tmp_path, 'test.tsv', [f'id{T}question1{T}question2',
                                f'0{T}Why ?{T}Why not ?'])
  task = glue.get_task('qqp')
  train = glue.read_split(task, str(tmp_path), 'train')
  assert train == [Example('How is the life?', 'Which is better?', 0, '133273'),
                   Example('Where to go?', 'Where should I go?', 1, '402555')]
  assert train.skipped_rows == 2
  assert glue.read_split(task, str(tmp_path), 'test') == [
      Example('Why ?', 'Why not ?', None, '0')]


def test_stsb_float_scores(tmp_path):
  header = T.join(['index', 'genre', 'filename', 'year', 'old_index', 'source1',
                   'source2', 'sentence1', 'sentence2'])
  meta = T.join(['main-captions', 'MSRvid', '2012test', '0001', 'none', 'none'])
  _write(tmp_path, 'train.tsv', [header + T + 'score',
                                 f'0{T}{meta}{T}A plane.{T}An air plane.{T}5.000',
                                 f'1{T}{meta}{T}A man.{T}A "man".{T}3.800'])
  _write(tmp_path, 'test.tsv', [header, f'0{T}{meta}{T}A girl.{T}A kid.'])
  task = glue.get_task('stsb')
  train = glue.read_split(task, str(tmp_path), 'train')
  assert train == [Example('A plane.', 'An air plane.', 5.0, '0'),
                   Example('A man.', 'A "man".', 3.8, '1')]
  assert isinstance(train[1].label, float)
  assert glue.read_split(task, str(tmp_path), 'test') == [
      Example('A girl.', 'A kid.', None, '0')]
  _write(tmp_path, 'dev.tsv', [header + T + 'score',
                               f'7{T}{meta}{T}a{T}b{T}n/a'])
  with pytest.raises(UserError, match=r"dev.tsv:2: score 'n/a' is not a number"):
    glue.read_split(task, str(tmp_path), 'dev')


def _mnli_row(index, s1, s2, labels):
  return T.join([str(index), '31193', '31193n', 'government', '( ( x ) )', '( y )',
                 '(ROOT x)', '(ROOT y)', s1, s2, *labels])


def test_mnli_both_dev_files_and_diagnostic(tmp_path):
  head = T.join(['index', 'promptID', 'pairID', 'genre', 'sentence1_binary_parse',
                 'sentence2_binary_parse', 'sentence1_parse', 'sentence2_parse',
                 'sentence1', 'sentence2'])
  mnli_dir = tmp_path / 'MNLI'
  _write(mnli_dir, 'train.tsv', [
      head + f'{T}label1{T}gold_label',
      _mnli_row(0, 'P "q" r.', 'H.', ['neutral', 'neutral'])])
  dev_head = head + T + T.join([f'label{i}' for i in range(1, 6)]) + T + 'gold_label'
  _write(mnli_dir, 'dev_matched.tsv', [
      dev_head, _mnli_row(0, 'M1.', 'M2.', ['neutral'] * 5 + ['contradiction'])])
  _write(mnli_dir, 'dev_mismatched.tsv', [
      dev_head, _mnli_row(0, 'X1.', 'X2.', ['entailment'] * 6)])
  _write(mnli_dir, 'test_matched.tsv', [head, _mnli_row(9, 'T1.', 'T2.', [])])
  _write(mnli_dir, 'test_mismatched.tsv', [head, _mnli_row(4, 'U1.', 'U2.', [])])
  task, d = glue.get_task('mnli'), str(mnli_dir)
  assert glue.read_split(task, d, 'train') == [Example('P "q" r.', 'H.', 2, '0')]
  assert [glue.read_split(task, d, s) for s in task.dev_splits] == [
      [Example('M1.', 'M2.', 0, '0')], [Example('X1.', 'X2.', 1, '0')]]
  assert glue.read_split(task, d, 'test_matched') == [Example('T1.', 'T2.', None, '9')]
  assert glue.read_split(task, d, 'test_mismatched') == [
      Example('U1.', 'U2.', None, '4')]
  # AX: optional, from the MNLI directory or glue_data/diagnostic/.
  assert not glue.has_split(task, d, 'diagnostic')
  with pytest.raises(UserError, match='no diagnostic file'):
    glue.read_split(task, d, 'diagnostic')
  _write(tmp_path / 'diagnostic', 'diagnostic.tsv',
         [f'index{T}sentence1{T}sentence2', f'0{T}The cat sat.{T}The cat did not sit.'])
  assert glue.has_split(task, d, 'diagnostic')
  assert glue.read_split(task, d, 'diagnostic') == [
      Example('The cat sat.', 'The cat did not sit.', None, '0')]


@pytest.mark.parametrize('name,labels', [('qnli', ('entailment', 'not_entailment')),
                                         ('rte', ('entailment', 'not_entailment')),
                                         ('wnli', ('0', '1'))])
def test_index_sentence_pair_label_tasks(tmp_path, name, labels):
  head = f'index{T}sentence1{T}sentence2'
  _write(tmp_path, 'train.tsv', [head + f'{T}label', f'0{T}A "b".{T}C.{T}{labels[1]}',
                                 f'1{T}D.{T}E.{T}{labels[0]}'])
  _write(tmp_path, 'test.tsv', [head, f'0{T}F.{T}G.'])
  task = glue.get_task(name)
  assert glue.read_split(task, str(tmp_path), 'train') == [
      Example('A "b".', 'C.', 1, '0'), Example('D.', 'E.', 0, '1')]
  assert glue.read_split(task, str(tmp_path), 'test') == [
      Example('F.', 'G.', None, '0')]


def test_crlf_line_endings_and_carriage_return_inside_text(tmp_path):
  _write(tmp_path, 'train.tsv', [f'sentence{T}label', f'a\rb{T}1', f'c{T}0'],
         newline='\r\n')
  assert glue.read_split(glue.get_task('sst2'), str(tmp_path), 'train') == [
      Example('a\rb', None, 1, '0'), Example('c', None, 0, '1')]


# ---------------------------------------------------------------------------
# Errors: one line naming the file (and line).


def test_missing_directory_and_file(tmp_path):
  task = glue.get_task('rte')
  with pytest.raises(UserError, match='data directory .*nowhere does not exist'):
    glue.read_split(task, str(tmp_path / 'nowhere'), 'train')
  with pytest.raises(UserError, match=r'no dev file: .*dev\.tsv does not exist'):
    glue.read_split(task, str(tmp_path), 'dev')


def test_empty_files(tmp_path):
  task = glue.get_task('rte')
  _write(tmp_path, 'train.tsv', [])
  with pytest.raises(UserError, match=r'train\.tsv is empty'):
    glue.read_split(task, str(tmp_path), 'train')
  _write(tmp_path, 'train.tsv', [f'index{T}sentence1{T}sentence2{T}label'])
  with pytest.raises(UserError, match=r'train\.tsv is empty'):
    glue.read_split(task, str(tmp_path), 'train')
  _write(tmp_path, 'dev.tsv', [
      f'id{T}qid1{T}qid2{T}question1{T}question2{T}is_duplicate', f'1{T}2{T}3{T}q'])
  with pytest.raises(UserError, match=r'dev\.tsv is empty.*1 malformed rows skipped'):
    glue.read_split(glue.get_task('qqp'), str(tmp_path), 'dev')


def test_short_row_names_file_and_line(tmp_path):
  _write(tmp_path, 'train.tsv', [f'gj04{T}1{T}{T}Fine.', f'gj04{T}1{T}A "quoted, row'])
  with pytest.raises(UserError, match=r'train\.tsv:2: 3 columns, expected at least 4'):
    glue.read_split(glue.get_task('cola'), str(tmp_path), 'train')
  _write(tmp_path, 'dev.tsv', [f'index{T}question{T}sentence{T}label',
                               f'0{T}q{T}entailment'])
  with pytest.raises(UserError, match=r'dev\.tsv:2: 3 columns'):
    glue.read_split(glue.get_task('qnli'), str(tmp_path), 'dev')


def test_label_outside_the_task_labels(tmp_path):
  _write(tmp_path, 'train.tsv', [f'index{T}sentence1{T}sentence2{T}label',
                                 f'0{T}a{T}b{T}entailment', f'1{T}a{T}b{T}neutral'])
  with pytest.raises(UserError, match=r"train\.tsv:3: label 'neutral' is not one of .*"
                     r"\['entailment', 'not_entailment'\]"):
    glue.read_split(glue.get_task('rte'), str(tmp_path), 'train')


def test_not_utf8(tmp_path):
  with open(tmp_path / 'train.tsv', 'wb') as f:
    f.write(b'sentence\tlabel\ncaf\xe9\t1\n')
  with pytest.raises(UserError, match=r'train\.tsv is not UTF-8'):
    glue.read_split(glue.get_task('sst2'), str(tmp_path), 'train')


# ---------------------------------------------------------------------------
# Generic tasks.


def test_generic_tsv_pair_with_inferred_labels(tmp_path):
  _write(tmp_path, 'train.tsv', [f'text_a{T}text_b{T}label', f'x "y{T}z{T}10',
                                 f'p{T}q{T}2', f'r{T}s{T}10'])
  _write(tmp_path, 'dev.tsv', [f'label{T}text_b{T}text_a', f'2{T}B{T}A'])
  task = glue.get_task('generic', name='mine', text_columns=('text_a', 'text_b'),
                       data_dir=str(tmp_path))
  assert task.labels == ('2', '10')  # Numeric order.
  assert task.num_labels == 2 and task.is_pair
  assert glue.read_split(task, str(tmp_path), 'train') == [
      Example('x "y', 'z', 1, '0'), Example('p', 'q', 0, '1'),
      Example('r', 's', 1, '2')]
  assert glue.read_split(task, str(tmp_path), 'dev') == [Example('A', 'B', 0, '0')]
  # Labels are inferred on reading when no data_dir was given.
  lazy = glue.generic_task('mine', ('text_a', 'text_b'))
  assert lazy.labels is None
  assert glue.read_split(lazy, str(tmp_path), 'dev') == [Example('A', 'B', 0, '0')]
  assert glue.resolve_labels(lazy, str(tmp_path)).labels == ('2', '10')
  assert not glue.has_split(task, str(tmp_path), 'test')


def test_generic_csv_is_quoted(tmp_path):
  with open(tmp_path / 'train.csv', 'w', newline='') as f:
    w = csv.writer(f)
    w.writerows([['id', 'sentence', 'sentiment'],
                 ['a', 'He said "hi", then left.', 'pos'],
                 ['b', 'Two\nlines', 'neg'],
                 ['c', 'plain', 'pos']])
  with open(tmp_path / 'test.csv', 'w', newline='') as f:
    csv.writer(f).writerows([['index', 'sentence'], ['t7', 'x, "y"']])
  task = glue.generic_task('sent', 'sentence', 'sentiment', labels=('neg', 'pos'),
                           file_format='csv')
  assert glue.read_split(task, str(tmp_path), 'train') == [
      Example('He said "hi", then left.', None, 1, '0'),
      Example('Two\nlines', None, 0, '1'), Example('plain', None, 1, '2')]
  assert glue.read_split(task, str(tmp_path), 'test') == [
      Example('x, "y"', None, None, 't7')]
  with open(tmp_path / 'dev.csv', 'w', newline='') as f:
    csv.writer(f).writerows([['sentence', 'sentiment'], ['two\nlines', 'pos'],
                             ['bad', 'meh']])
  with pytest.raises(UserError, match=r"dev\.csv:4: label 'meh' is not one of "
                     r"the task's labels \['neg', 'pos'\]"):
    glue.read_split(task, str(tmp_path), 'dev')


def test_generic_jsonl_regression(tmp_path):
  _write(tmp_path, 'train.jsonl', [json.dumps({'q': 'a "b"', 'p': 'c', 'y': 0.5}),
                                   '', json.dumps({'q': 'd', 'p': 'e', 'y': 2})])
  _write(tmp_path, 'test.jsonl', [json.dumps({'q': 'f', 'p': 'g', 'index': 42})])
  _write(tmp_path, 'dev.jsonl', [json.dumps({'q': 'x', 'p': 'y', 'y': 'high'})])
  task = glue.generic_task('sim', ('q', 'p'), 'y', regression=True, file_format='jsonl')
  assert task.metrics == ('pearson', 'spearman') and task.score_range is None
  assert glue.read_split(task, str(tmp_path), 'train') == [
      Example('a "b"', 'c', 0.5, '0'), Example('d', 'e', 2.0, '1')]
  assert glue.read_split(task, str(tmp_path), 'test') == [
      Example('f', 'g', None, '42')]
  with pytest.raises(UserError, match=r"dev\.jsonl:1: score 'high' is not a number"):
    glue.read_split(task, str(tmp_path), 'dev')


def test_generic_jsonl_classification_and_errors(tmp_path):
  _write(tmp_path, 'train.jsonl', [json.dumps({'text': 'a', 'label': 1}),
                                   json.dumps({'text': 'b', 'label': 0})])
  task = glue.generic_task('c', 'text', file_format='jsonl', data_dir=str(tmp_path))
  assert task.labels == ('0', '1')
  assert glue.read_split(task, str(tmp_path), 'train') == [
      Example('a', None, 1, '0'), Example('b', None, 0, '1')]
  _write(tmp_path, 'dev.jsonl', [json.dumps({'text': 'a', 'label': 1}), '{oops'])
  with pytest.raises(UserError, match=r'dev\.jsonl:2: bad JSON'):
    glue.read_split(task, str(tmp_path), 'dev')
  _write(tmp_path, 'dev.jsonl', [json.dumps({'txt': 'a', 'label': 1})])
  with pytest.raises(UserError, match=r"dev\.jsonl:1: no field 'text'"):
    glue.read_split(task, str(tmp_path), 'dev')


def test_generic_missing_column_and_bad_options(tmp_path):
  _write(tmp_path, 'train.tsv', [f'text{T}label', f'a{T}0'])
  task = glue.generic_task('t', ('text', 'other'), labels=('0', '1'))
  with pytest.raises(UserError, match=r"train\.tsv: no column 'other' in its header "
                     r'\(columns: text, label\)'):
    glue.read_split(task, str(tmp_path), 'train')
  with pytest.raises(UserError, match='unknown file_format'):
    glue.generic_task('t', 'text', file_format='xlsx')
  with pytest.raises(UserError, match='regression task has no labels'):
    glue.generic_task('t', 'text', labels=('a', 'b'), regression=True)
  with pytest.raises(UserError, match='one or two distinct'):
    glue.generic_task('t', ('a', 'b', 'c'))
  with pytest.raises(UserError, match='metrics must be among'):
    glue.generic_task('t', 'text', metrics=('bleu',))
  _write(tmp_path / 'one', 'train.tsv', [f'text_a{T}label', f'a{T}0', f'b{T}0'])
  with pytest.raises(UserError, match='at least two distinct labels'):
    glue.generic_task('t', data_dir=str(tmp_path / 'one'))


# ---------------------------------------------------------------------------
# Encoding.


def _reference_truncate(a, b, max_num_tokens):
  """run_classifier.py's _truncate_seq_pair, literally."""
  a, b = list(a), list(b)
  while len(a) + len(b) > max_num_tokens:
    if len(a) > len(b):
      a.pop()
    else:
      b.pop()
  return a, b


def test_truncate_seq_pair_matches_bert():
  rng = np.random.default_rng(0)
  for _ in range(300):
    la, lb, m = (int(x) for x in rng.integers(0, 40, 3))
    a, b = np.arange(la), np.arange(100, 100 + lb)
    got = glue.truncate_seq_pair(a, b, m)
    want = _reference_truncate(a, b, m)
    assert [list(got[0]), list(got[1])] == [want[0], want[1]], (la, lb, m)


def test_encode_single_and_pair():
  tok = FakeTokenizer()
  examples = [Example('a b c', None, 1, '0'), Example('d e', 'f g h', 0, '1'),
              Example('i', None, None, '2')]
  out = glue.encode(examples, tok, 10)
  assert set(out) == {'input_ids', 'segment_ids', 'attention_mask', 'label',
                      'example_weight'}
  for key in ('input_ids', 'segment_ids', 'attention_mask'):
    assert out[key].shape == (3, 10) and out[key].dtype == np.int32
  a, b, c = (tok.vocab[w] for w in 'abc')
  d, e, f, g, h = (tok.vocab[w] for w in 'defgh')
  np.testing.assert_array_equal(out['input_ids'], [
      [2, a, b, c, 3, 0, 0, 0, 0, 0],
      [2, d, e, 3, f, g, h, 3, 0, 0],
      [2, tok.vocab['i'], 3, 0, 0, 0, 0, 0, 0, 0]])
  np.testing.assert_array_equal(out['segment_ids'][1], [0, 0, 0, 0, 1, 1, 1, 1, 0, 0])
  np.testing.assert_array_equal(out['segment_ids'][[0, 2]], 0)
  np.testing.assert_array_equal(out['attention_mask'].sum(1), [5, 8, 3])
  assert out['label'].dtype == np.int32 and list(out['label']) == [1, 0, 0]
  assert out['example_weight'].dtype == np.float32
  np.testing.assert_array_equal(out['example_weight'], 1.0)


def test_encode_truncates_long_pair_with_berts_rule():
  tok = FakeTokenizer()
  a_words = [f'a{i}' for i in range(9)]
  b_words = [f'b{i}' for i in range(4)]
  out = glue.encode([Example(' '.join(a_words), ' '.join(b_words), 1, '0')], tok, 12)
  # 9 + 4 tokens into 12 - 3 = 9: A loses its last 4 tokens (it is the longer).
  ids = [tok.vocab[w] for w in a_words[:5]], [tok.vocab[w] for w in b_words]
  np.testing.assert_array_equal(out['input_ids'][0], [2, *ids[0], 3, *ids[1], 3])
  np.testing.assert_array_equal(out['segment_ids'][0], [0] * 7 + [1] * 5)
  np.testing.assert_array_equal(out['attention_mask'][0], 1)
  # Equal lengths: B loses first, then they alternate; a single text keeps L - 2.
  out = glue.encode([Example('a b c d', 'e f g h', 0, '0'),
                     Example('a b c d e f g h', None, 0, '1')], tok, 8)
  v = tok.vocab
  np.testing.assert_array_equal(out['input_ids'][0],
                                [2, v['a'], v['b'], v['c'], 3, v['e'], v['f'], 3])
  np.testing.assert_array_equal(out['input_ids'][1],
                                [2, *(v[w] for w in 'abcdef'), 3])


def test_encode_empty_b_is_single_and_regression_labels():
  tok = FakeTokenizer()
  out = glue.encode([Example('a', '', 2.5, '0'), Example('b', 'c', None, '1')], tok, 6)
  np.testing.assert_array_equal(out['input_ids'][0], [2, tok.vocab['a'], 3, 0, 0, 0])
  np.testing.assert_array_equal(out['segment_ids'][0], 0)
  assert out['label'].dtype == np.float32 and list(out['label']) == [2.5, 0.0]
  out = glue.encode([Example('a', None, None, '0')], tok, 6, regression=True)
  assert out['label'].dtype == np.float32
  with pytest.raises(UserError, match='not a class index'):
    glue.encode([Example('a', None, 0.5, '0')], tok, 6, regression=False)


def test_encode_roberta_pair_format_uses_tokenizer_ids():
  class Roberta(FakeTokenizer):
    cls_id, pad_id, sep_id, unk_id, mask_id = 0, 1, 2, 3, 9

  tok = Roberta()
  out = glue.encode([Example('a b', 'c', 1, '0'), Example('d', None, 0, '1')], tok, 9,
                    pair_format='roberta')
  v = tok.vocab
  np.testing.assert_array_equal(out['input_ids'],
                                [[0, v['a'], v['b'], 2, 2, v['c'], 2, 1, 1],
                                 [0, v['d'], 2, 1, 1, 1, 1, 1, 1]])
  np.testing.assert_array_equal(out['segment_ids'], 0)
  np.testing.assert_array_equal(out['attention_mask'].sum(1), [7, 3])
  out = glue.encode([Example('a b c d e', 'f g h', 0, '0')], tok, 8,
                    pair_format='roberta')
  np.testing.assert_array_equal(out['input_ids'][0],
                                [0, v['a'], v['b'], 2, 2, v['f'], v['g'], 2])


def test_encode_checks_length_and_format():
  tok = FakeTokenizer()
  with pytest.raises(UserError, match='max_seq_length must be an integer >= 5'):
    glue.encode([Example('a', 'b', 0, '0')], tok, 4)
  with pytest.raises(UserError, match='>= 6'):
    glue.encode([Example('a', 'b', 0, '0')], tok, 5, pair_format='roberta')
  assert glue.encode([Example('a', None, 0, '0')], tok, 3)['input_ids'].shape == (1, 3)
  with pytest.raises(UserError, match='unknown pair_format'):
    glue.encode([Example('a', None, 0, '0')], tok, 8, pair_format='xlnet')


def test_encode_with_an_imported_roberta_tokenizer(tmp_path):
  sentences = ['The quick brown fox jumps over the lazy dog.',
               'He said "hi" to me.', 'A man is playing a guitar.'] * 5
  bpe = tokenizers.ByteLevelBPETokenizer()
  bpe.train_from_iterator(sentences, vocab_size=300,
                          special_tokens=['<s>', '<pad>', '</s>', '<unk>'])
  bpe.add_special_tokens(['<mask>'])
  bpe.save_model(str(tmp_path))
  with open(tmp_path / 'vocab.json', 'w') as f:
    json.dump(bpe.get_vocab(), f)
  with open(tmp_path / 'config.json', 'w') as f:
    json.dump({'model_type': 'roberta'}, f)
  tok = hf_tokenizer.load_hf_tokenizer(str(tmp_path))
  assert (tok.cls_id, tok.pad_id, tok.sep_id) == (0, 1, 2)  # <s>, <pad>, </s>.
  a, b = tok.encode('He said "hi" to me.'), tok.encode('A man.')
  out = glue.encode([Example('He said "hi" to me.', 'A man.', 0, '0')], tok, 32,
                    pair_format='roberta')
  n = len(a) + len(b) + 4
  np.testing.assert_array_equal(out['input_ids'][0, :n], [0, *a, 2, 2, *b, 2])
  np.testing.assert_array_equal(out['input_ids'][0, n:], 1)
  out = glue.encode([Example('He said "hi" to me.', 'A man.', 0, '0')], tok, 32)
  np.testing.assert_array_equal(out['input_ids'][0, :n - 1], [0, *a, 2, *b, 2])
  assert out['segment_ids'][0, len(a) + 2:n - 1].tolist() == [1] * (len(b) + 1)


def test_pad_to_batches_sees_every_example_once():
  tok = FakeTokenizer()
  examples = [Example(f'w{i}', None, i % 2, str(i)) for i in range(7)]
  arrays = glue.encode(examples, tok, 4)
  batches = glue.pad_to_batches(arrays, 3)
  assert len(batches) == 3
  for batch in batches:
    assert {k: v.shape[0] for k, v in batch.items()} == dict.fromkeys(arrays, 3)
  weights = np.concatenate([b['example_weight'] for b in batches])
  np.testing.assert_array_equal(weights, [1] * 7 + [0, 0])
  ids = np.concatenate([b['input_ids'] for b in batches])
  np.testing.assert_array_equal(ids[:7], arrays['input_ids'])
  assert (np.concatenate([b['attention_mask'] for b in batches]).sum(1) > 0).all()
  np.testing.assert_array_equal(batches[-1]['label'][1:], 0)
  assert len(glue.pad_to_batches(arrays, 7)) == 1
  assert glue.pad_to_batches(glue.encode([], tok, 4), 3) == []
  with pytest.raises(UserError, match='batch_size must be a positive integer'):
    glue.pad_to_batches(arrays, 0)


# ---------------------------------------------------------------------------
# Submission files.


def test_write_predictions_per_task(tmp_path):
  out = str(tmp_path / 'submission')
  path = glue.write_predictions(glue.get_task('mnli'), 'test_matched', ['0', '1', '2'],
                                np.array([1, 0, 2]), out)
  assert path == os.path.join(out, 'MNLI-m.tsv')
  assert _read_lines(path) == ['index\tprediction', '0\tentailment',
                               '1\tcontradiction', '2\tneutral', '']
  path = glue.write_predictions(glue.get_task('mnli'), 'diagnostic', ['0'],
                                np.array([[0.1, 0.2, 0.9]]), out)  # Logits.
  assert os.path.basename(path) == 'AX.tsv'
  assert _read_lines(path)[1] == '0\tneutral'
  path = glue.write_predictions(glue.get_task('CoLA'), 'test', ['0', '1'], [1, 0], out)
  assert _read_lines(path) == ['index\tprediction', '0\t1', '1\t0', '']
  path = glue.write_predictions(glue.get_task('qnli'), 'test', ['5'], [1], out)
  assert _read_lines(path)[1] == '5\tnot_entailment'
  path = glue.write_predictions(glue.get_task('qnli'), 'test', None, [0, 1], out)
  assert _read_lines(path)[1:3] == ['0\tentailment', '1\tnot_entailment']
  path = glue.write_predictions(glue.get_task('sts-b'), 'test', ['0', '1', '2'],
                                np.array([-0.3, 2.25, 5.7], np.float32), out)
  assert os.path.basename(path) == 'STS-B.tsv'
  assert _read_lines(path) == ['index\tprediction', '0\t0.0000', '1\t2.2500',
                               '2\t5.0000', '']
  assert sorted(os.listdir(out)) == ['AX.tsv', 'CoLA.tsv', 'MNLI-m.tsv', 'QNLI.tsv',
                                     'STS-B.tsv']


def test_write_predictions_errors(tmp_path):
  task = glue.get_task('rte')
  with pytest.raises(UserError, match='split dev is not a test split'):
    glue.write_predictions(task, 'dev', ['0'], [0], str(tmp_path))
  with pytest.raises(UserError, match='2 indices but predictions of shape'):
    glue.write_predictions(task, 'test', ['0', '1'], [0], str(tmp_path))
  with pytest.raises(UserError, match=r'class ids in \[0, 2\)'):
    glue.write_predictions(task, 'test', ['0'], [2], str(tmp_path))
  assert not os.listdir(tmp_path)
