"""Pretraining objectives as plug-ins to the one train step.

An objective bundles the Flax module that is trained with a loss function
`loss_fn(params, batch, rng, deterministic) -> (loss, metrics)` and that model's FLOPs
per trained token (for MFU); the train step and the evaluation loop know nothing else
about it. The experiment file picks one by name (`config.objective.name`): `OBJECTIVES`
says where each builder lives, and a recipe with its own model (ELECTRA's generator and
discriminator) keeps its builder in its package, imported only when it is named.
`HF_EXPORTS` says, the same way, which Hugging Face architectures hold the model an
objective trained (common/interop/hf_checkpoint.py `export_dir`), and `CONFIGURE`
which objectives complete the run's config before the data are built (a distillation
student reads its teacher's tokenizer, common/train/distillation.py). An objective may
also bring its own start (`Objective.init_params`: a student copied from its teacher).

Metrics are (sum, count) pairs (common/train/metrics.py).
"""

from collections.abc import Callable
import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from common import registry
from common.data import span_boundary
from common.errors import UserError
from common.model import mlm_model
from common.model import span_boundary_model
from common.train import flops
from common.train import metrics as metrics_lib
from common.train.frozen import FrozenParams

LossFn = Callable[[Any, dict[str, jax.Array], jax.Array, bool],
                  tuple[jax.Array, metrics_lib.Metrics]]


@dataclasses.dataclass(frozen=True)
class Objective:
  """What the train step needs from a recipe.

  Attributes:
    name: the name in `OBJECTIVES`.
    model: the Flax module whose parameters are trained; `model.init(rngs, batch)`.
    loss_fn: (params, batch, rng, deterministic) -> (scalar loss, metrics); with
      `frozen` set, it also takes the frozen parameters as keyword `frozen`.
    batch_keys: the batch fields the objective reads (the pipeline must provide them).
    flops_per_token: the model's training FLOPs per token of `data.max_seq_length`
      (common/train/flops.py), for MFU.
    frozen: parameters the loss reads and the optimizer never updates (a distillation
      teacher, a frozen encoder): where they come from (common/train/frozen.py).
    predict_fn: (params, batch) -> per-example outputs ({'predictions': [B, ...]}),
      for evaluation sets scored on whole-set metrics (F1, correlations) and for
      test-set predictions; None for objectives scored by their loss metrics alone.
    init_params: (fresh params, their shardings) -> the params a fresh run starts
      from, when the objective has its own start (a distillation student copied from
      its teacher, common/train/distillation.py); None: a fresh initialisation.
  """
  name: str
  model: nn.Module
  loss_fn: LossFn
  batch_keys: tuple[str, ...]
  flops_per_token: float
  frozen: FrozenParams | None = None
  predict_fn: Callable[[Any, dict[str, jax.Array]], dict[str, jax.Array]] | None = None
  init_params: Callable[[Any, Any], Any] | None = None


@dataclasses.dataclass(frozen=True)
class HFExport:
  """The Hugging Face architectures that hold a model an objective trained.

  Attributes:
    architectures: HF model_type -> architecture, in order of preference: export writes
      the first whose converter represents the model config (a factorized MLM model is
      no BERT but an ELECTRA generator; a shared one is an ALBERT).
    dropped: top-level param groups that no HF architecture has -> the note export
      prints when it leaves them out.
  """
  architectures: dict[str, str]
  dropped: dict[str, str] = dataclasses.field(default_factory=dict)


def masked_lm_loss(logits_BxPxV: jax.Array, ids_BxP: jax.Array,
                   weights_BxP: jax.Array) -> tuple[jax.Array, metrics_lib.Metrics]:
  """Cross-entropy over the masked positions only (padding entries have weight 0).

  Returns:
    The mean loss per masked token and metrics 'mlm_loss', 'mlm_accuracy'.
  """
  per_token = optax.softmax_cross_entropy_with_integer_labels(logits_BxPxV, ids_BxP)
  loss_sum, count = metrics_lib.weighted(per_token, weights_BxP)
  # argmax(logits) == target, ties to the first index as jnp.argmax: no logit above
  # the target's and none equal to it at a lower index. One vectorized reduction, where
  # XLA:CPU runs an arg-max over [B, P, V] as scalar code (3 ms against 40 ms for
  # ELECTRA-Small's generator logits [32, 19, 30522] on 2 cores).
  target_BxPx1 = jnp.take_along_axis(logits_BxPxV, ids_BxP[..., None], axis=-1)
  index_BxPxV = jax.lax.broadcasted_iota(jnp.int32, logits_BxPxV.shape, 2)
  correct = ~jnp.any((logits_BxPxV > target_BxPx1)
                     | ((logits_BxPxV == target_BxPx1) & (index_BxPxV < ids_BxP[..., None])),
                     axis=-1)
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


def masked_lm_flops_per_token(config) -> float:
  """The encoder and the MLM head at `masking.max_predictions_per_seq` positions."""
  seq_len = config.data.max_seq_length
  return (flops.encoder_flops_per_token(config.model, seq_len) +
          flops.mlm_head_flops_per_token(config.model, seq_len,
                                         config.masking.max_predictions_per_seq))


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

  return Objective('mlm', model, loss_fn, MLM_KEYS, masked_lm_flops_per_token(config))


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

  # The pooler and 2-way classifier on [CLS]: tiny, counted for completeness.
  pair_head = flops.pooled_classifier_flops_per_token(config.model,
                                                      config.data.max_seq_length, 2)
  return Objective(f'mlm_{task}', model, loss_fn, MLM_KEYS + (label_key,),
                   masked_lm_flops_per_token(config) + pair_head)


def masked_lm_and_next_sentence(config) -> Objective:
  """'mlm_nsp': BERT's MLM + next-sentence prediction."""
  return masked_lm_and_sentence_pair(config, 'nsp')


def masked_lm_and_sentence_order(config) -> Objective:
  """'mlm_sop': ALBERT's MLM + sentence-order prediction."""
  return masked_lm_and_sentence_pair(config, 'sop')


def span_boundary_flops_per_token(config) -> float:
  """The MLM model plus the span-boundary head at every masked position:
  [left; right; relative position] 3H -> H -> E, then the tied E -> V projection."""
  model, seq_len = config.model, config.data.max_seq_length
  h = model.hidden_size
  e = model.get('embedding_size') or h
  head = 6.0 * (3 * h * h + h * e + e * model.vocab_size)
  return (masked_lm_flops_per_token(config)
          + head * config.masking.max_predictions_per_seq / seq_len)


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

  return Objective('mlm_sbo', model, loss_fn, MLM_KEYS + span_boundary.SPAN_FIELDS,
                   span_boundary_flops_per_token(config))


# Objective name -> where its builder `(config) -> Objective` lives, imported when the
# objective is used (common/registry.py): common/ never imports a family package.
OBJECTIVES: dict[str, str] = {
    'mlm': 'common.train.objectives:masked_lm',
    'mlm_nsp': 'common.train.objectives:masked_lm_and_next_sentence',
    'mlm_sop': 'common.train.objectives:masked_lm_and_sentence_order',
    'mlm_sbo': 'common.train.objectives:masked_lm_and_span_boundary',
    'electra': 'electra_jax.objective:electra',
    # ELECTRA's Table 5 ablations (Clark et al. 2020, section 3.5).
    'electra_15': 'electra_jax.objective:electra_15',
    'replace_mlm': 'electra_jax.ablations:replace_mlm',
    'all_tokens_mlm': 'electra_jax.ablations:all_tokens_mlm',
    'distillation': 'common.train.distillation:distillation',
}

# Objective name -> where the function lives that completes a run's config from what
# the objective reads before the data are built (`configure(config) -> config`): a
# distillation student takes its teacher's tokenizer. Objectives without an entry
# use the config as it is.
CONFIGURE: dict[str, str] = {
    'distillation': 'common.train.distillation:configure',
}


# Objective name -> where the function lives that takes the params it trained to the
# encoder a task head sits on: {'encoder': ..., 'pooler': ... (where it has one)}.
ENCODERS: dict[str, str] = {
    'mlm': 'common.train.objectives:encoder_and_pooler',
    'mlm_nsp': 'common.train.objectives:encoder_and_pooler',
    'mlm_sop': 'common.train.objectives:encoder_and_pooler',
    'mlm_sbo': 'common.train.objectives:encoder_and_pooler',
    'classification': 'common.train.objectives:encoder_and_pooler',
    'electra': 'electra_jax.export:discriminator_encoder',
    'electra_15': 'electra_jax.export:discriminator_encoder',
    'replace_mlm': 'electra_jax.export:discriminator_encoder',
    'all_tokens_mlm': 'electra_jax.export:discriminator_encoder',
    'distillation': 'common.train.objectives:encoder_and_pooler',
}


def encoder_and_pooler(params: dict) -> dict:
  """The shared encoder of a MaskedLMModel-like tree, with its pooler if it has one."""
  return {k: params[k] for k in ('encoder', 'pooler') if k in params}


def encoder_params(name: str, params: dict) -> dict:
  """The encoder (and pooler) in the params objective `name` trained."""
  if name not in ENCODERS:
    raise UserError(f'objective {name!r} has no encoder to fine-tune; known: '
                    f'{sorted(ENCODERS)}')
  encoder = registry.resolve(ENCODERS[name])(params)
  if 'encoder' not in encoder:
    raise UserError(f'the {name!r} parameters hold no encoder')
  return encoder


def configure(config):
  """`config` completed by its objective's `CONFIGURE` entry (itself if none); call it
  before anything reads the config (the data pipeline, `get_objective`)."""
  name = config.objective.name
  return registry.resolve(CONFIGURE[name])(config) if name in CONFIGURE else config


def get_objective(config) -> Objective:
  """The objective named by `config.objective.name`."""
  name = config.objective.name
  if name not in OBJECTIVES:
    raise UserError(f'unknown objective {name!r}; known objectives: {sorted(OBJECTIVES)}')
  return registry.resolve(OBJECTIVES[name])(config)


MLM_EXPORT = HFExport({'bert': 'BertForMaskedLM', 'roberta': 'RobertaForMaskedLM',
                       'distilbert': 'DistilBertForMaskedLM',
                       'electra': 'ElectraForMaskedLM', 'albert': 'AlbertForMaskedLM'})
NSP_EXPORT = HFExport({'bert': 'BertForPreTraining'})
SOP_EXPORT = HFExport({'albert': 'AlbertForPreTraining'})
SBO_EXPORT = dataclasses.replace(MLM_EXPORT, dropped={
    'sbo_head': 'the span-boundary head (sbo_head) is not part of any HF architecture: '
                'exported the encoder and MLM head only'})
# A fine-tuned SequenceClassifier (common/model/classifier.py): the family is picked by
# the model config and by the head's activation (hf_checkpoint.converter_for_export).
CLASSIFICATION_EXPORT = HFExport({
    'bert': 'BertForSequenceClassification', 'roberta': 'RobertaForSequenceClassification',
    'distilbert': 'DistilBertForSequenceClassification',
    'electra': 'ElectraForSequenceClassification',
    'albert': 'AlbertForSequenceClassification'})

# Objective name -> where its `HFExport` lives, as `OBJECTIVES`. An objective without
# an entry has no HF architecture.
HF_EXPORTS: dict[str, str] = {
    'mlm': 'common.train.objectives:MLM_EXPORT',
    'mlm_nsp': 'common.train.objectives:NSP_EXPORT',
    'mlm_sop': 'common.train.objectives:SOP_EXPORT',
    'mlm_sbo': 'common.train.objectives:SBO_EXPORT',
    'electra': 'electra_jax.objective:HF_EXPORT',
    'electra_15': 'electra_jax.objective:HF_EXPORT',
    'distillation': 'common.train.distillation:HF_EXPORT',
    'classification': 'common.train.objectives:CLASSIFICATION_EXPORT',
}


def hf_export(name: str) -> HFExport | None:
  """The HF architectures of objective `name` (None: it has none)."""
  return registry.resolve(HF_EXPORTS[name]) if name in HF_EXPORTS else None
