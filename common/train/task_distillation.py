"""TinyBERT's task distillation: a fine-tuned classifier teaches a smaller one.

Jiao et al. 2020, "TinyBERT: Distilling BERT for Natural Language Understanding"
(arXiv:1909.10351), sections 3.3 and 4.1; huawei-noah/Pretrained-Language-Model
TinyBERT/task_distill.py. After general distillation (experiments/tinybert.py), the
student learns a task from a teacher fine-tuned on it (a `launch.finetune` result),
in two stages over the task's (optionally augmented, common/data/augmentation.py)
training data, each one run of the generic loop:

1. 'intermediate': Transformer-layer distillation as in the general stage, the
   attention-score MSE of each mapped layer plus the hidden-state MSE of the
   embedding output and each mapped layer through the learned projection
   (common/train/distillation.py `layer_losses`); the classifier is not trained.
   The reference's first command: 10 epochs (`--num_train_epochs 10`) at its default
   rate 5e-5.
2. 'prediction': prediction-layer distillation (eq. 10), the soft cross-entropy of
   the student's logits against the teacher's at temperature T (T = 1 in the
   reference; taken as T^2 KL(teacher || student), which differs from the soft
   cross-entropy by the teacher's entropy, a constant: the same gradient), or the
   MSE of the two scores for a regression task (STS-B, the reference's `loss_mse`).
   No gold labels enter the loss. The reference's second command: `--pred_distill`,
   3 epochs at 3e-5. Dev sets are scored against the gold labels, as any
   fine-tuning, and the best is kept as a classifier model directory that exports
   as `BertForSequenceClassification`.

The teacher rides in the train state as frozen parameters (common/train/frozen.py):
recorded in each stage's `frozen.json` and checked on resume.
"""

import dataclasses
import json
import os

import jax.numpy as jnp
import ml_collections

from common.data import tokenizer as tokenizer_lib
from common.errors import UserError
from common.interop import model_dir
from common.model import distillation_model
from common.model import encoder as encoder_lib
from common.train import distillation
from common.train import flops as flops_lib
from common.train import metrics as metrics_lib
from common.train import sequence_classification
from common.train.frozen import FrozenParams
from common.train.objectives import Objective

STAGES = ('intermediate', 'prediction')
# The objective name recorded in an intermediate stage's config.json: its params are
# a classifier's (and the projection), its encoder the next stage's start.
INTERMEDIATE = 'task_distillation_intermediate'
CLASSIFIER_OBJECTIVE = 'classification'


@dataclasses.dataclass(frozen=True)
class TaskTeacher:
  """A fine-tuned classifier, read but not loaded.

  Attributes:
    path: its model directory (a fine-tuning run's `best/`).
    model_config: the `config.model` fields of its encoder.
    num_labels: its outputs (1 = regression).
    head_activation: its pooled head's activation.
    task: the task it was fine-tuned on.
    tokenizer_path: its tokenizer file.
  """
  path: str
  model_config: dict
  num_labels: int
  head_activation: str
  task: str
  tokenizer_path: str


def _finetuned_best(path: str) -> str:
  """The best run's model directory of a `launch.finetune` workdir (results.json)."""
  with open(os.path.join(path, 'results.json'), encoding='utf-8') as f:
    results = json.load(f)
  run = results.get('best', {}).get('run')
  if not run:
    raise UserError(f'teacher {path}: its results.json has no scored run')
  return os.path.join(path, run, 'best')


def read_teacher(path: str, task_name: str, num_labels: int) -> TaskTeacher:
  """The fine-tuned teacher at `path` for a task; UserError (one line) if it is none.

  Args:
    path: a classifier model directory (`<finetune workdir>/<run>/best`) or a
      `launch.finetune` workdir (its best run's).
    task_name: the task being distilled; the teacher must have been fine-tuned on it.
    num_labels: the task's outputs.
  """
  path = os.path.abspath(path)
  if not os.path.exists(path):
    raise UserError(f'teacher {path} does not exist')
  if os.path.isfile(os.path.join(path, 'results.json')):
    path = _finetuned_best(path)
  how = (f'fine-tune a teacher first: python -m launch.finetune '
         f'--config=experiments/glue.py:{task_name} --config.init_from=<encoder> '
         '--config.data_dir=<task dir> --workdir=DIR, then --config.teacher.path=DIR')
  if not model_dir.is_model_dir(path):
    raise UserError(f'teacher {path} is not a fine-tuned classifier (a launch.finetune '
                    f'workdir or its <run>/best model directory); {how}')
  model_config = model_dir.read_json(os.path.join(path, model_dir.MODEL_CONFIG))
  source_path = os.path.join(path, model_dir.SOURCE)
  source = model_dir.read_json(source_path) if os.path.exists(source_path) else {}
  if source.get('objective') != CLASSIFIER_OBJECTIVE:
    raise UserError(f'teacher {path} was trained by objective '
                    f'{source.get("objective")!r}, not fine-tuned on a task; {how}')
  if source.get('task') != task_name:
    raise UserError(f'teacher {path} was fine-tuned on task {source.get("task")!r}, '
                    f'not {task_name!r}')
  if source.get('num_labels') != num_labels:
    raise UserError(f'teacher {path} has {source.get("num_labels")} outputs but task '
                    f'{task_name} {num_labels}')
  tokenizer_path = tokenizer_lib.workdir_tokenizer(path)
  if not tokenizer_path:
    raise UserError(f'teacher {path} has no tokenizer file: the student must read its '
                    'token ids')
  return TaskTeacher(path, model_dir.model_fields(model_config), num_labels,
                     source.get('head_activation', 'tanh'), task_name, tokenizer_path)


def check_student(teacher: TaskTeacher, model_config, tokenizer_path: str,
                  projection: str, seq_len: int) -> None:
  """UserError when the student cannot learn from the teacher as the stages ask."""
  if (distillation.tokenizer_bytes(tokenizer_path)
      != distillation.tokenizer_bytes(teacher.tokenizer_path)):
    raise UserError(f'the student\'s tokenizer {tokenizer_path} is not the teacher\'s '
                    f'({teacher.tokenizer_path}); distil a student that reads the '
                    "teacher's token ids (a TinyBERT general distillation of it)")
  if model_config.vocab_size != teacher.model_config.get('vocab_size'):
    raise UserError(f'the student has a vocabulary of {model_config.vocab_size} and '
                    f'teacher {teacher.path} {teacher.model_config.get("vocab_size")}')
  student = encoder_lib.EncoderSpec.from_config(model_config)
  t_spec = _teacher_spec(teacher, model_config)
  distillation.check_pairing(
      student, t_spec, teacher.path,
      distillation.Weights(ce=1.0, mlm=0.0, cos=0.0, attention=1.0, hidden=1.0,
                           temperature=1.0, positions='all'),
      projection, seq_len)


def _teacher_spec(teacher: TaskTeacher, student_config) -> encoder_lib.EncoderSpec:
  return distillation.teacher_spec(
      distillation.Teacher(teacher.path, teacher.model_config, CLASSIFIER_OBJECTIVE,
                           teacher.tokenizer_path), student_config)


def _teacher_module(teacher: TaskTeacher, student_config):
  return distillation_model.DistillationClassifier(
      _teacher_spec(teacher, student_config), num_labels=teacher.num_labels,
      head_activation=teacher.head_activation)


def task_distillation(config, teacher: TaskTeacher, stage: str,
                      head_activation: str) -> Objective:
  """The objective of one stage of distilling `teacher` into `config.model`.

  Args:
    config: the fine-tuning ConfigDict (`model`, `teacher.layer_map`,
      `teacher.hidden_projection`, `objective.distill_temperature`).
    teacher: the fine-tuned teacher (`read_teacher`).
    stage: 'intermediate' or 'prediction' (module docstring).
    head_activation: the student's pooled head activation.
  """
  if stage not in STAGES:
    raise UserError(f'task distillation stage {stage!r} is unknown; {" or ".join(STAGES)}')
  regression = teacher.num_labels == 1
  s_spec = encoder_lib.EncoderSpec.from_config(config.model)
  t_spec = _teacher_spec(teacher, config.model)
  projection = config.teacher.hidden_projection if stage == 'intermediate' else 'none'
  width = t_spec.hidden_size if projection != 'none' else 0
  student = distillation_model.DistillationClassifier(
      config.model, num_labels=teacher.num_labels, head_activation=head_activation,
      projection_width=width,
      projection_count=1 if projection == 'shared' else s_spec.num_layers + 1)
  teacher_module = _teacher_module(teacher, config.model)
  mapping = distillation.layer_map(config.teacher.layer_map, s_spec.num_layers,
                                   t_spec.num_layers)
  temperature = config.objective.distill_temperature
  if not temperature > 0:
    raise UserError(f'objective.distill_temperature must be > 0, got {temperature!r}')

  def intermediate_loss(params, batch, rng, deterministic, frozen):
    _, s_vars = student.apply({'params': params}, batch, deterministic=deterministic,
                              rngs={'dropout': rng}, mutable=['intermediates'])
    _, t_vars = teacher_module.apply({'params': frozen}, batch, deterministic=True,
                                     mutable=['intermediates'])
    project = None
    if width:
      project = lambda h, i: student.apply({'params': params}, h, i, method='project')
    terms = distillation.layer_losses(s_vars, t_vars, s_spec, t_spec, mapping,
                                      batch['attention_mask'], project)
    loss = terms['attention_mse'] + terms['embedding_mse'] + terms['hidden_mse']
    return loss, {'loss': metrics_lib.scalar(loss),
                  **{k: metrics_lib.scalar(v) for k, v in terms.items()}}

  def prediction_loss(params, batch, rng, deterministic, frozen):
    s_logits_BxK = student.apply({'params': params}, batch, deterministic=deterministic,
                                 rngs={'dropout': rng}).astype(jnp.float32)
    t_logits_BxK = teacher_module.apply({'params': frozen}, batch,
                                        deterministic=True).astype(jnp.float32)
    weights_B = batch['example_weight']
    if regression:
      soft_sum, count = metrics_lib.weighted(
          (s_logits_BxK[:, 0] - t_logits_BxK[:, 0]) ** 2, weights_B)
    else:
      soft_sum, count = distillation.soft_target_loss(s_logits_BxK, t_logits_BxK,
                                                      weights_B, temperature)
    loss = soft_sum / jnp.maximum(count, 1.0)
    _, gold = sequence_classification.supervised_loss(s_logits_BxK, batch, regression)
    _, teacher_gold = sequence_classification.supervised_loss(t_logits_BxK, batch,
                                                              regression)
    metrics = {'loss': metrics_lib.scalar(loss), 'soft_loss': (soft_sum, count), **gold,
               **{f'teacher_{k}': v for k, v in teacher_gold.items()}}
    if not regression:
      metrics['teacher_agreement'] = metrics_lib.weighted(
          jnp.argmax(s_logits_BxK, -1) == jnp.argmax(t_logits_BxK, -1), weights_B)
    return loss, metrics

  def predict_fn(params, batch):
    return sequence_classification.predictions(
        student.apply({'params': params}, batch, deterministic=True), regression)

  seq_len = config.data.max_seq_length
  teacher_config = dict(dataclasses.asdict(t_spec))
  flops = (sequence_classification.head_flops_per_token(config, teacher.num_labels) +
           flops_lib.encoder_flops_per_token(ml_collections.ConfigDict(teacher_config),
                                             seq_len) / 3)
  if width:
    flops += 6.0 * (s_spec.num_layers + 1) * s_spec.hidden_size * width
  frozen = FrozenParams('teacher', teacher.path, teacher_module)
  if stage == 'intermediate':
    return Objective(INTERMEDIATE, student, intermediate_loss,
                     sequence_classification.BATCH_KEYS, flops, frozen=frozen)
  return Objective(CLASSIFIER_OBJECTIVE, student, prediction_loss,
                   sequence_classification.BATCH_KEYS, flops, frozen=frozen,
                   predict_fn=predict_fn)
