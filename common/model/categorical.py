"""Sampling from softmax(logits) with one uniform number per row.

ELECTRA's generator samples a token at every masked position from its softmax over the
vocabulary (Clark et al. 2020, section 2). The reference implementation (and
`jax.random.categorical`) does it by Gumbel-max: a uniform number and two logarithms
per vocabulary entry, then an arg-max. For ELECTRA-Small's generator logits
[32 x 19, 30522] that is 18.5M random numbers and three passes over the array per
step: ~130 ms of a ~2 s step on 2 CPU cores (`python -m launch.benchmark` on
experiments/electra.py:small, profiled).

`sample` inverts the cumulative distribution instead, the same distribution from one
uniform number per row: the unnormalised probabilities exp(logits - max) are summed
in blocks of `BLOCK` entries, the block holding u * total is found on the (short)
cumulative sum of block sums, and the entry inside that block on the cumulative sum
of its `BLOCK` probabilities. Float32 rounding of these sums moves probability mass
between neighbouring entries by ~1e-7 of the total; an entry of probability exactly 0
(logit -inf, or exp underflowing) is never returned.
"""

import jax
import jax.numpy as jnp

# Entries per block: the cumulative sums run over V / BLOCK block sums and BLOCK
# entries, both short, instead of over V.
BLOCK = 128


def _first_above(cdf_NxK: jax.Array, u_N: jax.Array, positive_NxK: jax.Array) -> jax.Array:
  """The first k with cdf[k] > u, kept among the k of positive mass (float rounding
  could otherwise step onto a zero-mass neighbour at either end)."""
  k = jnp.sum(cdf_NxK <= u_N[:, None], axis=-1, dtype=jnp.int32)
  iota = jax.lax.broadcasted_iota(jnp.int32, cdf_NxK.shape, 1)
  size = cdf_NxK.shape[-1]
  first = jnp.min(jnp.where(positive_NxK, iota, size), axis=-1)
  last = jnp.max(jnp.where(positive_NxK, iota, -1), axis=-1)
  return jnp.clip(k, first, last)


def sample(rng: jax.Array, logits: jax.Array, temperature: float = 1.0) -> jax.Array:
  """int32 indices [...] drawn from softmax(logits / temperature) over the last axis.

  Args:
    rng: a PRNG key.
    logits: [..., V] float; rows need one finite entry.
    temperature: divides the logits (ELECTRA samples at 1).
  """
  *lead, vocab = logits.shape
  x_NxV = logits.reshape(-1, vocab).astype(jnp.float32) / temperature
  rows = x_NxV.shape[0]
  blocks = -(-vocab // BLOCK)
  p_NxV = jnp.exp(x_NxV - jnp.max(x_NxV, axis=-1, keepdims=True))
  p_NxKxB = jnp.pad(p_NxV, ((0, 0), (0, blocks * BLOCK - vocab))).reshape(
      rows, blocks, BLOCK)
  mass_NxK = jnp.sum(p_NxKxB, axis=-1)
  cdf_NxK = jnp.cumsum(mass_NxK, axis=-1)
  u_N = jax.random.uniform(rng, (rows,), jnp.float32) * cdf_NxK[:, -1]
  block_N = _first_above(cdf_NxK, u_N, mass_NxK > 0)
  chosen_Nx1 = block_N[:, None]
  start_N = (jnp.take_along_axis(cdf_NxK, chosen_Nx1, axis=1)
             - jnp.take_along_axis(mass_NxK, chosen_Nx1, axis=1))[:, 0]
  p_NxB = jnp.take_along_axis(p_NxKxB, chosen_Nx1[:, :, None], axis=1)[:, 0]
  entry_N = _first_above(jnp.cumsum(p_NxB, axis=-1), u_N - start_N, p_NxB > 0)
  return (block_N * BLOCK + entry_N).reshape(lead)
