"""Pretraining: corpus -> tokenizer -> packing -> masking, fed to the generic loop.

`pretrain(config, workdir)` is what `launch.train` runs for every pretraining recipe.
It assembles the data (common/data/pipeline.py: the corpus, the tokenizer trained into
the workdir or loaded, packed and masked examples, held-out batches), the objective
named by the experiment (common/train/objectives.py), the held-out evaluation sets
(the held-out batches, and the word-order probe on the same batches with their context
shuffled: common/data/word_order_probe.py) and `train.init_from`, then hands them to
`loop.run`, which owns the train step, checkpoints, resume and logs.

The workdir gets what `loop.run` writes (metrics.jsonl, tensorboard/, checkpoints/,
config.json, summary.json, loss_curve.png) plus the tokenizer (tokenizer.model, or an
imported hf_tokenizer.json).
"""

import functools
import os
from typing import Any

import jax
from tqdm import tqdm

from common.data import mask_strategies
from common.data import pipeline
from common.errors import UserError
from common.interop import model_dir
from common.train import loop
from common.train import objectives
from common.train import optimizers
from common.train import sharding
from common.train import workdir as workdir_lib


# Shorter sequences leave a segment pair ([CLS] A [SEP] B [SEP]) a handful of tokens
# and 15% masking one or two predictions: nothing a pretraining run can learn from.
MIN_SEQ_LENGTH = 16


def check_config(config) -> None:
  """Rejects settings that cannot work, from the config alone, before anything is
  built or written."""
  model, data, masking = config.model, config.data, config.masking
  positions = model.max_position_embeddings - model.position_offset
  if data.max_seq_length > positions:
    raise UserError(f'data.max_seq_length {data.max_seq_length} is longer than the '
                    f'position table ({positions} positions; model.max_position_embeddings'
                    f' {model.max_position_embeddings})')
  if data.max_seq_length < MIN_SEQ_LENGTH:
    raise UserError(f'data.max_seq_length must be at least {MIN_SEQ_LENGTH}, got '
                    f'{data.max_seq_length}')
  if not 1 <= masking.max_predictions_per_seq <= data.max_seq_length:
    raise UserError(f'masking.max_predictions_per_seq must be in [1, data.max_seq_length '
                    f'{data.max_seq_length}], got {masking.max_predictions_per_seq}')
  if not 0 < masking.mask_prob < 1:
    raise UserError(f'masking.mask_prob must be in (0, 1), got {masking.mask_prob}')
  fraction = data.get('heldout_fraction', 0.02)
  if not 0 <= fraction < 1:
    raise UserError(f'data.heldout_fraction must be in [0, 1), got {fraction}')
  if fraction == 0 and not data.get('heldout_split', None):
    raise UserError('pretraining evaluates on held-out documents: set '
                    'data.heldout_fraction > 0 (or data.heldout_split for tfds)')
  mask_strategies.check_strategy(masking)
  for field in ('vocab_size', 'hidden_size', 'num_layers', 'num_heads',
                'intermediate_size'):
    if model[field] < 1:
      raise UserError(f'model.{field} must be positive, got {model[field]}')
  if model.hidden_size % model.num_heads:
    raise UserError(f'model.hidden_size {model.hidden_size} is not divisible by '
                    f'model.num_heads {model.num_heads}')
  for field in ('dropout_rate', 'attention_dropout_rate'):
    if field in model and not 0 <= model[field] < 1:
      raise UserError(f'model.{field} must be in [0, 1), got {model[field]}')
  if data.packing not in pipeline.PACKINGS:
    raise UserError(f'unknown data.packing {data.packing!r}; known: '
                    f'{", ".join(pipeline.PACKINGS)}')
  if config.objective.name not in objectives.OBJECTIVES:
    raise UserError(f'unknown objective.name {config.objective.name!r}; known: '
                    f'{", ".join(objectives.OBJECTIVES)}')
  loop.check_train_config(config.train)
  optimizers.check_config(config.optimizer)


def init_from_model_dir(path: str, model_config, params, shardings, *,
                        is_main: bool = True):
  """`train.init_from`: a fresh run's params with a model directory's values.

  Parameters the directory lacks (e.g. a head the imported checkpoint did not have)
  keep their fresh initialisation; both lists go to one log line.
  """
  params, fresh, unused = model_dir.overlay(path, model_config, params, shardings)
  if is_main:
    tqdm.write(f'initialised from {path}; fresh: {", ".join(fresh) or "none"}; '
               f'not used: {", ".join(unused) or "none"}')
  return params


def evaluation_sets(data: pipeline.PretrainingData) -> list[loop.EvalSet]:
  """The held-out batches, and the word-order probe: MLM accuracy on the same batches
  with the context shuffled (`shuffled_context_mlm_accuracy`). While it equals
  `mlm_accuracy` the model reads its context as a bag of words, and order-dependent
  tasks (SOP, ELECTRA's detection of plausible replacements) cannot be learned yet."""
  return [loop.EvalSet('', data.eval_batches),
          loop.EvalSet('shuffled_context', data.order_probe_batches,
                       metrics=('mlm_accuracy',))]


def pretrain(config, workdir: str, *, stop_after: int | None = None) -> dict[str, Any]:
  """Runs (or resumes) the pretraining described by `config` in `workdir`.

  Args:
    config: an experiment ConfigDict (experiments/<recipe>.py).
    workdir: output directory; created if missing; resumed if it has checkpoints.
    stop_after: stop (with a checkpoint) once this step is reached, as a preempted run
      would; the schedule still follows `config.train.steps`.

  Returns:
    The summary also written to summary.json.
  """
  check_config(config)
  config = objectives.configure(config)  # E.g. a student takes its teacher's tokenizer.
  if stop_after is not None and stop_after < 1:
    raise UserError(f'--stop_after must be a positive step, got {stop_after}')
  workdir_lib.check_writable(workdir)
  done = workdir_lib.finished_summary(config, workdir, stop_after)
  if done is not None:  # Nothing to do, nothing touched.
    return {**done, 'already_complete': True}
  workdir_lib.check_resumable(config, workdir)
  loop.check_devices(config, sharding.make_mesh(config.mesh.shape,
                                                dcn_data=config.mesh.dcn_data))
  if config.train.init_from and not os.path.isdir(config.train.init_from):
    raise UserError(f'train.init_from {config.train.init_from} does not exist')
  # What only the data can tell (the tokenizer's vocabulary, an empty corpus, the
  # checkpoint's shapes) is checked after files appear: a refusal removes them again.
  with workdir_lib.guard(workdir):
    os.makedirs(workdir, exist_ok=True)
    data = pipeline.build_data(config, workdir, process_index=jax.process_index(),
                               process_count=jax.process_count())
    objective = objectives.get_objective(config)
    missing = set(objective.batch_keys) - set(data.train[0])
    if missing:
      raise UserError(f'objective {objective.name!r} needs batch fields '
                      f'{sorted(missing)} that packing {config.data.packing!r} does '
                      'not produce')
    init_params = objective.init_params  # E.g. a student copied from its teacher.
    if config.train.init_from:
      init_params = functools.partial(init_from_model_dir, config.train.init_from,
                                      config.model, is_main=jax.process_index() == 0)
    train_iter = iter(data.train.to_iter_dataset(
        pipeline.read_options(config.train.data_threads)))
    return loop.run(config, workdir, objective=objective, train_iter=train_iter,
                    example_batch=data.train[0], eval_sets=evaluation_sets(data),
                    init_params=init_params,
                    summary_extra={'tokenizer': data.tokenizer.model_path},
                    stop_after=stop_after)
