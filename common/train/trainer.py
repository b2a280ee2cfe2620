"""The training loop every recipe runs: data, model, the one train step, evaluation,
checkpoints and logs.

`train(config, workdir)` reads the corpus, trains or loads the tokenizer, builds the
example stream, initialises (or resumes) the sharded train state and runs
`config.train.steps` optimizer updates, showing a progress bar and writing into the
workdir: metrics.jsonl, tensorboard/, checkpoints/, tokenizer.model (or an imported
hf_tokenizer.json), config.json, summary.json and loss_curve.png. Started again on the
same workdir it resumes from the latest checkpoint, with the same data order and rng.
Start order: the workdir's latest checkpoint, else `train.init_from` (a model directory,
common/interop/model_dir.py: an HF import or an exported discriminator), else a fresh
initialisation.
"""

import math
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from common import atomic_files
from common.train import checkpoint as checkpoint_lib
from common.train import flops as flops_lib
from common.train import metrics as metrics_lib
from common.interop import model_dir
from common.train import objectives
from common.train import optimizers
from common.data import pipeline
from common.train import run_log
from common.train import sharding
from common.train import train_step as train_step_lib
from common.errors import UserError


def check_config(config) -> None:
  """Rejects settings that cannot work, before anything is built or written."""
  model, data, train = config.model, config.data, config.train
  positions = model.max_position_embeddings - model.get('position_offset', 0)
  if data.max_seq_length > positions:
    raise UserError(f'data.max_seq_length {data.max_seq_length} is longer than the '
                    f'position table ({positions} positions; model.max_position_embeddings'
                    f' {model.max_position_embeddings})')
  if config.masking.max_predictions_per_seq > data.max_seq_length:
    raise UserError(f'masking.max_predictions_per_seq {config.masking.max_predictions_per_seq}'
                    f' exceeds data.max_seq_length {data.max_seq_length}')
  accum = train.get('grad_accum_steps', 1)
  if train.batch_size % accum:
    raise UserError(f'train.batch_size {train.batch_size} is not divisible by '
                    f'train.grad_accum_steps {accum}')
  if train.steps <= 0:
    raise UserError(f'train.steps must be positive, got {train.steps}')


def _config_record(workdir: str, config) -> None:
  """Writes config.json; the first run's copy is kept as config.json of record."""
  path = os.path.join(workdir, 'config.json')
  text = config.to_json_best_effort(indent=2, sort_keys=True) + '\n'
  if os.path.exists(path):
    path = os.path.join(workdir, 'config.resumed.json')
  atomic_files.write_text(path, text)


def _global_batch(local_batch: dict, mesh, keys: tuple[str, ...]) -> dict:
  """Host-local numpy rows -> global jax.Arrays sharded over the data axes.

  Only the fields the objective reads (`keys`) are transferred.
  """
  data_sharding = sharding.batch_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(data_sharding, local_batch[k])
          for k in keys}


def _evaluate(eval_step, params, batches, mesh, keys) -> dict[str, float]:
  total = None
  for batch in batches:
    total = metrics_lib.add(total, eval_step(params, _global_batch(batch, mesh, keys)))
  return metrics_lib.average(total)


def _held_out_metrics(eval_step, params, data: pipeline.PretrainingData, mesh,
                      keys) -> dict[str, float]:
  """The objective's held-out metrics, plus the word-order probe for MLM objectives.

  `shuffled_context_mlm_accuracy` is the MLM accuracy on the same batches with the
  context shuffled (common/data/word_order_probe.py): while it equals `mlm_accuracy` the
  model reads its context as a bag of words, and order-dependent tasks (SOP, ELECTRA's
  detection of plausible replacements) cannot be learned yet.
  """
  metrics = _evaluate(eval_step, params, data.eval_batches, mesh, keys)
  if 'mlm_accuracy' in metrics:
    shuffled = _evaluate(eval_step, params, data.order_probe_batches, mesh, keys)
    metrics['shuffled_context_mlm_accuracy'] = shuffled['mlm_accuracy']
  return metrics


def _init_from(path: str, model_config, state, state_shardings, is_main: bool):
  """A fresh run's state with params from a model directory (`train.init_from`).

  Parameters the directory lacks (e.g. a head the imported checkpoint did not have)
  keep their fresh initialisation; both lists go to one log line.
  """
  params, fresh, unused = model_dir.overlay(path, model_config, state.params,
                                            state_shardings.params)
  if is_main:
    tqdm.write(f'initialised from {path}; fresh: {", ".join(fresh) or "none"}; '
               f'not used: {", ".join(unused) or "none"}')
  return state.replace(params=params)


def _count_params(params) -> int:
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(params)))


def _fmt(metrics: dict[str, float], keys: tuple[str, ...]) -> dict[str, str]:
  return {k: f'{metrics[k]:.4g}' for k in keys if k in metrics}


def train(config, workdir: str, *, stop_after: int | None = None) -> dict[str, Any]:
  """Runs (or resumes) the pretraining described by `config` in `workdir`.

  Args:
    config: an experiment ConfigDict (experiments/<recipe>.py).
    workdir: output directory; created if missing; resumed if it has checkpoints.
    stop_after: stop (with a checkpoint) once this step is reached, as a preempted run
      would; the schedule still follows `config.train.steps`.

  Returns:
    The summary also written to summary.json.
  """
  start_time = time.time()
  check_config(config)
  os.makedirs(workdir, exist_ok=True)
  is_main = jax.process_index() == 0
  train_cfg = config.train

  data = pipeline.build_data(config, workdir, process_index=jax.process_index(),
                             process_count=jax.process_count())
  dataset = data.train

  mesh = sharding.make_mesh(config.mesh.shape, dcn_data=config.mesh.get('dcn_data', 1))
  if train_cfg.batch_size % (sharding.data_parallel_size(mesh) *
                             train_cfg.get('grad_accum_steps', 1)):
    raise UserError(f'train.batch_size {train_cfg.batch_size} does not split over '
                    f'{sharding.data_parallel_size(mesh)} data-parallel devices x '
                    f"{train_cfg.get('grad_accum_steps', 1)} accumulation steps")
  objective = objectives.get_objective(config)
  missing = set(objective.batch_keys) - set(dataset[0])
  if missing:
    raise UserError(f'objective {objective.name!r} needs batch fields {sorted(missing)} '
                    f'that packing {config.data.packing!r} does not produce')
  tx, schedule = optimizers.make_optimizer(config.optimizer, train_cfg.steps)
  init_rng, loop_rng = jax.random.split(jax.random.PRNGKey(config.seed))
  dp = sharding.data_parallel_size(mesh)
  first = dataset[0]
  init_batch = {k: jnp.asarray(np.repeat(first[k][:1], dp, axis=0))
                for k in objective.batch_keys}
  checkpointer = checkpoint_lib.Checkpointer(
      os.path.join(workdir, 'checkpoints'), save_every=train_cfg.checkpoint_every,
      keep=train_cfg.keep_checkpoints)

  try:
    with sharding.mesh_context(mesh):
      state, state_shardings = train_step_lib.init_train_state(
          objective, tx, init_batch, init_rng, mesh)
      data_iter = iter(dataset.to_iter_dataset(
          pipeline.read_options(train_cfg.get('data_threads', 2))))
      start_step = checkpointer.latest_step() or 0
      if start_step:
        state, loop = checkpointer.restore(
            start_step, checkpoint_lib.abstract_like(state, state_shardings), data_iter)
        loop_rng = jnp.asarray(np.asarray(loop['rng'], np.uint32))
      elif train_cfg.get('init_from'):
        state = _init_from(train_cfg.init_from, config.model, state, state_shardings,
                           is_main)
      if is_main:
        _config_record(workdir, config)
      n_params = _count_params(state.params)
      log = run_log.RunLog(workdir, resume_step=start_step, enabled=is_main)
      step_fn = train_step_lib.make_train_step(
          objective, tx, schedule, state_shardings, mesh,
          train_cfg.get('grad_accum_steps', 1))
      eval_fn = train_step_lib.make_eval_step(objective, state_shardings, mesh)

      tokens_per_step = train_cfg.batch_size * config.data.max_seq_length
      flops_per_token = flops_lib.flops_per_token(config)
      peak = flops_lib.peak_flops_per_device(train_cfg)
      last_step = min(train_cfg.steps, stop_after or train_cfg.steps)
      if start_step == 0:
        log.write(0, _held_out_metrics(eval_fn, state.params, data, mesh,
                                       objective.batch_keys), prefix='eval_')
      loop_state = {'rng': np.asarray(loop_rng).tolist()}
      bar = tqdm(total=train_cfg.steps, initial=start_step, disable=not is_main,
                 desc=config.get('name', 'train'), dynamic_ncols=True, mininterval=1.0)
      # Throughput is timed from the end of this run's first (compiling) step.
      window, window_start, window_steps = None, None, 0
      train_metrics, eval_metrics = {}, {}
      step = start_step
      while step < last_step:
        batch = _global_batch(next(data_iter), mesh, objective.batch_keys)
        state, step_metrics = step_fn(state, batch, loop_rng)
        step += 1
        window = metrics_lib.add(window, step_metrics)
        if window_start is None:
          jax.block_until_ready(step_metrics)
          window_start = time.time()
        else:
          window_steps += 1
        bar.update(1)
        if step % train_cfg.log_every == 0 or step == train_cfg.steps:
          train_metrics = metrics_lib.average(window)
          jax.block_until_ready(state.step)
          elapsed = time.time() - window_start
          train_metrics['tokens_per_sec'] = tokens_per_step * window_steps / max(elapsed,
                                                                                 1e-9)
          utilisation = flops_lib.mfu(train_metrics['tokens_per_sec'], flops_per_token,
                                      peak, jax.device_count())
          if utilisation is not None:
            train_metrics['mfu'] = utilisation
          if not math.isfinite(train_metrics['loss']):
            raise UserError(f'the loss became {train_metrics["loss"]} at step {step}; '
                            'lower optimizer.learning_rate or check the data')
          log.write(step, train_metrics)
          bar.set_postfix(_fmt(train_metrics, ('loss', 'mlm_accuracy', 'tokens_per_sec',
                                               'mfu')), refresh=False)
          window, window_start, window_steps = None, time.time(), 0
        if step % train_cfg.eval_every == 0 or step == train_cfg.steps:
          eval_start = time.time()
          eval_metrics = _held_out_metrics(eval_fn, state.params, data, mesh,
                                           objective.batch_keys)
          log.write(step, eval_metrics, prefix='eval_')
          if is_main:
            bar.write(f'step {step}: held-out ' + ', '.join(
                f'{k} {v:.4f}' for k, v in eval_metrics.items()))
          if window_start is not None:  # Evaluation time is not training throughput.
            window_start += time.time() - eval_start
        checkpointer.save(step, state, data_iter, loop_state, force=step == last_step)
      bar.close()
      checkpointer.wait()
      log.close()
  finally:
    checkpointer.close()

  summary = {
      'recipe': config.get('name', ''),
      'step': step,
      'total_steps': train_cfg.steps,
      'parameters': n_params,
      'wall_time_sec': time.time() - start_time,
      'train': train_metrics,
      'eval': eval_metrics,
      'devices': jax.device_count(),
      'platform': jax.devices()[0].platform,
      'tokenizer': data.tokenizer.model_path,
      'model_flops_per_token': flops_per_token,
  }
  if is_main:
    records = run_log.read_metrics(log.path)
    evals = [r for r in records if 'eval_loss' in r]
    if evals:
      summary['first_eval'] = evals[0]
    summary['plot'] = run_log.plot_curves(workdir)
    run_log.write_summary(workdir, summary)
  return summary
