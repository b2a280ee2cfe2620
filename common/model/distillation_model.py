"""The two networks of a distillation run: a student and its frozen teacher.

Both are the shared encoder with BERT's MLM head, named as `MaskedLMModel` names them
('encoder', 'mlm_head'), so a teacher loads from any MLM-style checkpoint by name and a
student exports like any MLM model. What only distillation needs:
- logits at any positions: every real token (DistilBERT's soft targets cover the whole
  sequence) or the masked positions;
- TinyBERT's learned projection of the student's hidden states to the teacher's width
  ('hidden_projection', Jiao et al. 2020 eq. 8: H^S W_h), one shared by every mapped
  layer as the reference code's `fit_dense`, or one per layer as the paper writes it.
  Export leaves it out: no HF architecture has it.
TinyBERT's task stage distils a fine-tuned classifier into a smaller one
(`DistillationClassifier`: the shared `SequenceClassifier` with the same projection).
Per-layer hidden states and attention scores come from the encoder's 'intermediates'
(common/model/encoder.py `layer_intermediates`), asked for with
`apply(..., mutable=['intermediates'])`.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from common.model import classifier
from common.model import encoder as encoder_lib
from common.model import heads

Array = jax.Array


class HiddenProjection(nn.Module):
  """Student width -> teacher width: `count` dense maps (1 = shared by every layer,
  else one for the embedding output and one per layer).

  Params: 'kernel' [count, H_student, H_teacher], 'bias' [count, H_teacher].
  """
  config: Any
  width: int
  count: int = 1

  @nn.compact
  def __call__(self, hidden_NxBxLxH: Array, indices: tuple[int, ...]) -> Array:
    """N stacked hidden states -> [N, B, L, width]; state n goes through map
    indices[n] (0 = the embedding output, l = layer l's output; ignored when shared)."""
    spec = encoder_lib.EncoderSpec.from_config(self.config)
    kernel = self.param('kernel', encoder_lib.kernel_init(spec, ('layers', 'embed',
                                                                 'embed_out')),
                        (self.count, spec.hidden_size, self.width), jnp.float32)
    bias = self.param('bias', encoder_lib.zeros_init(('layers', 'embed_out')),
                      (self.count, self.width), jnp.float32)
    chosen = jnp.asarray([0 if self.count == 1 else i for i in indices], jnp.int32)
    kernel, bias = kernel[chosen], bias[chosen]
    x, kernel, bias = nn.dtypes.promote_dtype(hidden_NxBxLxH, kernel, bias,
                                              dtype=spec.compute_dtype)
    return jnp.einsum('nblh,nhw->nblw', x, kernel) + bias[:, None, None, :]


class DistillationModel(nn.Module):
  """Encoder + MLM head (+ TinyBERT's hidden projection): a student or a teacher.

  Attributes:
    config: the model config (common/model/encoder.py).
    with_mlm_head: False for a teacher read only for its hidden states and attention
      (TinyBERT's general distillation from a checkpoint without an MLM head).
    projection_width: the teacher's hidden size, for a student with a projection;
      0 = none.
    projection_count: 1 (shared) or one per projected state.
  """
  config: Any
  with_mlm_head: bool = True
  projection_width: int = 0
  projection_count: int = 1

  def setup(self):
    self.encoder = encoder_lib.Encoder(self.config)
    if self.with_mlm_head:
      self.mlm_head = heads.MaskedLMHead(self.config)
    if self.projection_width:
      self.hidden_projection = HiddenProjection(self.config, self.projection_width,
                                                self.projection_count)

  def __call__(self, batch: dict[str, Array], *, deterministic: bool = True,
               positions_BxP: Array | None = None) -> dict[str, Array]:
    """'hidden' [B, L, H] and, with the head, 'mlm_logits' [B, P, V] float32 at
    `positions_BxP` (default: the batch's masked_positions)."""
    hidden_BxLxH = self.encoder(batch['input_ids'], batch.get('segment_ids'),
                                batch['attention_mask'], deterministic=deterministic)
    out = {'hidden': hidden_BxLxH}
    if self.with_mlm_head:
      if positions_BxP is None:
        positions_BxP = batch['masked_positions']
      out['mlm_logits'] = self.mlm_head(hidden_BxLxH, positions_BxP,
                                               self.encoder.attend)
    if self.projection_width and self.is_initializing():
      self.project(hidden_BxLxH[None], (0,))  # Creates the projection's params.
    return out

  def project(self, hidden_NxBxLxH: Array, indices: tuple[int, ...]) -> Array:
    """Stacked hidden states (index 0 = embedding output, l = layer l) at the
    teacher's width."""
    return self.hidden_projection(hidden_NxBxLxH, indices)


class DistillationClassifier(classifier.SequenceClassifier):
  """A sequence classifier with TinyBERT's hidden projection: the student of task
  distillation's intermediate-layer stage.

  Params as `SequenceClassifier` ('encoder', 'pooler', 'classifier'), plus
  'hidden_projection' when `projection_width` > 0 (used only in training; the
  prediction stage and export drop it).
  """
  projection_width: int = 0
  projection_count: int = 1

  def setup(self):
    super().setup()
    if self.projection_width:
      self.hidden_projection = HiddenProjection(self.config, self.projection_width,
                                                self.projection_count)

  def __call__(self, batch: dict[str, Array], *, deterministic: bool = True) -> Array:
    """logits_BxK float32, as `SequenceClassifier`."""
    logits_BxK = super().__call__(batch, deterministic=deterministic)
    if self.projection_width and self.is_initializing():
      spec = encoder_lib.EncoderSpec.from_config(self.config)
      self.project(jnp.zeros((1, 1, 1, spec.hidden_size), jnp.float32), (0,))
    return logits_BxK

  def project(self, hidden_NxBxLxH: Array, indices: tuple[int, ...]) -> Array:
    """As `DistillationModel.project`."""
    return self.hidden_projection(hidden_NxBxLxH, indices)
