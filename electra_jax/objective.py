"""ELECTRA's objective: generator MLM + 50 x replaced-token detection, in one loss.

Clark et al. 2020 (arXiv:2003.10555), section 2 and eq. (1); reference:
google-research/electra `run_pretraining.py` (`PretrainingModel.__init__`,
`_get_fake_data`) and `pretrain/pretrain_helpers.py` (`unmask`, `sample_from_softmax`,
`scatter_update`).

One loss function for the shared train step (common/train/train_step.py):
  1. the generator reads the masked input and predicts the masked tokens (MLM loss);
  2. a token is sampled at each masked position from softmax(logits) (temperature
     1.0) under stop_gradient: no gradient flows through the sample (the reference's
     Gumbel-max; here the same distribution by an inverted CDF, common/model/
     categorical.py);
  3. the samples are scattered into every selected position (weight > 0) of the
     ORIGINAL ids, whether that position showed [MASK] or its own token;
  4. labels = corrupted != original at non-pad positions, so a sample that happens to
     equal the original token is labelled "original";
  5. the discriminator reads the corrupted ids; sigmoid cross-entropy over every non-pad
     token; loss = 1.0 x MLM + 50.0 x RTD (reference `gen_weight`, `disc_weight`).

'electra_15' (the paper's "ELECTRA 15%", section 3.5, Table 5) is the same loss with
step 5's sum over the masked-out positions only (`masked_position_weights`); the
generative ablations reuse steps 1-4 (`generate_and_corrupt`, electra_jax/ablations.py).

The objective 'electra' is found by name: `common.train.objectives.OBJECTIVES` maps it to
`electra_jax.objective:electra`, imported when an experiment names it (`common` never
imports `electra_jax` statically), and `HF_EXPORTS` to this module's `HF_EXPORT`.

Model FLOPs (`Objective.flops_per_token`, for MFU) count both networks, as STYLE.md asks
and the reference's flops_computation.py does: generator encoder + its MLM head at the
masked positions, discriminator encoder + its per-token head.
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from common.model import categorical
from common.train import flops as flops_lib
from common.train import metrics as metrics_lib
from common.train import objectives
from electra_jax import model as model_lib

Array = jax.Array

# Reference defaults (configure_pretraining.py): gen_weight, disc_weight, temperature.
GENERATOR_WEIGHT = 1.0
DISCRIMINATOR_WEIGHT = 50.0
TEMPERATURE = 1.0


def scatter_positions(ids_BxL: Array, positions_BxP: Array, values_BxP: Array,
                      weights_BxP: Array) -> Array:
  """ids with values written at positions where weights > 0 (padding entries skipped)."""
  length = ids_BxL.shape[1]
  rows_Bx1 = jnp.arange(ids_BxL.shape[0])[:, None]
  # Padding entries point past the end and are dropped, so they never touch position 0.
  cols_BxP = jnp.where(weights_BxP > 0, positions_BxP, length)
  return ids_BxL.at[rows_Bx1, cols_BxP].set(values_BxP.astype(ids_BxL.dtype),
                                            mode='drop')


def original_ids(batch: dict[str, Array]) -> Array:
  """The uncorrupted ids: masked_ids put back at the selected positions (`unmask`)."""
  return scatter_positions(batch['input_ids'], batch['masked_positions'],
                           batch['masked_ids'], batch['masked_weights'])


def sample_tokens(logits_BxPxV: Array, rng: Array,
                  temperature: float = TEMPERATURE) -> Array:
  """Token ids [B, P] sampled from softmax(logits / temperature); no gradient.

  As the reference's `sample_from_softmax` under `tf.stop_gradient`, which draws by
  Gumbel-max; the same distribution here by inverting the CDF (common/model/
  categorical.py), one uniform number per position instead of one per vocabulary entry.
  """
  return categorical.sample(rng, jax.lax.stop_gradient(logits_BxPxV), temperature)


def corrupt(batch: dict[str, Array], sampled_BxP: Array) -> tuple[Array, Array]:
  """Replaces every selected position of the original ids by the generator's sample.

  Returns:
    (corrupted_ids_BxL, labels_BxL): labels are 1 where the corrupted token differs
    from the original at a real (non-pad) position, else 0; a sample equal to the
    original token is labelled 0 ("original").
  """
  original_BxL = original_ids(batch)
  corrupted_BxL = scatter_positions(original_BxL, batch['masked_positions'], sampled_BxP,
                                    batch['masked_weights'])
  real_BxL = batch['attention_mask'].astype(bool)
  labels_BxL = ((corrupted_BxL != original_BxL) & real_BxL).astype(jnp.int32)
  return corrupted_BxL, labels_BxL


def replaced_token_detection_loss(
    logits_BxL: Array, labels_BxL: Array,
    weights_BxL: Array) -> tuple[Array, metrics_lib.Metrics]:
  """Sigmoid cross-entropy over the real tokens, and the detector's metrics.

  Returns:
    The mean loss per real token and metrics 'rtd_loss', 'rtd_accuracy',
    'rtd_precision' and 'rtd_recall' (positive class = replaced), 'replaced_fraction'
    (the share of replaced tokens; 1 minus it is the accuracy of always answering
    "original") and 'rtd_baseline_loss', the loss of predicting the batch's replaced
    fraction everywhere: the RTD loss depends on how good the generator is, and only
    a loss below this baseline shows the discriminator knows more than the base rate.
    'rtd_prob_replaced' and 'rtd_prob_original' are the mean predicted probability of
    "replaced" on replaced and on original tokens: their gap shows the detector ranks
    replacements higher well before its calls cross 0.5 (while replacements are rare,
    accuracy at that threshold hides it).
  """
  labels_f = labels_BxL.astype(jnp.float32)
  per_token = optax.sigmoid_binary_cross_entropy(logits_BxL, labels_f)
  loss_sum, count = metrics_lib.weighted(per_token, weights_BxL)
  predicted_BxL = logits_BxL > 0
  prob_BxL = jax.nn.sigmoid(logits_BxL)
  replaced_BxL = labels_BxL.astype(bool)
  true_pos_BxL = predicted_BxL & replaced_BxL
  weights_f = weights_BxL.astype(jnp.float32)
  rate = jnp.clip(jnp.sum(replaced_BxL * weights_f) / jnp.maximum(count, 1.0),
                  1e-7, 1.0 - 1e-7)
  base_rate_entropy = -(rate * jnp.log(rate) + (1.0 - rate) * jnp.log1p(-rate))
  return loss_sum / jnp.maximum(count, 1.0), {
      'rtd_loss': (loss_sum, count),
      'rtd_accuracy': metrics_lib.weighted(predicted_BxL == replaced_BxL, weights_f),
      'rtd_precision': metrics_lib.weighted(true_pos_BxL, predicted_BxL * weights_f),
      'rtd_recall': metrics_lib.weighted(true_pos_BxL, replaced_BxL * weights_f),
      'replaced_fraction': metrics_lib.weighted(replaced_BxL, weights_f),
      'rtd_baseline_loss': (base_rate_entropy * count, count),
      'rtd_prob_replaced': metrics_lib.weighted(prob_BxL, replaced_BxL * weights_f),
      'rtd_prob_original': metrics_lib.weighted(prob_BxL, ~replaced_BxL * weights_f),
  }


def generate_and_corrupt(model: model_lib.ElectraModel, params: Any,
                         batch: dict[str, Array], rng: Array, deterministic: bool,
                         temperature: float = TEMPERATURE) -> dict[str, Array]:
  """Steps 1-4: generator, sample, corrupt; what every ELECTRA-style objective shares.

  `rng` is split three ways: generator dropout, sampling, and the second network's
  dropout (returned as 'rng').

  Returns:
    'mlm_logits' [B, P, V] of the generator, 'sampled' [B, P], 'corrupted' [B, L],
    'labels' [B, L] and 'rng'.
  """
  gen_rng, sample_rng, next_rng = jax.random.split(rng, 3)
  mlm_logits_BxPxV = model.apply(
      {'params': params}, batch, deterministic=deterministic, rngs={'dropout': gen_rng},
      method=model_lib.ElectraModel.generate)
  sampled_BxP = sample_tokens(mlm_logits_BxPxV, sample_rng, temperature)
  corrupted_BxL, labels_BxL = corrupt(batch, sampled_BxP)
  return {'mlm_logits': mlm_logits_BxPxV, 'sampled': sampled_BxP,
          'corrupted': corrupted_BxL, 'labels': labels_BxL, 'rng': next_rng}


def forward(model: model_lib.ElectraModel, params: Any, batch: dict[str, Array],
            rng: Array, deterministic: bool,
            temperature: float = TEMPERATURE) -> dict[str, Array]:
  """Generator, sample, corrupt, discriminator: every intermediate of one step.

  Returns:
    'mlm_logits' [B, P, V], 'sampled' [B, P], 'corrupted' [B, L], 'labels' [B, L],
    'hidden' [B, L, H] and 'rtd_logits' [B, L] of the discriminator.
  """
  out = generate_and_corrupt(model, params, batch, rng, deterministic, temperature)
  disc = model.apply(
      {'params': params}, out['corrupted'], batch.get('segment_ids'),
      batch['attention_mask'], deterministic=deterministic, rngs={'dropout': out.pop('rng')},
      method=model_lib.ElectraModel.discriminate)
  return {**out, **disc}


def masked_position_weights(batch: dict[str, Array]) -> Array:
  """[B, L] int32: 1 at the selected (masked-out) real positions, else 0."""
  ones_BxP = jnp.ones_like(batch['masked_positions'])
  return scatter_positions(jnp.zeros_like(batch['input_ids']), batch['masked_positions'],
                           ones_BxP, batch['masked_weights']) * batch['attention_mask']


def electra(config) -> objectives.Objective:
  """The 'electra' objective from `config.model` and `config.objective`.

  config.objective fields (reference names in brackets): generator_weight [gen_weight]
  1.0, discriminator_weight [disc_weight] 50.0, temperature 1.0.
  """
  return _electra(config, 'electra', masked_only=False)


def electra_15(config) -> objectives.Objective:
  """'electra_15', the paper's "ELECTRA 15%" (section 3.5, Table 5): ELECTRA with the
  discriminator's loss summed over the masked-out positions only ("over i in m instead
  of from 1 to n"); the same networks, inputs and FLOPs."""
  return _electra(config, 'electra_15', masked_only=True)


def _electra(config, name: str, *, masked_only: bool) -> objectives.Objective:
  model = model_lib.ElectraModel(config.model)
  get = config.objective.get
  gen_weight = get('generator_weight', GENERATOR_WEIGHT)
  disc_weight = get('discriminator_weight', DISCRIMINATOR_WEIGHT)
  temperature = get('temperature', TEMPERATURE)

  def loss_fn(params, batch, rng, deterministic):
    out = forward(model, params, batch, rng, deterministic, temperature)
    mlm, mlm_metrics = objectives.masked_lm_loss(
        out['mlm_logits'], batch['masked_ids'], batch['masked_weights'])
    rtd_weights_BxL = (masked_position_weights(batch) if masked_only
                       else batch['attention_mask'])
    rtd, rtd_metrics = replaced_token_detection_loss(
        out['rtd_logits'], out['labels'], rtd_weights_BxL)
    loss = gen_weight * mlm + disc_weight * rtd
    sampled_correct = out['sampled'] == batch['masked_ids']
    return loss, {
        'loss': metrics_lib.scalar(loss), **mlm_metrics, **rtd_metrics,
        'sampled_correct_fraction': metrics_lib.weighted(sampled_correct,
                                                         batch['masked_weights']),
    }

  return objectives.Objective(name, model, loss_fn, objectives.MLM_KEYS,
                              electra_flops_per_token(config))


def generator_flops_per_token(config) -> float:
  """Training FLOPs per token of the generator: its encoder and its MLM head at the
  masked positions (6 per weight, 12 L H T)."""
  seq_len = config.data.max_seq_length
  generator = ml_collections.ConfigDict(
      dataclasses.asdict(model_lib.generator_spec(config.model)))
  return (flops_lib.encoder_flops_per_token(generator, seq_len)
          + flops_lib.mlm_head_flops_per_token(generator, seq_len,
                                               config.masking.max_predictions_per_seq))


def electra_flops_per_token(config) -> float:
  """Training FLOPs per token: generator + discriminator (6 per weight, 12 L H T)."""
  h = config.model.hidden_size
  rtd_head = 6.0 * (h * h + h)  # dense(H, H) and dense(H, 1) at every token.
  return (generator_flops_per_token(config)
          + flops_lib.encoder_flops_per_token(config.model, config.data.max_seq_length)
          + rtd_head)


# The discriminator is ElectraForPreTraining; electra_jax/hf_electra.py writes the
# generator beside it as ElectraForMaskedLM.
HF_EXPORT = objectives.HFExport({'electra': 'ElectraForPreTraining'})
