"""TinyBERT's task distillation: a fine-tuned classifier teaches a smaller student in two
stages (intermediate layers, then predictions), through launch.finetune's code."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common.errors import UserError
from common.interop import hf_checkpoint
from common.interop import model_dir
from common.train import finetuning
from common.train import frozen as frozen_lib
from common.train import task_distillation
from tests import conftest
from tests.conftest import REPO
from tests.test_finetune import keyword_task  # pylint: disable=unused-import (a fixture)
from tests.test_finetune import tiny_finetuning_config


@pytest.fixture(scope='module')
def teacher(tmp_path_factory, keyword_task):
  """A tiny classifier fine-tuned from random on the keyword task: the teacher."""
  workdir = str(tmp_path_factory.mktemp('teacher'))
  results = finetuning.finetune(tiny_finetuning_config(keyword_task), workdir)
  assert results['best']['accuracy'] > 0.9
  return workdir


def student_config(keyword_task, teacher_dir, **model):
  """A narrower, shallower student of the teacher, from random, reading its tokenizer."""
  config = tiny_finetuning_config(keyword_task)
  best = os.path.join(teacher_dir, 'seed_0', 'best')
  config.model.update(num_layers=1, hidden_size=32, intermediate_size=64, **model)
  config.tokenizer.path = os.path.join(best, 'tokenizer.model')
  config.teacher.update(path=teacher_dir, intermediate_epochs=3.0,
                        intermediate_learning_rate=3e-3)
  config.epochs = 8.0
  return config


def _batch(seq_len=32, batch=4, seed=0):
  rng = np.random.default_rng(seed)
  ids = rng.integers(5, 600, (batch, seq_len)).astype(np.int32)
  mask = np.ones((batch, seq_len), np.int32)
  mask[:, seq_len // 2:] = 0  # Padding, which no term may count.
  return {'input_ids': jnp.asarray(ids), 'segment_ids': jnp.zeros_like(ids),
          'attention_mask': jnp.asarray(mask), 'label': jnp.asarray([0, 1, 1, 0]),
          'example_weight': jnp.ones((batch,), jnp.float32)}


def test_each_stage_is_at_its_minimum_when_the_student_is_the_teacher(teacher,
                                                                       keyword_task):
  best = os.path.join(teacher, 'seed_0', 'best')
  spec = task_distillation.read_teacher(teacher, 'generic', 2)
  assert spec.path == best and spec.num_labels == 2 and spec.head_activation == 'tanh'
  config = tiny_finetuning_config(keyword_task)
  config.model.update(spec.model_config)
  config.teacher.update(path=teacher, hidden_projection='none', layer_map='spread')
  values = frozen_lib.load_values(frozen_lib.resolve(
      frozen_lib.FrozenParams('teacher', best, None)))
  params = model_dir.set_layer_layout(values, True)
  batch = _batch()
  rng = jax.random.key(0)
  objective = task_distillation.task_distillation(config, spec, 'intermediate', 'tanh')
  loss, metrics = objective.loss_fn(params, batch, rng, True, frozen=params)
  assert float(loss) == 0.0
  assert set(metrics) >= {'attention_mse', 'embedding_mse', 'hidden_mse'}
  objective = task_distillation.task_distillation(config, spec, 'prediction', 'tanh')
  loss, metrics = objective.loss_fn(params, batch, rng, True, frozen=params)
  assert abs(float(loss)) < 1e-6
  agreement = metrics['teacher_agreement']
  assert float(agreement[0]) == float(agreement[1]) == 4
  # A different student is not at the minimum, and its prediction loss is T^2 KL.
  other = jax.tree.map(lambda x: x * 1.5, params)
  loss, _ = objective.loss_fn(other, batch, rng, True, frozen=params)
  s = objective.model.apply({'params': other}, batch)
  t = objective.model.apply({'params': params}, batch)
  kl = jnp.sum(jax.nn.softmax(t) * (jax.nn.log_softmax(t) - jax.nn.log_softmax(s)), -1)
  np.testing.assert_allclose(float(loss), float(jnp.mean(kl)), rtol=1e-5)


def test_a_student_learns_the_task_from_its_teacher_and_exports(teacher, keyword_task,
                                                                 tmp_path):
  workdir = str(tmp_path / 'student')
  fingerprint = frozen_lib.fingerprint([os.path.join(teacher, 'seed_0', 'best')])
  results = finetuning.finetune(student_config(keyword_task, teacher), workdir)
  assert results['best']['accuracy'] > 0.85, results
  run = os.path.join(workdir, 'seed_0')
  # Stage 1: the layer distances to the teacher fell on the dev set.
  with open(os.path.join(run, 'intermediate', 'metrics.jsonl')) as f:
    evals = [r for r in map(json.loads, f) if 'eval_attention_mse' in r]
  assert evals[-1]['eval_attention_mse'] < evals[0]['eval_attention_mse']
  assert evals[-1]['eval_hidden_mse'] < evals[0]['eval_hidden_mse']
  # Stage 2 starts from stage 1's encoder and records the same untouched teacher.
  for stage in (run, os.path.join(run, 'intermediate')):
    with open(os.path.join(stage, 'frozen.json')) as f:
      assert json.load(f)['teacher']['fingerprint'] == fingerprint
  with open(os.path.join(run, 'summary.json')) as f:
    assert 'intermediate-layer distillation' in json.load(f)['init_from']
  with open(os.path.join(run, 'metrics.jsonl')) as f:
    train = [r for r in map(json.loads, f) if 'soft_loss' in r]
  assert train[-1]['soft_loss'] < train[0]['soft_loss']
  assert train[-1]['teacher_agreement'] > 0.85
  assert frozen_lib.fingerprint([os.path.join(teacher, 'seed_0', 'best')]) == fingerprint
  # Started again, nothing is trained again.
  again = finetuning.finetune(student_config(keyword_task, teacher), workdir)
  assert again['best']['score'] == results['best']['score']

  # The student exports as BertForSequenceClassification, with the same logits.
  torch, transformers = conftest.import_hf()
  best = os.path.join(run, 'best')
  out = hf_checkpoint.export_dir(best, str(tmp_path / 'hf'))
  assert out['architectures'] == {'.': 'BertForSequenceClassification'}
  hf_model = transformers.BertForSequenceClassification.from_pretrained(
      str(tmp_path / 'hf')).eval()
  model_config, params, source = model_dir.read(best)
  from common.model import classifier  # pylint: disable=g-import-not-at-top
  import ml_collections  # pylint: disable=g-import-not-at-top
  model = classifier.SequenceClassifier(ml_collections.ConfigDict(
      model_dir.model_fields(model_config)), source['num_labels'])
  batch = _batch()
  ours = np.asarray(model.apply({'params': model_dir.set_layer_layout(
      params, model_config.get('scan_layers', True))}, batch))
  with torch.no_grad():
    theirs = hf_model(input_ids=torch.tensor(np.asarray(batch['input_ids']),
                                             dtype=torch.long),
                      attention_mask=torch.tensor(np.asarray(batch['attention_mask'])),
                      token_type_ids=torch.zeros((4, 32), dtype=torch.long)).logits.numpy()
  np.testing.assert_allclose(ours, theirs, atol=1e-4)


def test_teachers_that_cannot_teach_the_task_are_refused(teacher, keyword_task,
                                                         tmp_path):
  with pytest.raises(UserError, match='fine-tune a teacher first'):
    task_distillation.read_teacher(str(tmp_path), 'generic', 2)
  with pytest.raises(UserError, match='was fine-tuned on task .generic., not .sst2.'):
    task_distillation.read_teacher(teacher, 'sst2', 2)
  with pytest.raises(UserError, match='has 2 outputs but task generic 3'):
    task_distillation.read_teacher(teacher, 'generic', 3)
  # A student with its own tokenizer cannot read the teacher's ids.
  config = student_config(keyword_task, teacher)
  config.tokenizer.path = ''  # A tokenizer of its own: 500 pieces, trained anew.
  config.model.vocab_size = 500
  workdir = tmp_path / 'own_tokenizer'
  with pytest.raises(UserError, match="is not the teacher's"):
    finetuning.finetune(config, str(workdir))
  assert not workdir.exists()


def test_the_command_line_refuses_a_pretraining_teacher_with_one_line(keyword_task,
                                                                     tmp_path):
  pretraining_run = tmp_path / 'pretraining'
  (pretraining_run / 'checkpoints').mkdir(parents=True)
  workdir = tmp_path / 'run'
  argv = [sys.executable, '-m', 'launch.finetune', '--config=experiments/glue.py:generic',
          f'--config.data_dir={keyword_task}', '--config.init_from=random',
          f'--config.teacher.path={pretraining_run}', f'--workdir={workdir}']
  proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2, proc.stderr
  errors = [l for l in proc.stderr.splitlines() if l.startswith('error:')]
  assert len(errors) == 1 and 'fine-tune a teacher first' in errors[0], proc.stderr
  assert not workdir.exists()
