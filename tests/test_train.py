"""End to end: a tiny pretraining learns, leaves its files, and resumes exactly."""

import json
import os

import pytest

from common.train import run_log
from common.train import pretraining
from tests.conftest import tiny_config


@pytest.fixture(scope='module')
def bert_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('bert'))
  config = tiny_config('bert')
  config.train.steps = 120
  return workdir, pretraining.pretrain(config, workdir)


def test_tiny_bert_learns_on_heldout_data(bert_run):
  _, summary = bert_run
  first, last = summary['first_eval'], summary['eval']
  assert first['step'] == 0
  # A random model guesses ~1/600 of the masked tokens; 120 steps of a 2-layer model
  # learn at least the word distribution (the most frequent piece is ~5%).
  assert last['mlm_accuracy'] > max(0.04, 10 * first['eval_mlm_accuracy'])
  assert last['mlm_loss'] < first['eval_mlm_loss'] - 1.0
  assert 0.0 <= last['nsp_accuracy'] <= 1.0
  # The word-order probe runs with every evaluation (common/data/word_order_probe.py).
  assert 0.0 <= last['shuffled_context_mlm_accuracy'] <= 1.0
  assert 'eval_shuffled_context_mlm_accuracy' in first


def test_run_leaves_its_files(bert_run):
  workdir, summary = bert_run
  for name in ('metrics.jsonl', 'summary.json', 'loss_curve.png', 'tokenizer.model',
               'config.json'):
    assert os.path.isfile(os.path.join(workdir, name)), name
  assert os.listdir(os.path.join(workdir, 'tensorboard'))
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['100', '120', '80']
  records = run_log.read_metrics(os.path.join(workdir, 'metrics.jsonl'))
  train = [r for r in records if 'loss' in r]
  assert [r['step'] for r in train] == list(range(10, 121, 10))
  for key in ('learning_rate', 'tokens_per_sec', 'mlm_accuracy', 'nsp_accuracy'):
    assert all(key in r for r in train), key
  with open(os.path.join(workdir, 'summary.json')) as f:
    saved = json.load(f)
  assert saved['parameters'] == summary['parameters'] > 0
  assert saved['step'] == 120 and saved['wall_time_sec'] > 0


def test_resume_after_stop_matches_uninterrupted_run(tmp_path):
  config = tiny_config('roberta')
  config.train.update(steps=40, log_every=5, eval_every=20, checkpoint_every=10)
  straight = pretraining.pretrain(config, str(tmp_path / 'straight'))
  resumed_dir = str(tmp_path / 'resumed')
  pretraining.pretrain(config, resumed_dir, stop_after=25)  # stops at 25, checkpointed.
  resumed = pretraining.pretrain(config, resumed_dir)
  assert resumed['step'] == straight['step'] == 40
  lines = lambda d: run_log.read_metrics(os.path.join(d, 'metrics.jsonl'))
  a, b = lines(str(tmp_path / 'straight')), lines(resumed_dir)
  drop = ('tokens_per_sec',)
  strip = lambda rs: [{k: v for k, v in r.items() if k not in drop} for r in rs]
  assert strip(a) == strip(b)
  assert straight['eval'] == resumed['eval']
