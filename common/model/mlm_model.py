"""The masked-LM pretraining model: shared encoder + tied MLM head (+ sentence head).

Used by every MLM-style recipe: BERT (with next-sentence prediction), RoBERTa (MLM only),
and later ALBERT (sentence-order prediction) and SpanBERT (span-boundary objective).
The MLM head projects only the masked positions onto the vocabulary, so the V-sized
matmul costs P x H x V per sequence instead of L x H x V.
"""

from typing import Any

import flax.linen as nn
import jax

from common.model import encoder as encoder_lib
from common.model import heads


class MaskedLMModel(nn.Module):
  """Encoder with an MLM head and an optional pooled sentence-pair head.

  Attributes:
    config: the model ConfigDict (see common/model/encoder.py for its fields).
    sentence_classes: 0 for no sentence head (RoBERTa), 2 for NSP or SOP (BERT, ALBERT).
  """
  config: Any
  sentence_classes: int = 0

  def setup(self):
    self.encoder = encoder_lib.Encoder(self.config)
    self.mlm_head = heads.MaskedLMHead(self.config)
    if self.sentence_classes:
      self.pooler = heads.Pooler(self.config)
      self.sentence_head = heads.ClassificationHead(self.config, self.sentence_classes)

  def __call__(self, batch: dict[str, jax.Array], *,
               deterministic: bool = True) -> dict[str, jax.Array]:
    """Runs the model on a batch.

    Args:
      batch: input_ids, segment_ids, attention_mask [B, L]; masked_positions [B, P].
      deterministic: False enables dropout (needs a 'dropout' rng).

    Returns:
      'hidden' [B, L, H], 'mlm_logits' [B, P, V] float32 and, with a sentence head,
      'sentence_logits' [B, C].
    """
    hidden_BxLxH = self.encoder(batch['input_ids'], batch.get('segment_ids'),
                                batch['attention_mask'], deterministic=deterministic)
    out = {'hidden': hidden_BxLxH,
           'mlm_logits': self.mlm_head(hidden_BxLxH, batch['masked_positions'],
                                       self.encoder.attend)}
    if self.sentence_classes:
      pooled_BxH = self.pooler(hidden_BxLxH)
      out['sentence_logits'] = self.sentence_head(pooled_BxH, deterministic=deterministic)
    return out
