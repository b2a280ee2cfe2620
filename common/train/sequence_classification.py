"""The fine-tuning objective: a sequence classifier (or regressor) on the shared encoder.

Classification: softmax cross-entropy over the task's labels; regression (one output,
STS-B): mean squared error, as BERT's run_classifier and HF's
*ForSequenceClassification train them. Rows of `example_weight` 0 (padding that fills
the last evaluation batch) count nowhere. `predict_fn` gives the per-example
predictions the GLUE metrics and submission files are computed from.
"""

import jax
import jax.numpy as jnp
import optax

from common.model import classifier
from common.train import flops
from common.train import metrics as metrics_lib
from common.train.objectives import Objective

BATCH_KEYS = ('input_ids', 'segment_ids', 'attention_mask', 'label', 'example_weight')


def supervised_loss(logits_BxK: jax.Array, batch: dict[str, jax.Array],
                    regression: bool) -> tuple[jax.Array, dict]:
  """The task loss against the gold labels, and its metrics.

  Returns:
    (mean loss over weighted examples, metrics): 'mse' for regression, 'accuracy'
    for classification (rows of example_weight 0 count nowhere).
  """
  weights_B = batch['example_weight']
  if regression:
    per_example = (logits_BxK[:, 0] - batch['label'].astype(jnp.float32)) ** 2
    loss_sum, count = metrics_lib.weighted(per_example, weights_B)
    return loss_sum / jnp.maximum(count, 1.0), {'mse': (loss_sum, count)}
  labels_B = batch['label'].astype(jnp.int32)
  per_example = optax.softmax_cross_entropy_with_integer_labels(logits_BxK, labels_B)
  loss_sum, count = metrics_lib.weighted(per_example, weights_B)
  correct = jnp.argmax(logits_BxK, axis=-1) == labels_B
  return loss_sum / jnp.maximum(count, 1.0), {
      'accuracy': metrics_lib.weighted(correct, weights_B)}


def predictions(logits_BxK: jax.Array, regression: bool) -> dict[str, jax.Array]:
  """Per-example outputs the GLUE metrics and submission files are computed from:
  the score (regression) or the class and its probabilities."""
  logits_BxK = logits_BxK.astype(jnp.float32)
  if regression:
    return {'predictions': logits_BxK[:, 0]}
  return {'predictions': jnp.argmax(logits_BxK, axis=-1).astype(jnp.int32),
          'probabilities': jax.nn.softmax(logits_BxK, axis=-1)}


def head_flops_per_token(config, num_labels: int) -> float:
  """The encoder and the pooled classification head, per token."""
  seq_len = config.data.max_seq_length
  return (flops.encoder_flops_per_token(config.model, seq_len) +
          flops.pooled_classifier_flops_per_token(config.model, seq_len, num_labels))


def sequence_classification(config, num_labels: int, head_activation: str) -> Objective:
  """The objective of fine-tuning `config.model` on a task with `num_labels` outputs.

  Args:
    config: the fine-tuning ConfigDict (`model`, `data.max_seq_length`).
    num_labels: classes, or 1 for regression.
    head_activation: the head's hidden activation ('tanh', 'gelu', 'relu';
      common/model/classifier.py).
  """
  model = classifier.SequenceClassifier(config.model, num_labels=num_labels,
                                        head_activation=head_activation)
  regression = num_labels == 1

  def loss_fn(params, batch, rng, deterministic):
    logits_BxK = model.apply({'params': params}, batch, deterministic=deterministic,
                             rngs={'dropout': rng}).astype(jnp.float32)
    loss, metrics = supervised_loss(logits_BxK, batch, regression)
    return loss, {'loss': metrics_lib.scalar(loss), **metrics}

  def predict_fn(params, batch):
    return predictions(model.apply({'params': params}, batch, deterministic=True),
                       regression)

  return Objective('classification', model, loss_fn, BATCH_KEYS,
                   head_flops_per_token(config, num_labels), predict_fn=predict_fn)
