"""TinyBERT's data augmentation: replacement statistics, candidates from a masked LM,
train_aug files in every task layout, and the launch.augment command."""

import json
import os
import re
import subprocess
import sys

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from common.data import augmentation
from common.data import glue
from common.data import tokenizer as tokenizer_lib
from common.errors import UserError
from common.interop import hf_checkpoint
from common.model import mlm_model
from common.model import word_candidates
from tests.conftest import REPO


def test_words_are_replaced_with_probability_p_and_punctuation_is_kept():
  text = 'one, two three (four) five six-seven eight nine ten.'
  runs, is_word = augmentation.split_words(text)
  assert ''.join(runs) == text and sum(is_word) == 10
  words = [r for r, w in zip(runs, is_word) if w]
  options = [[f'{w}_{k}' for k in range(15)] for w in words]
  variants = augmentation.augmented_texts(text, lambda t: options, 400, 0.4,
                                          np.random.default_rng(0))
  assert variants[0] == text and len(set(variants)) == len(variants) == 401
  changed = []
  for variant in variants[1:]:
    v_runs, v_is_word = augmentation.split_words(variant)
    assert [r for r, w in zip(v_runs, v_is_word) if not w] == [
        r for r, w in zip(runs, is_word) if not w]
    new = [r for r, w in zip(v_runs, v_is_word) if w]
    assert all(n == o or n in opts for n, o, opts in zip(new, words, options))
    changed += [n != o for n, o in zip(new, words)]
  assert abs(np.mean(changed) - 0.4) < 0.02
  # Words without candidates never change; a text without any gives itself only.
  assert augmentation.augmented_texts('a b', lambda t: [[], []], 5, 0.4,
                                      np.random.default_rng(0)) == ['a b']


def _rewrite(texts):
  return [texts, [t.upper() if t else t for t in texts]]


@pytest.mark.parametrize('task_name, lines', [
    ('cola', ['gj04\t1\t\tThe book is "red".', 'gj04\t0\t*\tBook the red is.']),
    ('mrpc', ['Quality\t#1 ID\t#2 ID\t#1 String\t#2 String',
              '1\t11\t12\tHe said "yes".\tHe agreed.',
              '0\t13\t14\tIt rained.\tThe sun shone.']),
])
def test_train_aug_keeps_the_layout_of_train(task_name, lines, tmp_path):
  task = glue.get_task(task_name)
  name = task.split('train').files[0]
  (tmp_path / name).write_text('\n'.join(lines) + '\n')
  path, rows = glue.write_rewritten_train(task, str(tmp_path), _rewrite)
  assert os.path.basename(path) == name.replace('train', 'train_aug') and rows == 4
  original = glue.read_split(task, str(tmp_path), 'train')
  augmented = glue.read_split(task, str(tmp_path), glue.AUGMENTED_TRAIN)
  assert [e.label for e in augmented] == [e.label for e in original for _ in range(2)]
  assert augmented[1].text_a == original[0].text_a.upper()
  if task.is_pair:
    assert augmented[1].text_b == original[0].text_b.upper()
  with pytest.raises(UserError, match='already exists'):
    glue.write_rewritten_train(task, str(tmp_path), _rewrite)


def test_train_aug_of_a_jsonl_task_keeps_other_fields(tmp_path):
  task = glue.generic_task('g', text_columns=('q', 'p'), label_column='y',
                           labels=('no', 'yes'), file_format='jsonl')
  with open(tmp_path / 'train.jsonl', 'w') as f:
    f.write(json.dumps({'q': 'a b', 'p': 'c', 'y': 'yes', 'id': 7}) + '\n')
  glue.write_rewritten_train(task, str(tmp_path), _rewrite)
  with open(tmp_path / 'train_aug.jsonl') as f:
    rows = [json.loads(line) for line in f]
  assert rows == [{'q': 'a b', 'p': 'c', 'y': 'yes', 'id': 7},
                  {'q': 'A B', 'p': 'C', 'y': 'yes', 'id': 7}]


@pytest.fixture(scope='module')
def mlm_workdir(tiny_bert_workdir):
  return tiny_bert_workdir


def test_one_piece_words_get_the_masked_lms_top_words(mlm_workdir):
  model_config, params, _, _, _ = hf_checkpoint.load_ours(mlm_workdir)
  tokenizer = tokenizer_lib.load_any(tokenizer_lib.workdir_tokenizer(mlm_workdir))
  table = word_candidates.WordCandidates(model_config, params, tokenizer,
                                         num_candidates=5, batch_size=4)
  # Words of the tokenizer's own vocabulary: one piece each.
  vocab = [tokenizer.decode([i]) for i in range(5, tokenizer.vocab_size)]
  words = [w for w in vocab if w.isalpha() and len(tokenizer.encode(w)) == 1][:6]
  text = ' '.join(words) + ' ' + 'zqxjkv'  # The last: several pieces.
  table.add([text])
  options = table.table[text]
  assert len(options) == 7 and all(len(o) == 5 for o in options)
  assert all(w not in o for w, o in zip(words, options))
  # Independently: the MLM model's logits at the masked third word.
  ids = [tokenizer.cls_id] + [int(i) for w in text.split() for i in tokenizer.encode(w)]
  ids.append(tokenizer.sep_id)
  ids[3] = tokenizer.mask_id
  config = ml_collections.ConfigDict(model_config)
  config.scan_layers = False
  model = mlm_model.MaskedLMModel(config, sentence_classes=2)
  batch = {'input_ids': jnp.asarray([ids]), 'segment_ids': jnp.zeros((1, len(ids)), int),
           'attention_mask': jnp.ones((1, len(ids)), int),
           'masked_positions': jnp.asarray([[3]])}
  logits = np.asarray(model.apply({'params': params}, batch)['mlm_logits'][0, 0])
  original = int(tokenizer.encode(words[2])[0])
  allowed = [i for i in np.argsort(-logits)
             if i >= 5 and i != original and tokenizer.is_word_start[i]
             and re.fullmatch(r'\w+', tokenizer.decode([int(i)]).strip())]
  assert options[2] == [tokenizer.decode([int(i)]).strip() for i in allowed[:5]]


def test_the_command_writes_train_aug_and_refuses_to_overwrite(mlm_workdir, tmp_path):
  from tests.test_finetune import write_keyword_task  # pylint: disable=g-import-not-at-top
  write_keyword_task(str(tmp_path))
  argv = [sys.executable, '-m', 'launch.augment', f'--data_dir={tmp_path}',
          f'--model={mlm_workdir}', '--num_augmented=3']
  proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr
  assert 'from 256 examples' in proc.stdout
  task = glue.resolve_labels(glue.generic_task(
      'generic', text_columns=('sentence',), label_column='label'), str(tmp_path))
  augmented = glue.read_split(task, str(tmp_path), glue.AUGMENTED_TRAIN)
  assert 256 * 2 < len(augmented) <= 256 * 4
  before = (tmp_path / 'train_aug.tsv').read_bytes()
  proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2
  errors = [l for l in proc.stderr.splitlines() if l.startswith('error:')]
  assert len(errors) == 1 and 'already exists' in errors[0]
  assert (tmp_path / 'train_aug.tsv').read_bytes() == before
  missing = [*argv[:3], f'--data_dir={tmp_path / "missing"}', *argv[4:]]
  proc = subprocess.run(missing, cwd=REPO, capture_output=True, text=True, timeout=300)
  errors = [l for l in proc.stderr.splitlines() if l.startswith('error:')]
  assert proc.returncode == 2 and errors == [f'error: --data_dir {tmp_path / "missing"} '
                                             'does not exist']
