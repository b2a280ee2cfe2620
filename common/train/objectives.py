"""Pretraining objectives as plug-ins to the one train step.

An objective bundles the Flax module that is trained with a loss function
`loss_fn(params, batch, rng, deterministic) -> (loss, metrics)`; the train step and the
evaluation loop know nothing else about it. The experiment file picks one by name
(`config.objective.name`); recipes with their own model (ELECTRA's generator and
discriminator) register theirs the same way.

Metrics are (sum, count) pairs (common/train/metrics.py).
"""

from collections.abc import Callable
import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from common.train import metrics as metrics_lib
from common.model import mlm_model
from common.data import span_boundary
from common.model import span_boundary_model
from common.errors import UserError

LossFn = Callable[[Any, dict[str, jax.Array], jax.Array, bool],
                  tuple[jax.Array, metrics_lib.Metrics]]


@dataclasses.dataclass(frozen=True)
class Objective:
  """What the train step needs from a recipe.

  Attributes:
    name: the registry name.
    model: the Flax module whose parameters are trained; `model.init(rngs, batch)`.
    loss_fn: (params, batch, rng, deterministic) -> (scalar loss, metrics).
    batch_keys: the batch fields the objective reads (the pipeline must provide them).
  """
  name: str
  model: nn.Module
  loss_fn: LossFn
  batch_keys: tuple[str, ...]


def masked_lm_loss(logits_BxPxV: jax.Array, ids_BxP: jax.Array,
                   weights_BxP: jax.Array) -> tuple[jax.Array, metrics_lib.Metrics]:
  """Cross-entropy over the masked positions only (padding entries have weight 0).

  Returns:
    The mean loss per masked token and metrics 'mlm_loss', 'mlm_accuracy'.
  """
  per_token = optax.softmax_cross_entropy_with_integer_labels(logits_BxPxV, ids_BxP)
  loss_sum, count = metrics_lib.weighted(per_token, weights_BxP)
  correct = (jnp.argmax(logits_BxPxV, axis=-1) == ids_BxP)
  return loss_sum / jnp.maximum(count, 1.0), {
      'mlm_loss': (loss_sum, count),
      'mlm_accuracy': metrics_lib.weighted(correct, weights_BxP),
  }


def sentence_pair_loss(logits_BxC: jax.Array, labels_B: jax.Array,
                       name: str) -> tuple[jax.Array, metrics_lib.Metrics]:
  """Cross-entropy of a per-example classifier (next-sentence or sentence-order)."""
  per_example = optax.softmax_cross_entropy_with_integer_labels(logits_BxC, labels_B)
  ones = jnp.ones_like(per_example)
  correct = jnp.argmax(logits_BxC, axis=-1) == labels_B
  return jnp.mean(per_example), {
      f'{name}_loss': metrics_lib.weighted(per_example, ones),
      f'{name}_accuracy': metrics_lib.weighted(correct, ones),
  }


MLM_KEYS = ('input_ids', 'segment_ids', 'attention_mask', 'masked_positions',
            'masked_ids', 'masked_weights')


def masked_lm(config) -> Objective:
  """RoBERTa: masked-LM only (Liu et al. 2019, section 4.2 drops NSP)."""
  model = mlm_model.MaskedLMModel(config.model)

  def loss_fn(params, batch, rng, deterministic):
    out = model.apply({'params': params}, batch, deterministic=deterministic,
                      rngs={'dropout': rng})
    loss, metrics = masked_lm_loss(out['mlm_logits'], batch['masked_ids'],
                                   batch['masked_weights'])
    return loss, {'loss': metrics_lib.scalar(loss), **metrics}

  return Objective('mlm', model, loss_fn, MLM_KEYS)


def masked_lm_and_sentence_pair(config, task: str) -> Objective:
  """BERT (task 'nsp', Devlin et al. 2019) or ALBERT (task 'sop'): MLM + pair loss."""
  model = mlm_model.MaskedLMModel(config.model, sentence_classes=2)
  label_key = {'nsp': 'next_sentence_label', 'sop': 'sentence_order_label'}[task]

  def loss_fn(params, batch, rng, deterministic):
    out = model.apply({'params': params}, batch, deterministic=deterministic,
                      rngs={'dropout': rng})
    mlm, mlm_metrics = masked_lm_loss(out['mlm_logits'], batch['masked_ids'],
                                      batch['masked_weights'])
    pair, pair_metrics = sentence_pair_loss(out['sentence_logits'], batch[label_key], task)
    loss = mlm + pair
    return loss, {'loss': metrics_lib.scalar(loss), **mlm_metrics, **pair_metrics}

  return Objective(f'mlm_{task}', model, loss_fn, MLM_KEYS + (label_key,))


def masked_lm_and_span_boundary(config) -> Objective:
  """SpanBERT: MLM + span-boundary objective, summed with weight `objective.sbo_weight`.

  Joshi et al. 2020, section 3.2: L(x_i) = L_MLM(x_i) + L_SBO(x_i), each a
  cross-entropy over the masked tokens (weight 1.0).
  """
  model = span_boundary_model.SpanBoundaryModel(
      config.model, max_relative_positions=config.objective.get('sbo_positions', 200))
  weight = config.objective.get('sbo_weight', 1.0)

  def loss_fn(params, batch, rng, deterministic):
    out = model.apply({'params': params}, batch, deterministic=deterministic,
                      rngs={'dropout': rng})
    mlm, mlm_metrics = masked_lm_loss(out['mlm_logits'], batch['masked_ids'],
                                      batch['masked_weights'])
    sbo, sbo_metrics = masked_lm_loss(out['sbo_logits'], batch['masked_ids'],
                                      batch['masked_weights'])
    loss = mlm + weight * sbo
    return loss, {'loss': metrics_lib.scalar(loss), **mlm_metrics,
                  'sbo_loss': sbo_metrics['mlm_loss'],
                  'sbo_accuracy': sbo_metrics['mlm_accuracy']}

  return Objective('mlm_sbo', model, loss_fn, MLM_KEYS + span_boundary.SPAN_FIELDS)


OBJECTIVES: dict[str, Callable[[Any], Objective]] = {
    'mlm': masked_lm,
    'mlm_nsp': lambda config: masked_lm_and_sentence_pair(config, 'nsp'),
    'mlm_sop': lambda config: masked_lm_and_sentence_pair(config, 'sop'),
    'mlm_sbo': masked_lm_and_span_boundary,
}


def register(name: str, builder: Callable[[Any], Objective]) -> None:
  """Adds a recipe's objective (e.g. ELECTRA's) to the registry."""
  OBJECTIVES[name] = builder


def get_objective(config) -> Objective:
  """The objective named by `config.objective.name`."""
  name = config.objective.name
  if name not in OBJECTIVES:
    raise UserError(f'unknown objective {name!r}; known objectives: {sorted(OBJECTIVES)}')
  return OBJECTIVES[name](config)
