"""Optimizers and learning-rate schedules named by the experiment file.

AdamW as BERT trains it (google-research/bert optimization.py): linear warmup then linear
decay to zero, global-norm clipping, and no weight decay on LayerNorm parameters or
biases. The decay mask is decided by parameter name: only 'kernel' and 'embedding'
leaves decay.

LAMB as ALBERT trains it (You et al. 2020, arXiv:1904.00962; google-research/albert
lamb_optimizer.py): the Adam direction plus weight decay, scaled per parameter tensor by
the trust ratio ||w|| / ||update|| (1 where either norm is 0). The reference excludes
LayerNorm and bias from weight decay AND from the trust ratio
(`exclude_from_layer_adaptation` defaults to `exclude_from_weight_decay`), so both use
the same mask here; optax.lamb's mask covers only the decay.
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


def lamb(learning_rate: optax.ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999,
         eps: float = 1e-6, weight_decay: float = 0.01,
         mask: Any = decay_mask) -> optax.GradientTransformation:
  """LAMB with one mask for weight decay and the layer-wise trust ratio.

  Leaves outside `mask` take the plain (bias-corrected) Adam step; leaves inside take
  (adam + weight_decay * w) * ||w|| / ||adam + weight_decay * w||. As optax.lamb (and
  the LAMB paper), Adam's moments are bias-corrected; the ALBERT reference skips the
  correction, which only changes the first few hundred (warmup) steps.
  """
  return optax.chain(
      optax.scale_by_adam(b1=b1, b2=b2, eps=eps),
      optax.add_decayed_weights(weight_decay, mask),
      optax.masked(optax.scale_by_trust_ratio(), mask),
      optax.scale_by_learning_rate(learning_rate))


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

  Fields: name ('adamw' or 'lamb'), learning_rate, warmup_steps, b1, b2, eps, weight_decay,
  clip_norm (None or 0 = no clipping), schedule.
  """
  schedule = make_schedule(opt_config, total_steps)
  name = opt_config.get('name', 'adamw')
  builders = {'adamw': optax.adamw, 'lamb': lamb}
  if name not in builders:
    raise UserError(f"unknown optimizer.name {name!r}; known: 'adamw', 'lamb'")
  core = builders[name](schedule, b1=opt_config.b1, b2=opt_config.b2,
                        eps=opt_config.eps, weight_decay=opt_config.weight_decay,
                        mask=decay_mask)
  clip = opt_config.get('clip_norm', None)
  tx = optax.chain(optax.clip_by_global_norm(clip), core) if clip else core
  return tx, schedule
