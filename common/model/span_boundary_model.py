"""SpanBERT's pretraining model: the masked-LM model plus the span-boundary head.

Joshi et al. 2020, "SpanBERT: Improving Pre-training by Representing and Predicting
Spans" (arXiv:1907.10529), section 3.2. The SBO head reads the encoder outputs at
each masked span's outside boundaries (fields from common/data/span_boundary.py) and
predicts every token of the span through the same tied token table as the MLM head.
"""

import jax

from common.model import heads
from common.model import mlm_model


class SpanBoundaryModel(mlm_model.MaskedLMModel):
  """`MaskedLMModel` (no sentence head by default) + `heads.SpanBoundaryHead`.

  Attributes:
    max_relative_positions: rows of the SBO relative position table (200 in
      facebookresearch/SpanBERT).
  """
  max_relative_positions: int = 200

  def setup(self):
    super().setup()
    self.sbo_head = heads.SpanBoundaryHead(self.config, self.max_relative_positions)

  def __call__(self, batch: dict[str, jax.Array], *,
               deterministic: bool = True) -> dict[str, jax.Array]:
    """As `MaskedLMModel`, plus 'sbo_logits' [B, P, V] float32.

    The batch also needs masked_span_left, masked_span_right, masked_span_offsets [B, P].
    """
    out = super().__call__(batch, deterministic=deterministic)
    out['sbo_logits'] = self.sbo_head(
        out['hidden'], batch['masked_span_left'], batch['masked_span_right'],
        batch['masked_span_offsets'], self.encoder.attend)
    return out
