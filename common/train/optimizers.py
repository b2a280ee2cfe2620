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

Layer-wise learning-rate decay as ELECTRA fine-tunes (Clark et al. 2020, Appendix A;
google-research/electra model/optimization.py `_get_layer_lrs`): the rate of a
parameter at depth d of an L-layer encoder is lr * decay^(L + 2 - d), with the
embeddings (and their projection) at depth 0, layer i at depth i + 1 and everything
above the encoder (pooler, task head) at depth L + 2, the full rate; so the top layer
trains at decay^2 and the embeddings at decay^(L + 2), as in the reference.
`optimizer.layer_decay` (1.0: off).
"""

from typing import Any

import jax
import jax.numpy as jnp
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


def layer_depth(path: tuple[str, ...], num_layers: int) -> int | None:
  """The depth of a parameter in the encoder, from its path of scope names.

  0 for the embeddings (and the factorized embedding's projection), i + 1 for
  'layer_<i>', None for a scanned 'layers' stack (one depth per slice of its leading
  axis) and L + 2 above the encoder. ALBERT's shared layers ('layer_group_<g>') take
  the top layer's depth L: they serve every layer.
  """
  for name in path:
    if name in ('embeddings', 'embedding_projection'):
      return 0
    if name == 'layers':
      return None
    if name.startswith('layer_group_'):
      return num_layers
    if name.startswith('layer_') and name[len('layer_'):].isdigit():
      return int(name[len('layer_'):]) + 1
  return num_layers + 2


def layer_decay_multipliers(params: Any, num_layers: int, decay: float) -> Any:
  """decay^(L + 2 - depth) per leaf: a float, or for a scanned layer stack an array
  [L, 1, ...] scaling each layer's slice."""

  def multiplier(path, leaf):
    names = tuple(str(getattr(k, 'key', k)) for k in path)
    depth = layer_depth(names, num_layers)
    if depth is None:
      depths = jnp.arange(1, leaf.shape[0] + 1, dtype=jnp.float32)
      return (decay ** (num_layers + 2 - depths)).reshape(
          (leaf.shape[0],) + (1,) * (leaf.ndim - 1))
    return decay ** (num_layers + 2 - depth)

  return jax.tree_util.tree_map_with_path(multiplier, params)


def scale_by_layer_decay(num_layers: int, decay: float) -> optax.GradientTransformation:
  """Multiplies each update by its layer's decay multiplier (stateless)."""

  def scale(updates, params=None):
    del params
    multipliers = layer_decay_multipliers(updates, num_layers, decay)
    return jax.tree.map(lambda u, m: u * m, updates, multipliers)

  return optax.stateless(scale)


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


OPTIMIZERS = ('adamw', 'lamb')
SCHEDULES = ('warmup_linear_decay', 'constant')
# The fields that shape the optimizer state: a checkpoint written under other values
# of these cannot be resumed (common/train/loop.py checks them against config.json).
STATE_FIELDS = ('name', 'clip_norm', 'layer_decay')


def check_config(opt_config) -> None:
  """Rejects optimizer settings that cannot work, before anything is built or written."""
  get = opt_config.get
  name = get('name', 'adamw')
  if name not in OPTIMIZERS:
    raise UserError(f'unknown optimizer.name {name!r}; known: {", ".join(OPTIMIZERS)}')
  schedule = get('schedule', 'warmup_linear_decay')
  if schedule not in SCHEDULES:
    raise UserError(f'unknown learning-rate schedule {schedule!r}; known: '
                    f'{", ".join(SCHEDULES)}')
  ranges = (('learning_rate', lambda v: v >= 0, '>= 0'),
            ('b1', lambda v: 0 <= v < 1, 'in [0, 1)'),
            ('b2', lambda v: 0 <= v < 1, 'in [0, 1)'),
            ('eps', lambda v: v > 0, '> 0'),
            ('weight_decay', lambda v: v >= 0, '>= 0'),
            ('warmup_steps', lambda v: v >= 0, '>= 0'),
            ('clip_norm', lambda v: v is None or v >= 0, '>= 0 (0: no clipping)'),
            ('layer_decay', lambda v: 0 < v <= 1, 'in (0, 1] (1: off)'))
  for field, ok, wanted in ranges:
    if field in opt_config and not ok(opt_config[field]):
      raise UserError(f'optimizer.{field} must be {wanted}, got {opt_config[field]}')


def state_fields(opt_config) -> dict[str, Any]:
  """What of `opt_config` shapes the optimizer state (see STATE_FIELDS)."""
  get = opt_config.get
  return {'name': get('name', 'adamw'), 'clip_norm': bool(get('clip_norm', None)),
          'layer_decay': get('layer_decay', 1.0) != 1.0}


def make_optimizer(opt_config, total_steps: int, num_layers: int = 0) -> tuple[
    optax.GradientTransformation, optax.Schedule]:
  """Builds `config.optimizer` into an optax transformation and its schedule.

  Fields: name ('adamw' or 'lamb'), learning_rate, warmup_steps, b1, b2, eps, weight_decay,
  clip_norm (None or 0 = no clipping), schedule, layer_decay (1.0 = off; needs the
  encoder's `num_layers`).
  """
  schedule = make_schedule(opt_config, total_steps)
  name = opt_config.get('name', 'adamw')
  builders = {'adamw': optax.adamw, 'lamb': lamb}
  if name not in builders:
    raise UserError(f"unknown optimizer.name {name!r}; known: 'adamw', 'lamb'")
  core = builders[name](schedule, b1=opt_config.b1, b2=opt_config.b2,
                        eps=opt_config.eps, weight_decay=opt_config.weight_decay,
                        mask=decay_mask)
  layer_decay = opt_config.get('layer_decay', 1.0)
  if not 0.0 < layer_decay <= 1.0:
    raise UserError(f'optimizer.layer_decay must be in (0, 1], got {layer_decay}')
  if layer_decay != 1.0:
    core = optax.chain(core, scale_by_layer_decay(num_layers, layer_decay))
  clip = opt_config.get('clip_norm', None)
  tx = optax.chain(optax.clip_by_global_norm(clip), core) if clip else core
  return tx, schedule
