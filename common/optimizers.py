"""Optimizers and learning-rate schedules named by the experiment file.

AdamW as BERT trains it (google-research/bert optimization.py): linear warmup then linear
decay to zero, global-norm clipping, and no weight decay on LayerNorm parameters or
biases. The decay mask is decided by parameter name: only 'kernel' and 'embedding'
leaves decay.
"""

from typing import Any

import jax
import optax

from common.errors import UserError

DECAYED_PARAM_NAMES = ('kernel', 'embedding')


def decay_mask(params: Any) -> Any:
  """True for weights that take weight decay: dense kernels and embedding tables."""

  def is_decayed(path, _):
    return getattr(path[-1], 'key', None) in DECAYED_PARAM_NAMES

  return jax.tree_util.tree_map_with_path(is_decayed, params)


def warmup_linear_decay(peak: float, warmup_steps: int,
                        total_steps: int) -> optax.Schedule:
  """0 -> peak linearly over warmup_steps, then peak -> 0 linearly at total_steps."""
  warmup_steps = min(warmup_steps, total_steps)
  return optax.join_schedules(
      [optax.linear_schedule(0.0, peak, max(warmup_steps, 1)),
       optax.linear_schedule(peak, 0.0, max(total_steps - warmup_steps, 1))],
      boundaries=[warmup_steps])


def make_schedule(opt_config, total_steps: int) -> optax.Schedule:
  """The learning-rate schedule from `config.optimizer`."""
  name = opt_config.get('schedule', 'warmup_linear_decay')
  if name == 'warmup_linear_decay':
    return warmup_linear_decay(opt_config.learning_rate, opt_config.warmup_steps,
                               total_steps)
  if name == 'constant':
    return optax.constant_schedule(opt_config.learning_rate)
  raise UserError(f'unknown learning-rate schedule {name!r}; '
                  "known: 'warmup_linear_decay', 'constant'")


def make_optimizer(opt_config, total_steps: int) -> tuple[
    optax.GradientTransformation, optax.Schedule]:
  """Builds `config.optimizer` into an optax transformation and its schedule.

  Fields: name ('adamw'), learning_rate, warmup_steps, b1, b2, eps, weight_decay,
  clip_norm (None or 0 = no clipping), schedule.
  """
  schedule = make_schedule(opt_config, total_steps)
  name = opt_config.get('name', 'adamw')
  if name == 'adamw':
    core = optax.adamw(schedule, b1=opt_config.b1, b2=opt_config.b2, eps=opt_config.eps,
                       weight_decay=opt_config.weight_decay, mask=decay_mask)
  else:
    raise UserError(f"unknown optimizer {name!r}; known: 'adamw'")
  clip = opt_config.get('clip_norm', None)
  tx = optax.chain(optax.clip_by_global_norm(clip), core) if clip else core
  return tx, schedule
