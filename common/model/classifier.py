"""Sequence classification (and regression) on the shared encoder: the fine-tuning model.

One model for every family; only the activation of the pooled layer differs, as in the
HF heads it round-trips with (common/interop/hf_checkpoint.py):

| head_activation | HF head                                            | families      |
|-----------------|----------------------------------------------------|---------------|
| 'tanh'          | BERT/ALBERT pooler + classifier; RoBERTa's head    | bert, albert, |
|                 |                                                    | roberta       |
| 'gelu'          | ElectraClassificationHead (exact erf GeLU)         | electra       |
| 'relu'          | DistilBERT's pre_classifier + classifier           | distilbert    |

Params: 'encoder' (the scope `MaskedLMModel` uses, so pretrained encoder params drop
in), 'pooler' {'dense'} (the same tree as `heads.Pooler`, so BERT's and ALBERT's
pretrained pooler loads unchanged), 'classifier' {'dense'} (`heads.ClassificationHead`,
kernel axes ('embed', 'classes')). `num_labels=1` is regression (STS-B).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from common.errors import UserError
from common.model import dropout as dropout_lib
from common.model import encoder as encoder_lib
from common.model import heads

Array = jax.Array

HEAD_ACTIVATIONS = {
    'tanh': jnp.tanh,
    'gelu': encoder_lib.ACTIVATIONS['gelu'],  # Exact erf GeLU, as HF's ELECTRA head.
    'relu': jax.nn.relu,
}


def check_head(num_labels: Any, head_activation: Any) -> None:
  """UserError unless num_labels is a positive integer and the activation is known."""
  if not isinstance(num_labels, int) or isinstance(num_labels, bool) or num_labels < 1:
    raise UserError(f'num_labels must be a positive integer (1 = regression), got '
                    f'{num_labels!r}')
  if head_activation not in HEAD_ACTIVATIONS:
    raise UserError(f'head_activation {head_activation!r} is unknown; choose one of '
                    f'{", ".join(HEAD_ACTIVATIONS)}')


class PooledDense(nn.Module):
  """activation(Dense(hidden at position 0)): -> pooled_BxH.

  `heads.Pooler` with the activation chosen: the same 'dense' param, the same axes.
  """
  config: Any
  activation: str = 'tanh'

  @nn.compact
  def __call__(self, cls_BxH: Array) -> Array:
    spec = encoder_lib.EncoderSpec.from_config(self.config)
    return HEAD_ACTIVATIONS[self.activation](nn.Dense(
        spec.hidden_size, dtype=spec.compute_dtype, param_dtype=jnp.float32,
        kernel_init=encoder_lib.kernel_init(spec, ('embed', 'embed_out')),
        bias_init=encoder_lib.zeros_init(('embed_out',)), name='dense')(cls_BxH))


class SequenceClassifier(nn.Module):
  """Encoder, then on the first token ([CLS] / <s>): dropout, pooler dense +
  activation, dropout, classifier dense -> float32 logits [B, num_labels].

  Attributes:
    config: the model ConfigDict or EncoderSpec (any family: factorized, shared, no
      token types, position offset).
    num_labels: output width; 1 = regression.
    head_activation: 'tanh', 'gelu' or 'relu' (table above).
    dropout_rate: both head dropouts; None = the encoder's `dropout_rate` (HF's
      default when classifier_dropout is unset).
  """
  config: Any
  num_labels: int = 2
  head_activation: str = 'tanh'
  dropout_rate: float | None = None

  def setup(self):
    check_head(self.num_labels, self.head_activation)
    spec = encoder_lib.EncoderSpec.from_config(self.config)
    rate = spec.dropout_rate if self.dropout_rate is None else self.dropout_rate
    self.encoder = encoder_lib.Encoder(spec)
    self.dropout = dropout_lib.Dropout(rate)
    self.pooler = PooledDense(spec, self.head_activation)
    self.classifier = heads.ClassificationHead(spec, self.num_labels, rate)

  def __call__(self, batch: dict[str, Array], *, deterministic: bool = True) -> Array:
    """Logits of a batch.

    Args:
      batch: input_ids, attention_mask [B, L], segment_ids [B, L] (optional: all 0;
        ignored without token types). Other keys are ignored.
      deterministic: False enables dropout (needs a 'dropout' rng).

    Returns:
      logits_BxK float32 (K = num_labels).
    """
    hidden_BxLxH = self.encoder(batch['input_ids'], batch.get('segment_ids'),
                                batch.get('attention_mask'), deterministic=deterministic)
    cls_BxH = self.dropout(hidden_BxLxH[:, 0], deterministic=deterministic)
    return self.classifier(self.pooler(cls_BxH), deterministic=deterministic)
