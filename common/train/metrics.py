"""Metrics as (sum, count) pairs, so averages stay exact across batches.

An objective returns `{'mlm_accuracy': (correct, n_masked), ...}`. Summing pairs over
gradient-accumulation micro-batches, devices and evaluation batches and dividing once at
the end weights every masked token equally, which a mean of per-batch means does not.
"""

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

Metrics = Mapping[str, tuple[jax.Array, jax.Array]]


def weighted(values: jax.Array, weights: jax.Array) -> tuple[jax.Array, jax.Array]:
  """A (sum, count) pair: sum(values * weights), sum(weights), both float32 scalars."""
  weights = weights.astype(jnp.float32)
  return (jnp.sum(values.astype(jnp.float32) * weights), jnp.sum(weights))


def scalar(value: jax.Array) -> tuple[jax.Array, jax.Array]:
  """A (value, 1) pair, for quantities that are already averages (loss, norms)."""
  return (jnp.asarray(value, jnp.float32), jnp.ones((), jnp.float32))


def add(a: Metrics | None, b: Metrics) -> Metrics:
  """Elementwise sum of two metric dicts with the same keys (None = empty)."""
  if a is None:
    return b
  return jax.tree.map(lambda x, y: x + y, a, b)


def average(metrics: Metrics) -> dict[str, float]:
  """Host-side floats: sum / count for each metric (nan when count is 0)."""
  out = {}
  for name, (total, count) in metrics.items():
    total, count = float(np.asarray(total)), float(np.asarray(count))
    out[name] = total / count if count else float('nan')
  return out
