"""Fine-tuning: a task's data and a starting encoder, fed to the generic loop, per seed.

`finetune(config, workdir)` is what `launch.finetune` runs (experiments/glue.py):

1. The starting point (`config.init_from`): a pretraining workdir of any recipe (its
   latest checkpoint; ELECTRA: the discriminator), a model directory (an HF import, an
   exported or fine-tuned model), a Hugging Face model directory (imported into the
   workdir first), or 'random', a freshly initialised encoder of `config.model`: the
   control every comparison needs. The encoder's size and tokenizer come with the
   starting point; the task head starts fresh (and the pooler too, where the start
   has none), named in the log.
2. The task (common/data/glue.py): the GLUE TSV layouts or a generic TSV/CSV/JSONL
   task (a directory with task.json, as the probe suite writes, or `config.task.*`).
3. For each seed (and each learning rate of a sweep), `loop.run` trains the
   `sequence_classification` objective in `<workdir>/<run>/`, with layer-wise
   learning-rate decay when `optimizer.layer_decay` < 1, evaluates every dev split
   with the task's GLUE metrics, keeps the parameters of the best dev evaluation as a
   model directory (`<run>/best/`, exportable with launch.convert) and writes the
   test split's predictions in the GLUE submission format at that point.
4. `results.json`: every run's best dev metrics, and their median and best over seeds,
   as the papers report them; `submission/`: the best run's test predictions.
"""

import dataclasses
import json
import math
import os
import shutil
import statistics
from typing import Any

import grain
import jax
import jax.experimental.multihost_utils
import ml_collections
import numpy as np
from tqdm import tqdm

from common import atomic_files
from common.data import corpus
from common.data import glue
from common.data import pipeline
from common.data import tokenizer as tokenizer_lib
from common.errors import UserError
from common.interop import hf_checkpoint
from common.interop import model_dir
from common.train import loop
from common.train import objectives
from common.train import sequence_classification
from common.train import task_distillation
from common.train import task_metrics
from common.train import workdir as workdir_lib

RANDOM = 'random'
TASK_FILE = 'task.json'


@dataclasses.dataclass(frozen=True)
class Start:
  """Where the encoder comes from.

  Attributes:
    description: for the log and results.json.
    model_config: the `config.model` fields that built it.
    params: {'encoder': ..., 'pooler': ... (if it has one)}, numpy, unrolled layers;
      None for a random start.
    tokenizer_path: its tokenizer file ('' to train one, random starts only).
    head_activation: the task head's activation its family uses.
    objective: the objective that trained it ('' for a random start).
  """
  description: str
  model_config: dict
  params: dict | None
  tokenizer_path: str
  head_activation: str
  objective: str = ''


def head_activation(objective: str, model_config: dict, source: dict) -> str:
  """The head HF's *ForSequenceClassification puts on this family's encoder: ELECTRA
  gelu, DistilBERT (no token types) relu, BERT / RoBERTa / ALBERT tanh."""
  if source.get('head_activation'):
    return source['head_activation']
  if objective == 'electra' or source.get('model_type') == 'electra':
    return 'gelu'
  if not model_config.get('type_vocab_size', 2):
    return 'relu'
  return 'tanh'


def resolve_start(init_from: str, config, workdir: str) -> Start:
  """Reads the starting point named by `config.init_from` (see the module docstring)."""
  if not init_from:
    raise UserError("config.init_from is required: a pretraining workdir, a model "
                    "directory, a Hugging Face model directory, or 'random'")
  if init_from == RANDOM:
    model_config = config.model.to_dict()
    # objective.head_activation: a control given the head of the start it is compared
    # with (launch.evaluate); empty, the family's by the model config.
    return Start('random initialisation', model_config, None, config.tokenizer.path,
                 head_activation('', model_config, {
                     'head_activation': config.objective.get('head_activation', '')}))
  path = os.path.abspath(init_from)
  if not os.path.isdir(path):
    raise UserError(f'config.init_from {path} does not exist')
  if (os.path.isfile(os.path.join(path, 'config.json'))
      and not os.path.isdir(os.path.join(path, 'checkpoints'))):
    imported = os.path.join(workdir, 'init_from_hf')
    if not model_dir.is_model_dir(imported):
      hf_checkpoint.import_dir(path, imported)
    path = imported
  model_config, params, objective, tok_dir, source = hf_checkpoint.load_ours(path)
  encoder_params = objectives.encoder_params(objective, params)
  tokenizer_path = tokenizer_lib.workdir_tokenizer(tok_dir) or ''
  if not tokenizer_path:
    raise UserError(f'{path} has no tokenizer file (tokenizer.model or '
                    'hf_tokenizer.json): cannot encode the task')
  return Start(f'{path} ({objective})', model_dir.model_fields(model_config),
               encoder_params, tokenizer_path,
               head_activation(objective, model_config, source), objective)


def load_task(config) -> glue.TaskSpec:
  """The task: `config.task.name`, or a generic task described by the data directory's
  task.json (the probe suite) or by `config.task.*`."""
  task = config.task
  if task.name != 'generic':
    return glue.get_task(task.name)
  described = os.path.join(config.data_dir, TASK_FILE)
  if os.path.isfile(described):
    spec = model_dir.read_json(described)
    return glue.generic_task(
        spec['name'], text_columns=tuple(spec['text_columns']),
        label_column=spec['label_column'], labels=tuple(spec.get('labels') or ()) or None,
        regression=bool(spec.get('regression', False)),
        file_format=spec.get('file_format', 'tsv'), metrics=tuple(spec['metrics']))
  labels = tuple(x for x in task.labels.split(',') if x) or None
  return glue.generic_task(
      'generic', text_columns=tuple(c for c in (task.text_a, task.text_b) if c),
      label_column=task.label, labels=labels, regression=task.regression,
      file_format=task.file_format)


def _train_dataset(arrays: dict[str, np.ndarray], batch_size: int,
                   seed: int) -> grain.MapDataset:
  """This host's infinite stream of training batches, reshuffled every epoch."""
  count = jax.process_count()
  if batch_size % count:
    raise UserError(f'train.batch_size {batch_size} is not divisible by the {count} '
                    'processes')
  rows = [{k: v[i] for k, v in arrays.items()} for i in range(len(arrays['label']))]
  ds = grain.MapDataset.source(rows).shuffle(seed=seed).repeat(None)
  ds = ds[jax.process_index()::count]
  return ds.batch(batch_size // count, drop_remainder=True,
                  batch_fn=pipeline.stack_examples)


def _host_rows(batches: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
  """This host's contiguous rows of each global batch."""
  count, index = jax.process_count(), jax.process_index()
  out = []
  for batch in batches:
    per_host = len(batch['label']) // count
    rows = slice(index * per_host, (index + 1) * per_host)
    out.append({k: v[rows] for k, v in batch.items()})
  return out


def _init_params(start: Start, scanned: bool, is_main: bool, params, shardings):
  """The classifier's fresh params with the start's encoder (and pooler) laid in."""
  given = model_dir.flatten(model_dir.set_layer_layout(start.params, scanned))
  if is_main:
    heads = sorted({n.split('/')[0] for n in model_dir.flatten(params) if n not in given})
    tqdm.write(f'initialised from {start.description}; fresh: {", ".join(heads)}')
  return model_dir.lay_in(given, params, shardings, start.description, 'the classifier')


def _runs(config) -> list[tuple[float, int]]:
  """(learning rate, seed) of every run: `num_seeds` seeds from `seed`, at each rate
  of `sweep_learning_rates` (comma-separated; empty: `optimizer.learning_rate`)."""
  rates = [float(x) for x in config.sweep_learning_rates.split(',') if x.strip()]
  rates = rates or [config.optimizer.learning_rate]
  return [(lr, config.seed + k) for lr in rates for k in range(config.num_seeds)]


def _host(tree):
  return jax.tree.map(lambda x: np.asarray(
      jax.experimental.multihost_utils.process_allgather(x, tiled=True)
      if jax.process_count() > 1 else x), tree)


class _BestKeeper:
  """The `on_eval` hook of one run: keeps the best dev evaluation's parameters as a
  model directory and writes the test predictions at that point."""

  def __init__(self, run_dir: str, task, start: Start, model_config: dict,
               num_labels: int, test_sets: dict, tokenizer_path: str):
    self.run_dir, self.task, self.start = run_dir, task, start
    self.model_config, self.num_labels = model_config, num_labels
    self.test_sets, self.tokenizer_path = test_sets, tokenizer_path
    self.record_path = os.path.join(run_dir, 'best.json')
    self.best = (model_dir.read_json(self.record_path)
                 if os.path.exists(self.record_path) else None)

  def __call__(self, step, metrics, state, predict):
    score = self.task.score(metrics)
    if step == 0 or not math.isfinite(score):  # Step 0: the head is untrained.
      return
    if self.best is not None and score <= self.best['score']:
      return
    params = _host(state.params)
    predictions = {split: predict(batches)
                   for split, (batches, _) in self.test_sets.items()}
    if jax.process_index() != 0:
      self.best = {'step': step, 'score': score}
      return
    labels = list(self.task.labels or ())
    source = {'from': 'finetune', 'objective': 'classification', 'task': self.task.name,
              'num_labels': self.num_labels,
              'head_activation': self.start.head_activation,
              'id2label': {str(i): name for i, name in enumerate(labels)},
              'init_from': self.start.description, 'step': step}
    best_dir = os.path.join(self.run_dir, 'best')
    staging = best_dir + '.new'
    shutil.rmtree(staging, ignore_errors=True)
    with model_dir.atomic_directory(staging) as tmp:
      model_dir.write_contents(tmp, params, self.model_config, source)
      shutil.copy(self.tokenizer_path,
                  os.path.join(tmp, os.path.basename(self.tokenizer_path)))
      for split, out in predictions.items():
        indices = self.test_sets[split][1]
        glue.write_predictions(self.task, split, indices,
                               out['predictions'][:len(indices)],
                               os.path.join(tmp, 'predictions'))
    shutil.rmtree(best_dir, ignore_errors=True)
    os.rename(staging, best_dir)
    self.best = {'step': step, 'score': score, 'metrics': metrics}
    atomic_files.write_text(self.record_path, json.dumps(self.best, indent=2) + '\n')


def family(objective: str, model_config: dict) -> tuple[str, str]:
  """(family, width class) of a starting point, for experiments/glue.py's
  FAMILY_DEFAULTS: ELECTRA by its objective, ALBERT by sentence order or sharing,
  RoBERTa by its position offset, else BERT; small H <= 256, base <= 768, else large."""
  if objective == 'electra':
    name = 'electra'
  elif objective == 'mlm_sop' or model_config.get('layer_sharing', 'none') != 'none':
    name = 'albert'
  elif model_config.get('position_offset', 0):
    name = 'roberta'
  else:
    name = 'bert'
  hidden = model_config['hidden_size']
  return name, 'small' if hidden <= 256 else 'base' if hidden <= 768 else 'large'


def check_config(config) -> None:
  """Rejects fine-tuning settings that cannot work, before anything is written."""
  if not config.data_dir:
    raise UserError('config.data_dir is required: the directory of the task files')
  if not os.path.isdir(config.data_dir):
    raise UserError(f'config.data_dir {config.data_dir} does not exist')
  if config.epochs <= 0:
    raise UserError(f'config.epochs must be positive, got {config.epochs}')
  if config.num_seeds < 1:
    raise UserError(f'config.num_seeds must be at least 1, got {config.num_seeds}')
  if not 0 <= config.warmup_fraction < 1:
    raise UserError(f'config.warmup_fraction must be in [0, 1), got '
                    f'{config.warmup_fraction}')
  if config.train.eval_batch_size % jax.process_count():
    raise UserError(f'train.eval_batch_size {config.train.eval_batch_size} is not '
                    f'divisible by the {jax.process_count()} processes')


def _encoded(task, split: str, tokenizer, config):
  """A split's examples and arrays; RoBERTa-style models (one token type) get
  `<s> A </s></s> B </s>` pairs."""
  examples = glue.read_split(task, config.data_dir, split)
  pair_format = 'roberta' if config.model.type_vocab_size <= 1 else 'bert'
  return examples, glue.encode(examples, tokenizer, config.data.max_seq_length,
                               pair_format=pair_format)


def finetune(config, workdir: str, *, stop_after: int | None = None) -> dict[str, Any]:
  """Fine-tunes `config.init_from` on the task, once per (learning rate, seed).

  A refused run (bad config, start or task) leaves the filesystem as it found it:
  what it created before the first run's training loop took over is removed again
  (common/train/workdir.py).

  Returns:
    The record also written to `<workdir>/results.json`.
  """
  check_config(config)
  workdir_lib.check_writable(workdir)
  with workdir_lib.guard(workdir):
    return _finetune(config, workdir, stop_after=stop_after)


def _finetune(config, workdir: str, *, stop_after: int | None) -> dict[str, Any]:
  task = load_task(config)
  start = resolve_start(config.init_from, config, workdir)
  task = glue.resolve_labels(task, config.data_dir)
  num_labels = 1 if task.regression else len(task.labels)
  teacher = None
  if config.teacher.path:
    teacher = task_distillation.read_teacher(config.teacher.path, task.name, num_labels)
  os.makedirs(workdir, exist_ok=True)
  config = config.copy_and_resolve_references()
  config.unlock()
  config.model = ml_collections.ConfigDict(start.model_config)
  if start.params is None:
    train_docs, _ = corpus.load_corpus(config.data)
    sentences = lambda: corpus.corpus_sentences(train_docs)
  else:
    given = config.tokenizer.path
    if given and os.path.abspath(given) != os.path.abspath(start.tokenizer_path):
      raise UserError(f'config.tokenizer.path {given} is not the tokenizer '
                      f'{start.description} was trained with ({start.tokenizer_path}); '
                      'leave tokenizer.path empty to use that one')
    config.tokenizer.path = start.tokenizer_path
    sentences = lambda: []
  config.tokenizer.vocab_size = config.model.vocab_size
  tokenizer = tokenizer_lib.get_tokenizer(config.tokenizer, workdir, sentences)
  if tokenizer.vocab_size != config.model.vocab_size:
    raise UserError(f'the tokenizer has {tokenizer.vocab_size} pieces but the model '
                    f'{config.model.vocab_size}')
  positions = config.model.max_position_embeddings - config.model.get('position_offset', 0)
  if config.data.max_seq_length > positions:
    raise UserError(f'data.max_seq_length {config.data.max_seq_length} is longer than the '
                    f'position table ({positions} positions)')

  if teacher is not None:
    task_distillation.check_student(
        teacher, config.model, start.tokenizer_path or tokenizer.model_path,
        config.teacher.hidden_projection, config.data.max_seq_length)
  _, train = _encoded(task, config.train_split, tokenizer, config)
  n_train = len(train['label'])
  eval_sets, test_sets = [], {}
  for i, split in enumerate(task.dev_splits):
    if not glue.has_split(task, config.data_dir, split):
      continue
    _, arrays = _encoded(task, split, tokenizer, config)
    metric_fn = lambda out: task_metrics.compute(
        task.metrics, out['label'], out['predictions'], out['example_weight'])
    eval_sets.append(loop.EvalSet(
        '' if i == 0 else split,
        _host_rows(glue.pad_to_batches(arrays, config.train.eval_batch_size)),
        metrics=('loss',), metric_fn=metric_fn))
  if not eval_sets:
    raise UserError(f'{config.data_dir} has no dev split of task {task.name}')
  for split in task.test_splits:
    if glue.has_split(task, config.data_dir, split):
      examples, arrays = _encoded(task, split, tokenizer, config)
      test_sets[split] = (_host_rows(glue.pad_to_batches(
          arrays, config.train.eval_batch_size)), [e.index for e in examples])

  batch_size = config.train.batch_size
  steps_per_epoch = max(1, n_train // batch_size)
  steps = max(1, math.ceil(config.epochs * n_train / batch_size))
  family_name, width = family(start.objective, config.model)
  defaults = config.family_defaults[f'{family_name}_{width}']
  defaulted = [k for k in ('learning_rate', 'layer_decay') if not config.optimizer[k]]
  for key in defaulted:
    config.optimizer[key] = defaults[key]
  config.train.update(steps=steps, eval_every=config.train.eval_every or steps_per_epoch)
  config.optimizer.warmup_steps = int(round(config.warmup_fraction * steps))
  is_main = jax.process_index() == 0
  if is_main:
    note = lambda key: f' ({family_name}-{width} default)' if key in defaulted else ''
    tqdm.write(f'{task.name}: {n_train} training examples, {steps} steps of '
               f'{batch_size}; lr {config.optimizer.learning_rate:g}'
               f'{note("learning_rate")}, layer decay {config.optimizer.layer_decay:g}'
               f'{note("layer_decay")}; head {start.head_activation}')
    if teacher is not None:
      tqdm.write(f'distilling teacher {teacher.path}: '
                 f'{config.teacher.intermediate_epochs:g} epochs of intermediate layers '
                 f'at lr {config.teacher.intermediate_learning_rate:g}, then '
                 f'{config.epochs:g} of predictions')

  runs = []
  scanned = config.model.get('scan_layers', True)
  for lr, seed in _runs(config):
    run_config = config.copy_and_resolve_references()
    run_config.seed = seed
    run_config.optimizer.learning_rate = lr
    name = f'seed_{seed}' if not config.sweep_learning_rates else f'lr_{lr:g}_seed_{seed}'
    run_dir = os.path.join(workdir, name)
    keeper = _BestKeeper(run_dir, task, start, config.model.to_dict(), num_labels,
                         test_sets, start.tokenizer_path or tokenizer.model_path)
    finished = _finished_steps(run_dir, steps)
    if finished is not None and keeper.best is not None:
      runs.append(_run_record(name, seed, lr, keeper.best, finished))
      continue
    run_start = start
    if teacher is not None:
      run_start = _intermediate_stage(run_config, run_dir, start, teacher, train,
                                      eval_sets, n_train, stop_after)
      if run_start is None:  # Stopped (--stop_after) before the stage's end.
        break
      objective = task_distillation.task_distillation(run_config, teacher, 'prediction',
                                                      start.head_activation)
    else:
      objective = sequence_classification.sequence_classification(
          run_config, num_labels, start.head_activation)
    dataset = _train_dataset(train, batch_size, seed)
    init_params = None
    if run_start.params is not None:
      init_params = lambda p, s, start=run_start: _init_params(start, scanned, is_main,
                                                                p, s)
    summary = loop.run(
        run_config, run_dir, objective=objective,
        train_iter=iter(dataset.to_iter_dataset(
            pipeline.read_options(run_config.train.data_threads))),
        example_batch=dataset[0], eval_sets=eval_sets, init_params=init_params,
        on_eval=keeper, stop_after=stop_after,
        summary_extra={'task': task.name, 'init_from': run_start.description,
                       **({'teacher': teacher.path} if teacher else {})})
    runs.append(_run_record(name, seed, lr, keeper.best or {}, summary['step']))
  return _write_results(workdir, task, start, runs)


def _intermediate_stage(config, run_dir: str, start: Start, teacher, train: dict,
                        eval_sets: list, n_train: int,
                        stop_after: int | None) -> Start | None:
  """TinyBERT's intermediate-layer stage of one run, in `<run_dir>/intermediate/`
  (common/train/task_distillation.py): `teacher.intermediate_epochs` of it from
  `start`, then the start of the prediction stage, its encoder; `start` itself with
  0 epochs, None when --stop_after stopped it first."""
  epochs = config.teacher.intermediate_epochs
  if epochs <= 0:
    return start
  stage = config.copy_and_resolve_references()
  stage.objective.name = task_distillation.INTERMEDIATE
  steps = max(1, math.ceil(epochs * n_train / config.train.batch_size))
  stage.train.update(steps=steps, eval_every=min(config.train.eval_every, steps))
  stage.optimizer.update(learning_rate=config.teacher.intermediate_learning_rate,
                         warmup_steps=int(round(config.warmup_fraction * steps)))
  stage_dir = os.path.join(run_dir, 'intermediate')
  objective = task_distillation.task_distillation(stage, teacher, 'intermediate',
                                                  start.head_activation)
  dataset = _train_dataset(train, config.train.batch_size, config.seed)
  init_params = None
  if start.params is not None:
    init_params = lambda p, s: _init_params(start, config.model.get('scan_layers', True),
                                            jax.process_index() == 0, p, s)
  distances = [dataclasses.replace(e, metrics=('loss', 'attention_mse', 'embedding_mse',
                                               'hidden_mse'), metric_fn=None)
               for e in eval_sets]
  summary = loop.run(
      stage, stage_dir, objective=objective,
      train_iter=iter(dataset.to_iter_dataset(
          pipeline.read_options(stage.train.data_threads))),
      example_batch=dataset[0], eval_sets=distances, init_params=init_params,
      stop_after=stop_after, summary_extra={'init_from': start.description,
                                            'teacher': teacher.path})
  if summary['step'] < steps:
    return None
  _, params, _, _, _ = hf_checkpoint.load_ours(stage_dir)
  return dataclasses.replace(
      start, params=objectives.encoder_and_pooler(params),
      description=f'{stage_dir} (intermediate-layer distillation of {teacher.path} into '
                  f'{start.description})')


def _finished_steps(run_dir: str, steps: int) -> int | None:
  """The steps of a run that already finished in `run_dir` (its summary.json), else
  None: such a run is reported, not trained again."""
  path = os.path.join(run_dir, 'summary.json')
  if not os.path.isfile(path):
    return None
  summary = model_dir.read_json(path)
  return summary['step'] if summary.get('step') == steps else None


def _run_record(name: str, seed: int, lr: float, best: dict, steps: int) -> dict:
  return {'run': name, 'seed': seed, 'learning_rate': lr, 'best_step': best.get('step'),
          'score': best.get('score'), 'dev': best.get('metrics', {}), 'steps': steps}


def _write_results(workdir: str, task, start: Start, runs: list[dict]) -> dict:
  """results.json: every run's best dev metrics, their median and best over runs (as
  the papers report fine-tuning), and the best run's test predictions in submission/."""
  scored = [r for r in runs if r['score'] is not None]
  results = {'task': task.name, 'init_from': start.description,
             'main_metrics': list(task.main_metrics), 'runs': runs}
  if scored:
    best = max(scored, key=lambda r: r['score'])
    keys = sorted(set.intersection(*(set(r['dev']) for r in scored)))
    results['median'] = {k: statistics.median(r['dev'][k] for r in scored) for k in keys}
    results['median']['score'] = statistics.median(r['score'] for r in scored)
    results['best'] = {'run': best['run'], 'score': best['score'], **best['dev']}
    predictions = os.path.join(workdir, best['run'], 'best', 'predictions')
    if jax.process_index() == 0 and os.path.isdir(predictions):
      submission = os.path.join(workdir, 'submission')
      shutil.rmtree(submission, ignore_errors=True)
      shutil.copytree(predictions, submission)
      results['submission'] = submission
  if jax.process_index() == 0:
    atomic_files.write_text(os.path.join(workdir, 'results.json'),
                            json.dumps(results, indent=2, sort_keys=True) + '\n')
  return results
