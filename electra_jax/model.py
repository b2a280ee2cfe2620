"""ELECTRA's two networks in one module: a small MLM generator and the discriminator.

Clark et al. 2020, "ELECTRA: Pre-training Text Encoders as Discriminators Rather Than
Generators" (arXiv:2003.10555); reference: google-research/electra
`run_pretraining.py` (`PretrainingModel`, `get_generator_config`,
`_get_masked_lm_output`, `_get_discriminator_output`) and `model/modeling.py`.

Both networks are the shared `common.model.encoder.Encoder`, built twice at different sizes
(as the reference builds both with `build_transformer`). They share ONE embedding layer
(token, position and token-type tables and the embedding LayerNorm): a single
`common.model.encoder.Embeddings` module owned by `ElectraModel` feeds both encoders'
`transform`, so neither encoder creates a table of its own. Each network keeps its own
E -> H projection when its hidden size differs from E (the reference's
`embeddings_project` under each network's scope).

Parameters (top level of the param tree):
  'embeddings'          the shared tables and LayerNorm;
  'generator'           the generator encoder without embeddings;
  'generator_head'      dense(E, GeLU) -> LayerNorm -> shared table^T + bias;
  'discriminator'       the discriminator encoder without embeddings;
  'discriminator_head'  dense(H, GeLU) -> dense(1), the replaced-token detector.
`electra_jax/export.py` turns 'embeddings' + 'discriminator' into the params of a plain
`Encoder`.
"""

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from common.model import encoder as encoder_lib
from common.model import heads
from common.errors import UserError

Array = jax.Array

# The paper's generator sizes (section 3.2 / Table 6: 1/4 of the discriminator for
# Small and Large, 1/3 for Base); the reference flag is `generator_hidden_size`.
DEFAULT_GENERATOR_HIDDEN_FRACTION = 0.25


def generator_spec(model_config: Any) -> encoder_lib.EncoderSpec:
  """The generator's encoder spec, derived from the discriminator's model config.

  As the reference's `get_generator_config`: hidden = round(H * fraction), the same
  depth, FFN 4 x hidden, max(1, hidden // 64) heads; the embedding width E (shared)
  and everything else as the discriminator. The fraction is
  `model.generator_hidden_fraction` (1.0 = same size, as the released ELECTRA-Small++).
  """
  spec = encoder_lib.EncoderSpec.from_config(model_config)
  get = getattr(model_config, 'get', lambda key, default: default)
  fraction = get('generator_hidden_fraction', DEFAULT_GENERATOR_HIDDEN_FRACTION)
  if not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
    raise UserError(
        f'model.generator_hidden_fraction must be in (0, 1], got {fraction!r}')
  hidden = int(round(spec.hidden_size * fraction))
  num_heads = max(1, hidden // 64)
  if hidden < 1 or hidden % num_heads:
    raise UserError(
        f'model.generator_hidden_fraction {fraction} gives a generator of hidden size '
        f'{hidden}, which does not split into {num_heads} heads')
  return dataclasses.replace(spec, hidden_size=hidden, intermediate_size=4 * hidden,
                             num_heads=num_heads)


class ReplacedTokenHead(nn.Module):
  """The discriminator's per-token binary classifier: dense(H, act) -> dense(1).

  As `_get_discriminator_output` in the reference. hidden_BxLxH -> float32 logits_BxL
  (positive = "replaced").
  """
  config: Any

  @nn.compact
  def __call__(self, hidden_BxLxH: Array) -> Array:
    spec = encoder_lib.EncoderSpec.from_config(self.config)
    x_BxLxH = nn.Dense(
        spec.hidden_size, dtype=spec.compute_dtype, param_dtype=jnp.float32,
        kernel_init=encoder_lib.kernel_init(spec, ('embed', 'embed_out')),
        bias_init=encoder_lib.zeros_init(('embed_out',)), name='dense')(hidden_BxLxH)
    x_BxLxH = spec.activation(x_BxLxH)
    logits_BxLx1 = nn.Dense(
        1, dtype=spec.compute_dtype, param_dtype=jnp.float32,
        kernel_init=encoder_lib.kernel_init(spec, ('embed_out', 'classes')),
        bias_init=encoder_lib.zeros_init(('classes',)), name='prediction')(x_BxLxH)
    return logits_BxLx1[..., 0].astype(jnp.float32)


class ElectraModel(nn.Module):
  """Generator + discriminator with shared embeddings (see the module docstring).

  The objective (electra_jax/objective.py) calls `generate` on the masked input, samples
  and scatters the replacements, then calls `discriminate` on the corrupted input:
  two `apply` calls on the same params. `__call__` runs both networks on the batch as
  given; it exists so that `init` creates every parameter.

  Attributes:
    config: the discriminator's model ConfigDict (common/model/encoder.py fields) plus
      `generator_hidden_fraction`.
  """
  config: Any

  def setup(self):
    spec = encoder_lib.EncoderSpec.from_config(self.config)
    gen_spec = generator_spec(self.config)
    self.embeddings = encoder_lib.Embeddings(spec)
    # Only their `transform` is ever called, so neither creates an embedding table.
    self.generator = encoder_lib.Encoder(gen_spec)
    self.generator_head = heads.MaskedLMHead(gen_spec)
    self.discriminator = encoder_lib.Encoder(spec)
    self.discriminator_head = ReplacedTokenHead(spec)

  def __call__(self, batch: dict[str, Array], *,
               deterministic: bool = True) -> dict[str, Array]:
    """Both networks on `batch` as given: 'mlm_logits' [B, P, V], 'rtd_logits' [B, L]."""
    out = self.discriminate(batch['input_ids'], batch.get('segment_ids'),
                            batch['attention_mask'], deterministic=deterministic)
    return {'mlm_logits': self.generate(batch, deterministic=deterministic), **out}

  def generate(self, batch: dict[str, Array], *, deterministic: bool = True) -> Array:
    """Generator logits at the masked positions.

    Args:
      batch: input_ids (masked), segment_ids, attention_mask [B, L];
        masked_positions [B, P].
      deterministic: False enables dropout (needs a 'dropout' rng).

    Returns:
      logits_BxPxV, float32.
    """
    embedded_BxLxE = self.embeddings(batch['input_ids'], batch.get('segment_ids'),
                                     deterministic=deterministic)
    hidden_BxLxG = self.generator.transform(embedded_BxLxE, batch['attention_mask'],
                                            deterministic=deterministic)
    return self.generator_head(hidden_BxLxG, batch['masked_positions'],
                               self.embeddings.attend)

  def discriminate(self, input_ids_BxL: Array, segment_ids_BxL: Array | None,
                   attention_mask_BxL: Array, *,
                   deterministic: bool = True) -> dict[str, Array]:
    """Discriminator on (corrupted) ids: 'hidden' [B, L, H], 'rtd_logits' [B, L]."""
    embedded_BxLxE = self.embeddings(input_ids_BxL, segment_ids_BxL,
                                     deterministic=deterministic)
    hidden_BxLxH = self.discriminator.transform(embedded_BxLxE, attention_mask_BxL,
                                                deterministic=deterministic)
    return {'hidden': hidden_BxLxH, 'rtd_logits': self.discriminator_head(hidden_BxLxH)}
