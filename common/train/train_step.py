"""The one train step shared by every recipe, and the evaluation step.

`train_step(state, batch, rng) -> (state, metrics)`: the objective's loss is
differentiated, optionally over several micro-batches (gradient accumulation with
`lax.scan`, so one step is always one optimizer update), and the optimizer applied. It is
compiled with `jax.jit` and explicit `NamedSharding`s for the state (from the parameters'
logical axis names) and the batch (split over the data axes); the parameters are donated.

Frozen parameters (`TrainState.frozen`, common/train/frozen.py: a distillation teacher,
a frozen encoder) ride along in the state with their own shardings: the loss reads
them under stop_gradient, they get no gradient and no optimizer state, and the step
returns them unchanged.
"""

from typing import Any

import flax.linen as nn
from flax import struct
import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec
import optax

from common.train import metrics as metrics_lib
from common.train import sharding
from common.errors import UserError
from common.train.objectives import Objective

# The metric that flags a step whose update was dropped (common/train/nonfinite.py).
NONFINITE = 'nonfinite'


class TrainState(struct.PyTreeNode):
  """Everything the optimizer loop carries.

  Attributes:
    step: the number of optimizer updates so far.
    params: the trained parameters.
    opt_state: the optimizer's state for `params`.
    frozen: parameters the loss reads and nothing updates (None when the objective has
      none); not saved in checkpoints (common/train/checkpoint.py).
  """
  step: jax.Array
  params: Any
  opt_state: Any
  frozen: Any = None


def loss_with_frozen(objective: Objective, frozen: Any):
  """The objective's `loss_fn(params, batch, rng, deterministic)` with the frozen
  parameters bound as its `frozen` argument, under stop_gradient."""
  if objective.frozen is None:
    return objective.loss_fn
  frozen = jax.lax.stop_gradient(frozen)
  return lambda params, batch, rng, deterministic: objective.loss_fn(
      params, batch, rng, deterministic, frozen=frozen)


def init_train_state(objective: Objective, tx: optax.GradientTransformation,
                     example_batch: dict, rng: jax.Array, mesh: Mesh,
                     frozen: tuple[Any, Any] | None = None) -> tuple[TrainState, Any]:
  """Initialises parameters and optimizer state directly in their sharded layout.

  The state is first traced with `jax.eval_shape` to read its logical axis names, then
  built by a `jax.jit` whose out_shardings place every array where it lives in training
  (big_vision's "shard & transfer", without ever materialising it unsharded).
  Call it under `sharding.mesh_context(mesh)`.

  Args:
    frozen: (values, shardings) of the objective's frozen parameters, already placed
      (common/train/frozen.py `place`), or None.

  Returns:
    (state, state_shardings).
  """

  def init(rng):
    variables = objective.model.init({'params': rng, 'dropout': rng}, example_batch,
                                     deterministic=True)
    params = variables['params']
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      opt_state=tx.init(params))

  abstract = jax.eval_shape(init, rng)
  shardings = sharding.logical_shardings(abstract, mesh)
  state = jax.jit(lambda r: nn.unbox(init(r)), out_shardings=shardings)(rng)
  if frozen is not None:
    state = state.replace(frozen=frozen[0])
    shardings = shardings.replace(frozen=frozen[1])
  return state, shardings


def accumulated_gradients(loss_fn, params, batch, rng, accum_steps: int):
  """Mean loss, summed metrics and mean gradients over `accum_steps` micro-batches.

  `loss_fn(params, batch, rng, deterministic) -> (loss, metrics)`.
  """
  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
  if accum_steps == 1:
    (loss, metrics), grads = grad_fn(params, batch, rng, False)
    return loss, metrics, grads

  def split(x):
    if x.shape[0] % accum_steps:
      raise UserError(f'batch of {x.shape[0]} rows does not split into '
                      f'{accum_steps} accumulation steps')
    # Row r of micro-batch m is row r * accum_steps + m: each device keeps its rows.
    x = x.reshape((x.shape[0] // accum_steps, accum_steps) + x.shape[1:])
    return jnp.swapaxes(x, 0, 1)

  micro_batches = jax.tree.map(split, batch)

  def body(carry, xs):
    grads_sum, metrics_sum, loss_sum = carry
    micro_batch, index = xs
    (loss, metrics), grads = grad_fn(params, micro_batch, jax.random.fold_in(rng, index),
                                     False)
    return (jax.tree.map(jnp.add, grads_sum, grads),
            jax.tree.map(jnp.add, metrics_sum, metrics), loss_sum + loss), None

  first = jax.tree.map(lambda x: x[0], micro_batches)
  _, metrics_shape = jax.eval_shape(lambda: loss_fn(params, first, rng, False))
  zeros = lambda tree: jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), tree)
  (grads, metrics, loss), _ = jax.lax.scan(
      body, (zeros(params), zeros(metrics_shape), jnp.zeros((), jnp.float32)),
      (micro_batches, jnp.arange(accum_steps)))
  # The per-micro-batch 'loss' entries are (loss, 1) pairs; their sum is averaged later.
  return loss / accum_steps, metrics, jax.tree.map(lambda g: g / accum_steps, grads)


# The pseudo-random generator of the train step's dropout masks and samples (ELECTRA's
# generator): Threefry-4x32-20 (Salmon et al. 2011, "Parallel random numbers: as easy
# as 1, 2, 3"). JAX lowers it to one unrolled elementwise kernel on every backend,
# while its default threefry2x32 becomes a rolled loop on CPU that writes both 32-bit
# words to memory five times: 7-11x slower per random number on 2 CPU cores (a dropout
# mask [32, 4, 128, 128]: 16 ms against 2.4 ms). Same distributions, other streams.
# (Philox-4x32 is as fast on one device but its mulhi cannot be partitioned.)
STEP_RNG_IMPL = 'threefry4x32'


def step_key(rng: jax.Array, step: jax.Array) -> jax.Array:
  """The key of one step: `rng` (a raw uint32[2] key or a typed threefry key) folded
  with the step, hashed into a `STEP_RNG_IMPL` key."""
  folded = jax.random.fold_in(rng, step)
  words = jax.random.bits(folded, (4,), jnp.uint32)
  return jax.random.wrap_key_data(words, impl=STEP_RNG_IMPL)


def make_train_step(objective: Objective, tx: optax.GradientTransformation,
                    schedule: optax.Schedule, state_shardings: Any, mesh: Mesh,
                    accum_steps: int = 1):
  """The jitted `(state, batch, rng) -> (state, metrics)` for this objective.

  The step's dropout rng is `step_key(rng, state.step)`, so a resumed run draws exactly
  the same randomness as an uninterrupted one. `metrics[NONFINITE]` is (1, 1) when
  the step found a NaN/inf loss, gradient or update and kept the old state, else (0, 1).
  """

  def step_fn(state: TrainState, batch: dict, rng: jax.Array):
    step_rng = step_key(rng, state.step)
    loss, metrics, grads = accumulated_gradients(
        loss_with_frozen(objective, state.frozen), state.params, batch, step_rng,
        accum_steps)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    grad_norm, param_norm = optax.tree.norm(grads), optax.tree.norm(params)
    # The non-finite guard (common/train/nonfinite.py), on the device: a NaN/inf loss,
    # gradient or update keeps the old parameters and optimizer state, and the step
    # only reports it (the host reads the flag when it synchronises anyway).
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & jnp.isfinite(param_norm)
    keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
    params, opt_state = keep(params, state.params), keep(opt_state, state.opt_state)
    metrics = dict(metrics)
    metrics['grad_norm'] = metrics_lib.scalar(grad_norm)
    metrics['param_norm'] = metrics_lib.scalar(param_norm)
    metrics['learning_rate'] = metrics_lib.scalar(schedule(state.step))
    # A skipped step's metrics are left out of the averages.
    metrics = jax.tree.map(lambda x: jnp.where(finite, x, jnp.zeros_like(x)), metrics)
    metrics[NONFINITE] = metrics_lib.scalar(jnp.logical_not(finite))
    return state.replace(step=state.step + 1, params=params,
                         opt_state=opt_state), metrics

  replicated = NamedSharding(mesh, PartitionSpec())
  data = {k: sharding.batch_sharding(mesh) for k in objective.batch_keys}
  return jax.jit(step_fn, in_shardings=(state_shardings, data, replicated),
                 out_shardings=(state_shardings, replicated), donate_argnums=(0,))


def make_predict_step(objective: Objective, state_shardings: Any, mesh: Mesh):
  """The jitted `(params, frozen, batch) -> per-example outputs` of
  `objective.predict_fn` (e.g. a classifier's predictions) beside the batch's own
  fields (labels, weights), replicated so every host reads the whole global batch."""

  def predict_fn(params, frozen, batch):
    del frozen  # No objective with a predict_fn reads frozen parameters yet.
    return {**batch, **objective.predict_fn(params, batch)}

  replicated = NamedSharding(mesh, PartitionSpec())
  data = {k: sharding.batch_sharding(mesh) for k in objective.batch_keys}
  return jax.jit(predict_fn, in_shardings=(state_shardings.params,
                                           state_shardings.frozen, data),
                 out_shardings=replicated)


def make_eval_step(objective: Objective, state_shardings: Any, mesh: Mesh):
  """The jitted `(params, frozen, batch) -> metrics` without dropout."""

  def eval_fn(params, frozen, batch):
    loss_fn = loss_with_frozen(objective, frozen)
    _, metrics = loss_fn(params, batch, jax.random.key(0), True)
    return metrics

  replicated = NamedSharding(mesh, PartitionSpec())
  data = {k: sharding.batch_sharding(mesh) for k in objective.batch_keys}
  return jax.jit(eval_fn, in_shardings=(state_shardings.params, state_shardings.frozen,
                                        data),
                 out_shardings=replicated)
