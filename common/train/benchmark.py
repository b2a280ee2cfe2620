"""Timing the real train step on synthetic batches, and what to read it against.

`StepTimer(config)` builds exactly what `launch.train` runs (common/train/loop.py): the
mesh, the objective, the optimizer, the train state in its shardings and the one jitted
step with the state donated, and compiles it (timed on its own, lower + compile, with
XLA's cost analysis kept beside the objective's model FLOPs). `run` then feeds it
synthetic batches of the config's shape (`synthetic_batch`: random ids, masked as the
recipe masks, with every field the objective reads). Each step goes host batch ->
global array -> step, as the loop does, and is timed to completion
(`block_until_ready`) after the warm-up steps, so the median and spread are of whole
steps; process CPU time is kept beside wall time. `time_train_step` does both at once.

The rest gives the numbers to read it against: `matmul_roofline` (what one large
matmul reaches on these devices: the practical ceiling of model FLOP/s),
`pipeline_rate` (the real input pipeline of the config alone, examples/s: a data
bottleneck shows when it is near the step's rate) and `peak_memory_bytes`.
"""

import dataclasses
import statistics
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from common import peak_memory
from common.data import masking
from common.data import span_boundary
from common.data import tokenizer as tokenizer_lib
from common.errors import UserError
from common.train import frozen as frozen_lib
from common.train import loop
from common.train import objectives
from common.train import optimizers
from common.train import sharding
from common.train import train_step as train_step_lib

# Distinct host batches cycled through the timed steps (each its own transfer).
HOST_BATCHES = 4
# Fields that hold one value per example: a random class in {0, 1}.
_PER_EXAMPLE = ('next_sentence_label', 'sentence_order_label', 'label')


def synthetic_batch(config, keys: tuple[str, ...], seed: int = 0) -> dict[str, np.ndarray]:
  """One host batch [train.batch_size, data.max_seq_length] with the fields `keys`.

  Rows are full length (no padding, the pipeline's worst case): [CLS] A [SEP] B [SEP]
  of random non-special ids (token types 0 then 1; all 0 without a type table), masked by the recipe's token-level rule
  (common/data/masking.py `mask_tokens` with `config.masking`'s rates and budget; the
  shape is what matters, so any `masking.strategy` is timed with token masking), the
  span-boundary fields from the masked positions, random sentence labels.

  Raises:
    UserError: a field no synthetic value is known for.
  """
  rows, length = config.train.batch_size, config.data.max_seq_length
  vocab, cfg = config.model.vocab_size, config.masking
  specials = np.asarray((tokenizer_lib.PAD_ID, tokenizer_lib.UNK_ID, tokenizer_lib.CLS_ID,
                         tokenizer_lib.SEP_ID, tokenizer_lib.MASK_ID), np.int32)
  if vocab <= len(specials):
    raise UserError(f'model.vocab_size {vocab} leaves no ordinary tokens')
  rng = np.random.default_rng(seed)
  ordinary = np.arange(len(specials), vocab, dtype=np.int32)
  ids_BxL = rng.integers(len(specials), vocab, (rows, length), dtype=np.int32)
  middle = length // 2
  ids_BxL[:, 0] = tokenizer_lib.CLS_ID
  ids_BxL[:, [middle, length - 1]] = tokenizer_lib.SEP_ID
  segments_BxL = np.broadcast_to(np.arange(length) > middle, (rows, length))
  if config.model.type_vocab_size < 2:  # One segment (RoBERTa): token type 0 throughout.
    segments_BxL = np.zeros_like(segments_BxL)
  fields = [masking.mask_tokens(
      row, rng, mask_id=tokenizer_lib.MASK_ID, pad_id=tokenizer_lib.PAD_ID,
      special_ids=specials, random_token_ids=ordinary,
      max_predictions=cfg.max_predictions_per_seq, mask_prob=cfg.mask_prob,
      mask_token_prob=cfg.mask_token_prob, random_token_prob=cfg.random_token_prob,
      budget=cfg.budget) for row in ids_BxL]
  for row in fields:
    row.update(span_boundary.boundary_targets(row['masked_positions'],
                                              row['masked_weights'], length))
  batch = {k: np.stack([row[k] for row in fields]) for k in fields[0]}
  batch.update(segment_ids=segments_BxL.astype(np.int32),
               attention_mask=np.ones((rows, length), np.int32),
               example_weight=np.ones((rows,), np.float32))
  for key in _PER_EXAMPLE:
    batch[key] = rng.integers(0, 2, (rows,), dtype=np.int32)
  missing = [k for k in keys if k not in batch]
  if missing:
    raise UserError(f'the benchmark has no synthetic values for batch fields {missing}')
  return {k: batch[k] for k in keys}


def spread(seconds: list[float]) -> dict[str, float]:
  """Median, 10th and 90th percentile, min and max of step times, in milliseconds."""
  ms = np.asarray(seconds) * 1e3
  return {'median': float(np.median(ms)), 'p10': float(np.percentile(ms, 10)),
          'p90': float(np.percentile(ms, 90)), 'min': float(ms.min()),
          'max': float(ms.max())}


def _cost(compiled) -> dict[str, float]:
  """XLA's own FLOP and byte counts of one compiled step (empty where unsupported)."""
  try:
    analysis = compiled.cost_analysis()
  except Exception:  # pylint: disable=broad-except
    return {}
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else {}
  return {k: float(analysis[k]) for k in ('flops', 'bytes accessed') if k in (analysis or {})}


def _accelerator_memory_stats() -> dict | None:
  """The first local device's memory statistics; None on CPU (XLA:CPU keeps none)."""
  device = jax.local_devices()[0]
  return device.memory_stats() if device.platform != 'cpu' else None


def peak_memory_bytes() -> tuple[int, str]:
  """(peak bytes, what was measured): device peak on accelerators, else the process's
  peak resident set."""
  stats = _accelerator_memory_stats()
  if stats and 'peak_bytes_in_use' in stats:
    return int(stats['peak_bytes_in_use']), 'device peak'
  return peak_memory.peak_rss_bytes(), 'peak RSS'


@dataclasses.dataclass
class StepTiming:
  """What `time_train_step` measured (times in seconds, one entry per timed step)."""
  compile_s: float
  step_seconds: list[float]
  cpu_seconds: list[float]
  tokens_per_step: int
  flops_per_token: float
  xla_cost: dict[str, float]
  parameters: int

  @property
  def median_ms(self) -> float:
    return 1e3 * statistics.median(self.step_seconds)

  @property
  def tokens_per_sec(self) -> float:
    return self.tokens_per_step / statistics.median(self.step_seconds)


class StepTimer:
  """The train step `launch.train` would run for a config, compiled once, timed in as
  many rounds as asked (`run`), its timings collected (`timing`).

  Args:
    config: an experiment ConfigDict (`objectives.configure` already applied).
    seed: of the synthetic batches.
    objective: the config's objective when the caller built it already.

  Raises:
    UserError: a config the train loop would refuse (a distillation recipe without
      its teacher, `teacher.path`, among them).
  """

  def __init__(self, config, seed: int = 0, objective=None):
    loop.check_train_config(config.train)
    optimizers.check_config(config.optimizer)
    objective = objective or objectives.get_objective(config)
    self._keys = keys = objective.batch_keys
    self._mesh = mesh = sharding.make_mesh(config.mesh.shape, dcn_data=config.mesh.dcn_data)
    loop.check_devices(config, mesh)
    dp = sharding.data_parallel_size(mesh)
    tx, schedule = optimizers.make_optimizer(config.optimizer, config.train.steps,
                                             config.model.num_layers)
    self._host_batches = [synthetic_batch(config, keys, seed + i)
                          for i in range(HOST_BATCHES)]
    init_rng, self._rng = jax.random.split(jax.random.PRNGKey(config.seed))
    init_batch = {k: jnp.asarray(np.repeat(self._host_batches[0][k][:1], dp, axis=0))
                  for k in keys}
    with sharding.mesh_context(mesh):
      frozen = None
      if objective.frozen is not None:  # A distillation teacher: loaded as train does.
        frozen = frozen_lib.place(objective.frozen, frozen_lib.resolve(objective.frozen),
                                  init_batch, mesh)
      self._state, shardings = train_step_lib.init_train_state(objective, tx, init_batch,
                                                               init_rng, mesh, frozen)
      step_fn = train_step_lib.make_train_step(objective, tx, schedule, shardings, mesh,
                                               config.train.grad_accum_steps)
      batch = loop.global_batch(self._host_batches[0], mesh, keys)
      start = time.perf_counter()
      self._compiled = step_fn.lower(self._state, batch, self._rng).compile()
    check_fits(self._compiled, config, dp)
    self.timing = StepTiming(
        compile_s=time.perf_counter() - start, step_seconds=[], cpu_seconds=[],
        tokens_per_step=config.train.batch_size * config.data.max_seq_length,
        flops_per_token=objective.flops_per_token, xla_cost=_cost(self._compiled),
        parameters=int(sum(x.size for x in jax.tree.leaves(self._state.params))))
    self._steps_run = 0

  def hlo_text(self) -> str:
    """The compiled step's HLO module, as text."""
    return self._compiled.as_text()

  def run(self, steps: int, warmup: int, record: bool = True) -> None:
    """Runs `warmup` untimed steps, then times `steps` more into `timing` (unless
    `record` is False: steps under the profiler)."""
    if steps < 1 or warmup < 0:
      raise UserError(f'--steps must be >= 1 and warm-up >= 0, got {steps}, {warmup}')
    with sharding.mesh_context(self._mesh):
      for i in range(warmup + steps):
        host = self._host_batches[self._steps_run % HOST_BATCHES]
        self._steps_run += 1
        start, cpu_start = time.perf_counter(), time.process_time()
        batch = loop.global_batch(host, self._mesh, self._keys)
        self._state, metrics = self._compiled(self._state, batch, self._rng)
        jax.block_until_ready((self._state, metrics))
        if i >= warmup and record:
          self.timing.step_seconds.append(time.perf_counter() - start)
          self.timing.cpu_seconds.append(time.process_time() - cpu_start)
    if not np.isfinite(float(metrics['loss'][0])):
      raise UserError('the benchmarked step gave a non-finite loss')


def time_train_step(config, *, steps: int = 10, warmup: int = 2,
                    seed: int = 0) -> StepTiming:
  """Compiles the train step for `config` and times `steps` steps after `warmup`."""
  timer = StepTimer(config, seed)
  timer.run(steps, warmup)
  return timer.timing


def free_bytes_per_device() -> int | None:
  """Memory one more allocation can take per local device: the accelerator's limit
  less what is in use, or the host's available memory shared by its CPU devices
  (None where neither is known)."""
  stats = _accelerator_memory_stats()
  if stats and 'bytes_limit' in stats:
    return int(stats['bytes_limit'] - stats.get('bytes_in_use', 0))
  try:
    with open('/proc/meminfo') as f:
      for line in f:
        if line.startswith('MemAvailable:'):
          return int(line.split()[1]) * 1024 // len(jax.local_devices())
  except OSError:
    pass
  return None


def check_fits(compiled, config, data_parallel: int) -> None:
  """UserError when one step's new buffers (XLA's temporaries and un-donated outputs,
  per device) exceed the free memory, naming a batch size that would fit: the command
  says so instead of being killed mid-step."""
  try:
    stats = compiled.memory_analysis()
    need = stats.temp_size_in_bytes + stats.output_size_in_bytes - stats.alias_size_in_bytes
  except Exception:  # pylint: disable=broad-except
    return
  free = free_bytes_per_device()
  if free is None or need <= free:
    return
  batch, unit = config.train.batch_size, data_parallel * config.train.grad_accum_steps
  fits = int(batch * 0.9 * free / need) // unit * unit  # 10% margin: estimates.
  hint = (f'try --config.train.batch_size={fits}' if fits >= unit else
          'try a smaller model, a shorter data.max_seq_length or more devices')
  raise UserError(
      f'one train step of {config.name} at batch {batch} x {config.data.max_seq_length} '
      f'needs {need / 2**30:.1f} GiB per device beyond the train state and '
      f'{free / 2**30:.1f} GiB is free: {hint} (or raise train.grad_accum_steps, or '
      "set model.remat_policy 'full')")


def matmul_roofline(dtype: str = 'float32', size: int = 2048, repeats: int = 5) -> float:
  """FLOP/s of one jitted [size, size] x [size, size] matmul on the default device, the
  best of `repeats` runs (2 size^3 FLOPs each): what model FLOP/s is read against."""
  jnp_dtype = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}[dtype]
  keys = jax.random.split(jax.random.PRNGKey(0))
  a, b = (jax.random.normal(k, (size, size), jnp_dtype) for k in keys)
  matmul = jax.jit(lambda x, y: jnp.dot(x, y, preferred_element_type=jnp.float32))
  jax.block_until_ready(matmul(a, b))
  best = float('inf')
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(matmul(a, b))
    best = min(best, time.perf_counter() - start)
  return 2.0 * size ** 3 / best


def pipeline_rate(config, *, batches: int = 20, warmup: int = 2) -> tuple[float, str]:
  """(examples/s, note) of the config's real input pipeline alone (common/data/
  pipeline.py with `train.data_threads` threads), this host's batches.

  Built in a temporary workdir (the tokenizer is trained there). When the corpus cannot
  give a tokenizer of `model.vocab_size` pieces (the paper sizes' 30k on the small
  default corpus), it is measured with the largest vocabulary the corpus gives, which
  the note says: masking and batching cost the same at any vocabulary size.
  """
  from common.data import pipeline  # pylint: disable=g-import-not-at-top
  config = config.copy_and_resolve_references()
  note = ''
  with tempfile.TemporaryDirectory() as workdir:
    try:
      data = pipeline.build_data(config, workdir)
    except tokenizer_lib.CorpusTooSmall as e:
      supported = e.supported
      note = (f'pipeline measured with a {supported}-piece tokenizer (the corpus gives '
              f'no {config.model.vocab_size})')
      config.model.vocab_size = config.tokenizer.vocab_size = supported
      data = pipeline.build_data(config, workdir)
    iterator = iter(data.train.to_iter_dataset(
        pipeline.read_options(config.train.data_threads)))
    for _ in range(warmup):
      next(iterator)
    start = time.perf_counter()
    rows = sum(len(next(iterator)['input_ids']) for _ in range(batches))
    rate = rows / (time.perf_counter() - start)
    del iterator  # Stops its threads before anything else is timed.
  return rate, note

