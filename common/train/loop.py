"""The generic training loop: one objective, one training iterator, named evaluation sets.

`run(...)` owns everything a run does around the one train step
(common/train/train_step.py): the mesh and the sharded train state, frozen parameters,
checkpoints and exact resume, evaluation, metrics.jsonl and TensorBoard, the progress
bar, the loss plot and summary.json. What it trains on is passed in, so pretraining
(common/train/pretraining.py), fine-tuning and distillation are callers of this one
loop and share its jitted, sharded step.

Start order: the workdir's latest checkpoint, else the caller's `init_params` (e.g.
`train.init_from`, a model directory), else a fresh initialisation. A resumed run
draws the same batches and randomness as an uninterrupted one: the data iterator's
position and the loop's rng are saved with every checkpoint.
"""

from collections.abc import Callable, Sequence
import contextlib
import dataclasses
import os
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from common import atomic_files
from common.errors import Preempted
from common.errors import UserError
from common.train import checkpoint as checkpoint_lib
from common.train import flops as flops_lib
from common.train import frozen as frozen_lib
from common.train import metrics as metrics_lib
from common.train import nonfinite as nonfinite_lib
from common.train import optimizers
from common.train import preemption
from common.train import run_log
from common.train import sharding
from common.train import train_step as train_step_lib
from common.train import workdir as workdir_lib
from common.train.objectives import Objective

Batch = dict[str, np.ndarray]
# (fresh params, their shardings) -> params to start from.
InitParams = Callable[[Any, Any], Any]
# Host batches -> the objective's per-example outputs over all of them, concatenated.
Predict = Callable[[Sequence[Batch]], dict[str, np.ndarray]]
# Called on every process after each evaluation: (step, metrics, state, predict).
EvalHook = Callable[[int, dict[str, float], Any, Predict], None]


@dataclasses.dataclass(frozen=True)
class EvalSet:
  """A named held-out set, evaluated every `train.eval_every` steps.

  Attributes:
    name: '' for the main held-out set, whose metrics are reported under the
      objective's names (`mlm_accuracy`); otherwise they are reported as
      `<name>_<metric>` (`shuffled_context_mlm_accuracy`).
    batches: this host's rows of each global batch (numpy, the objective's fields).
    metrics: the objective's (mean) metrics to report (None: all of them).
    metric_fn: whole-set metrics, computed on the host from the objective's
      per-example outputs (`Objective.predict_fn`) over every batch, with each batch's
      fields too (labels, weights): {field: [N, ...]} -> {metric: value}. For what a
      mean over batches cannot give (F1, Matthews, Pearson, Spearman).
  """
  name: str
  batches: Sequence[Batch]
  metrics: tuple[str, ...] | None = None
  metric_fn: Callable[[dict[str, np.ndarray]], dict[str, float]] | None = None


def check_train_config(train) -> None:
  """Rejects loop settings that cannot work, before anything is built or written."""
  for field in ('steps', 'batch_size', 'grad_accum_steps', 'log_every', 'eval_every',
                'checkpoint_every', 'keep_checkpoints', 'eval_batch_size',
                'eval_batches'):
    if field in train and not train[field] >= 1:
      raise UserError(f'train.{field} must be a positive integer, got {train[field]}')
  if train.get('data_threads', 0) < 0:
    raise UserError(f'train.data_threads must be >= 0, got {train.data_threads}')
  accum = train.grad_accum_steps
  if train.batch_size % accum:
    raise UserError(f'train.batch_size {train.batch_size} is not divisible by '
                    f'train.grad_accum_steps {accum}')
  nonfinite_lib.policy(train)


def check_devices(config, mesh) -> None:
  """The batch sizes split over the mesh's data axes and the processes; the attention
  implementation exists on these devices."""
  train = config.train
  platform = mesh.devices.flat[0].platform
  if config.model.get('attention_impl') == 'cudnn' and platform != 'gpu':
    raise UserError(f"model.attention_impl 'cudnn' needs NVIDIA GPUs; these devices are "
                    f"{platform}: use model.attention_impl 'xla'")
  dp, accum, processes = sharding.data_parallel_size(mesh), train.grad_accum_steps, \
      jax.process_count()
  if train.batch_size % (dp * accum):
    raise UserError(f'train.batch_size {train.batch_size} does not split over {dp} '
                    f'data-parallel devices x {accum} accumulation steps')
  if train.eval_batch_size % dp:
    raise UserError(f'train.eval_batch_size {train.eval_batch_size} does not split over '
                    f'{dp} data-parallel devices')
  for field in ('batch_size', 'eval_batch_size'):
    if train[field] % processes:
      raise UserError(f'train.{field} {train[field]} is not divisible by the '
                      f'{processes} processes')


def _config_record(workdir: str, config) -> None:
  """Writes config.json; the first run's copy is kept as config.json of record."""
  path = os.path.join(workdir, 'config.json')
  text = config.to_json_best_effort(indent=2, sort_keys=True) + '\n'
  if os.path.exists(path):
    path = os.path.join(workdir, 'config.resumed.json')
  atomic_files.write_text(path, text)


def global_batch(local_batch: Batch, mesh, keys: Sequence[str]) -> dict[str, jax.Array]:
  """Host-local numpy rows -> global jax.Arrays sharded over the data axes.

  Only the fields the objective reads (`keys`) are transferred.
  """
  data_sharding = sharding.batch_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(data_sharding, local_batch[k])
          for k in keys}


def _host(x: jax.Array) -> np.ndarray:
  """A replicated global array as numpy (every process holds all of it)."""
  return np.asarray(x.addressable_data(0))


def make_predict(predict_step, state, mesh, keys: Sequence[str]) -> Predict:
  """`predict(batches)`: the objective's per-example outputs, plus every batch field,
  concatenated over the global batches in order."""

  def predict(batches: Sequence[Batch]) -> dict[str, np.ndarray]:
    parts = []
    for batch in batches:
      outputs = predict_step(state.params, state.frozen, global_batch(batch, mesh, keys))
      parts.append({k: _host(v) for k, v in outputs.items()})
    return {k: np.concatenate([p[k] for p in parts]) for k in (parts[0] if parts else {})}

  return predict


def evaluate(eval_step, state, eval_sets: Sequence[EvalSet], mesh,
             keys: Sequence[str], predict: Predict | None = None) -> dict[str, float]:
  """Every evaluation set's metrics (means over its batches, and its `metric_fn` on
  the whole set) in one flat dict."""
  out = {}
  for eval_set in eval_sets:
    total = None
    for batch in eval_set.batches:
      total = metrics_lib.add(total, eval_step(state.params, state.frozen,
                                               global_batch(batch, mesh, keys)))
    metrics = metrics_lib.average(total) if total is not None else {}
    if eval_set.metrics is not None:
      metrics = {k: v for k, v in metrics.items() if k in eval_set.metrics}
    if eval_set.metric_fn is not None and eval_set.batches:
      if predict is None:
        raise ValueError(f'evaluation set {eval_set.name!r} has a metric_fn but the '
                         'objective has no predict_fn')
      metrics.update(eval_set.metric_fn(predict(eval_set.batches)))
    for name, value in metrics.items():
      out[f'{eval_set.name}_{name}' if eval_set.name else name] = value
  return out


def _count_params(params) -> int:
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(params)))


def _fmt(metrics: dict[str, float], keys: tuple[str, ...]) -> dict[str, str]:
  return {k: f'{metrics[k]:.4g}' for k in keys if k in metrics}


def _window_to_json(window) -> dict | None:
  """The metrics summed since the last logged step, as exact JSON numbers."""
  if window is None:
    return None
  host = jax.device_get(window)
  return {k: [float(total), float(count)] for k, (total, count) in host.items()}


def _window_from_json(saved: dict | None):
  if not saved:
    return None
  return {k: (np.float32(total), np.float32(count)) for k, (total, count) in saved.items()}


@contextlib.contextmanager
def _closing(bar):
  """Closes the progress bar however the loop ends, so a message starts its own line."""
  try:
    yield bar
  finally:
    bar.close()


def _warn(message: str) -> None:
  tqdm.write(f'warning: {message}', file=sys.stderr)


def run(config, workdir: str, *, objective: Objective, train_iter: Any,
        example_batch: Batch, eval_sets: Sequence[EvalSet] = (),
        init_params: InitParams | None = None, summary_extra: dict | None = None,
        on_eval: EvalHook | None = None, stop_after: int | None = None
        ) -> dict[str, Any]:
  """Trains `objective` on `train_iter` for `config.train.steps` updates in `workdir`.

  Everything that can refuse the run (config values, the devices, the workdir, the
  checkpoints and their compatibility) is checked before the first write; a run that
  already reached its last step is reported from its summary.json, untouched. While
  training, SIGTERM/SIGINT stop it with a checkpoint (common/train/preemption.py) and
  a NaN/inf loss follows `train.nonfinite` (common/train/nonfinite.py).

  Args:
    config: the experiment ConfigDict; the loop reads `seed`, `name`, `optimizer`,
      `train`, `mesh` and `data.max_seq_length` (for tokens/s).
    workdir: output directory (created if missing); resumed if it has checkpoints.
    objective: model, loss and the batch fields it reads (common/train/objectives.py);
      its `frozen` parameters, if any, are loaded, recorded and checked on resume.
    train_iter: a checkpointable grain iterator of host-local batches.
    example_batch: one host-local batch (shapes for initialisation only).
    eval_sets: held-out sets, evaluated at step 0, every `train.eval_every` steps and
      at the end.
    init_params: for a fresh run (no checkpoint), maps the freshly initialised params
      and their shardings to the params to start from (default: the objective's own
      `init_params`, if any).
    summary_extra: more fields for summary.json (e.g. the tokenizer file).
    on_eval: called after every evaluation with (step, metrics, state, predict), e.g.
      to keep the best checkpoint on a dev set or write test-set predictions.
    stop_after: stop (with a checkpoint) once this step is reached, as a preempted run
      would; the schedule still follows `config.train.steps`.

  Returns:
    The summary also written to summary.json; with `already_complete: True` when the
    run had finished before and nothing was done.

  Raises:
    UserError: bad config, devices, workdir or checkpoints (nothing written then), or
      a NaN/inf the policy halts on (the checkpoints written so far are kept).
    Preempted: SIGTERM or SIGINT stopped the run after it saved a checkpoint.
  """
  start_time = time.time()
  train_cfg = config.train
  check_train_config(train_cfg)
  optimizers.check_config(config.optimizer)
  if stop_after is not None and stop_after < 1:
    raise UserError(f'--stop_after must be a positive step, got {stop_after}')
  workdir = os.path.abspath(workdir)
  workdir_lib.check_writable(workdir)
  done = workdir_lib.finished_summary(config, workdir, stop_after)
  if done is not None:
    return {**done, 'already_complete': True}
  workdir_lib.check_resumable(config, workdir)
  is_main = jax.process_index() == 0
  keys = objective.batch_keys
  accum = train_cfg.grad_accum_steps
  nonfinite_policy = nonfinite_lib.policy(train_cfg)
  init_params = init_params or getattr(objective, 'init_params', None)

  mesh = sharding.make_mesh(config.mesh.shape, dcn_data=config.mesh.dcn_data)
  check_devices(config, mesh)
  dp = sharding.data_parallel_size(mesh)
  tx, schedule = optimizers.make_optimizer(config.optimizer, train_cfg.steps,
                                           config.model.num_layers)
  init_rng, loop_rng = jax.random.split(jax.random.PRNGKey(config.seed))
  init_batch = {k: jnp.asarray(np.repeat(example_batch[k][:1], dp, axis=0)) for k in keys}
  checkpointer = checkpoint_lib.Checkpointer(
      os.path.join(workdir, 'checkpoints'), save_every=train_cfg.checkpoint_every,
      keep=train_cfg.keep_checkpoints)

  try:
    # Reading and checking only: nothing is written before `workdir_lib.commit`.
    resuming = checkpointer.latest_step() is not None
    frozen_record = None
    if objective.frozen is not None:
      frozen_record = frozen_lib.check_record(workdir, objective.frozen, resuming)
    with sharding.mesh_context(mesh):
      frozen = None
      if frozen_record is not None:
        frozen = frozen_lib.place(objective.frozen, frozen_record, init_batch, mesh)
      state, state_shardings = train_step_lib.init_train_state(
          objective, tx, init_batch, init_rng, mesh, frozen)
      restored = checkpointer.restore_latest(
          checkpoint_lib.abstract_like(state, state_shardings), train_iter)
      start_step, saved_loop = 0, {}
      if restored is not None:
        start_step, restored_state, saved_loop = restored
        state = restored_state.replace(frozen=state.frozen)
        loop_rng = jnp.asarray(np.asarray(saved_loop['rng'], np.uint32))
      elif init_params is not None:
        state = state.replace(params=init_params(state.params, state_shardings.params))

      # The run is accepted: from here on it writes, and what it wrote stays.
      workdir_lib.commit(workdir)
      os.makedirs(workdir, exist_ok=True)
      for step, reason, moved_to in checkpointer.open():
        _warn(f'checkpoint step {step} is damaged ({reason}); kept as {moved_to}; '
              f'resuming from step {start_step}')
      if is_main:
        _config_record(workdir, config)
        if frozen_record is not None and not resuming:
          frozen_lib.write_record(workdir, objective.frozen.name, frozen_record)
      n_params = _count_params(state.params)
      log = run_log.RunLog(workdir, resume_step=start_step, enabled=is_main)
      step_fn = train_step_lib.make_train_step(objective, tx, schedule, state_shardings,
                                               mesh, accum)
      eval_fn = train_step_lib.make_eval_step(objective, state_shardings, mesh)
      predict_step = (train_step_lib.make_predict_step(objective, state_shardings, mesh)
                      if objective.predict_fn is not None else None)

      def evaluate_now(step: int) -> dict[str, float]:
        predict = (make_predict(predict_step, state, mesh, keys)
                   if predict_step is not None else None)
        metrics = evaluate(eval_fn, state, eval_sets, mesh, keys, predict)
        log.write(step, metrics, prefix='eval_')
        if on_eval is not None:
          on_eval(step, metrics, state, predict)
        return metrics

      tokens_per_step = train_cfg.batch_size * config.data.max_seq_length
      flops_per_token = objective.flops_per_token
      peak = flops_lib.peak_flops_per_device(train_cfg)
      last_step = min(train_cfg.steps, stop_after or train_cfg.steps)
      rng_json = np.asarray(loop_rng).tolist()
      tracker = nonfinite_lib.NonfiniteTracker(*nonfinite_policy,
                                               **saved_loop.get('nonfinite', {}))
      saved_at = start_step or None

      def last_checkpoint() -> str:
        return (f'the last checkpoint is step {saved_at} in {checkpointer.directory}'
                if saved_at else 'no checkpoint was written yet')

      if start_step == 0:
        evaluate_now(0)
      bar = tqdm(total=train_cfg.steps, initial=start_step, disable=not is_main,
                 desc=config.name or 'train', dynamic_ncols=True, mininterval=1.0)
      # Throughput is timed from the end of this run's first (compiling) step. The
      # metrics summed since the last logged step come back with a resumed run, so
      # its first logged line is the uninterrupted run's.
      window, window_start, window_steps = (_window_from_json(saved_loop.get('window')),
                                            None, 0)
      train_metrics, eval_metrics = {}, {}
      step = start_step
      with preemption.StopSignal() as stop, _closing(bar):
        while step < last_step:
          batch = global_batch(next(train_iter), mesh, keys)
          state, step_metrics = step_fn(state, batch, loop_rng)
          step += 1
          step_metrics = dict(step_metrics)
          tracker.add(step, step_metrics.pop(train_step_lib.NONFINITE)[0])
          window = metrics_lib.add(window, step_metrics)
          if window_start is None:
            jax.block_until_ready(step_metrics)
            window_start = time.time()
          else:
            window_steps += 1
          bar.update(1)
          log_now = step % train_cfg.log_every == 0 or step == train_cfg.steps
          save_now = step % train_cfg.checkpoint_every == 0 or step == last_step
          # A signal during the last step needs no stop: the run is about to finish.
          stopping = stop.should_stop() and step < last_step
          if log_now or save_now or stopping:
            tracker.check(last_checkpoint())  # Raises when the policy halts.
          if log_now:
            train_metrics = metrics_lib.average(window)
            jax.block_until_ready(state.step)
            elapsed = time.time() - window_start
            train_metrics['tokens_per_sec'] = (tokens_per_step * window_steps
                                               / max(elapsed, 1e-9))
            utilisation = flops_lib.mfu(train_metrics['tokens_per_sec'], flops_per_token,
                                        peak, jax.device_count())
            if utilisation is not None:
              train_metrics['mfu'] = utilisation
            if nonfinite_policy[0] == 'skip':
              train_metrics['skipped_steps'] = tracker.skipped
            log.write(step, train_metrics)
            bar.set_postfix(_fmt(train_metrics, ('loss', 'mlm_accuracy',
                                                 'tokens_per_sec', 'mfu')), refresh=False)
            window, window_start, window_steps = None, time.time(), 0
          if step % train_cfg.eval_every == 0 or step == train_cfg.steps:
            eval_start = time.time()
            eval_metrics = evaluate_now(step)
            if is_main:
              bar.write(f'step {step}: held-out ' + ', '.join(
                  f'{k} {v:.4f}' for k, v in eval_metrics.items()))
            if window_start is not None:  # Evaluation time is not training throughput.
              window_start += time.time() - eval_start
          if save_now or stopping:
            loop_state = {'rng': rng_json, 'window': _window_to_json(window),
                          'nonfinite': tracker.state()}
            checkpointer.save(step, state, train_iter, loop_state, force=True)
            saved_at = step
          if stopping:
            bar.close()
            checkpointer.wait()
            log.close()
            raise Preempted(stop.signum, step, os.path.join(checkpointer.directory,
                                                            str(step)))
      checkpointer.wait()
      log.close()
  finally:
    checkpointer.close()

  summary = {
      'recipe': config.name,
      'step': step,
      'total_steps': train_cfg.steps,
      'parameters': n_params,
      'wall_time_sec': time.time() - start_time,
      'train': train_metrics,
      'eval': eval_metrics,
      'devices': jax.device_count(),
      'platform': jax.devices()[0].platform,
      'model_flops_per_token': flops_per_token,
      **(summary_extra or {}),
  }
  if nonfinite_policy[0] == 'skip':
    summary['skipped_steps'] = tracker.skipped
  if frozen_record is not None:
    summary['frozen'] = {objective.frozen.name: {
        **frozen_record, 'parameters': _count_params(state.frozen)}}
  if is_main:
    records = run_log.read_metrics(log.path)
    evals = [r for r in records if 'eval_loss' in r]
    if evals:
      summary['first_eval'] = evals[0]
    summary['plot'] = run_log.plot_curves(workdir)
    run_log.write_summary(workdir, summary)
  return summary
