"""ELECTRA's generative stepping stones (Table 5): Replace MLM and All-Tokens MLM.

Clark et al. 2020 (arXiv:2003.10555), section 3.5, compare objectives "designed to be
a set of stepping stones between BERT and ELECTRA". Both here keep ELECTRA's generator
(a small MLM whose samples, under stop_gradient, replace every selected
token: electra_jax/objective.py `generate_and_corrupt`) and put an MLM head, not a
replaced-token detector, on the discriminator-sized encoder:

- 'replace_mlm' (Replace MLM): "the same as masked language modeling except instead
  of replacing masked-out tokens with [MASK], they are replaced with tokens from a
  generator model". The encoder reads the corrupted ids and predicts the original
  token at the selected positions; loss = generator MLM + that MLM.
- 'all_tokens_mlm' (All-Tokens MLM): as Replace MLM, but the model "predicts the
  identity of all tokens in the input", with "an explicit copy mechanism that outputs
  a copy probability D for each token using a sigmoid layer. The model's output
  distribution puts D weight on the input token plus 1 - D times the output of the
  MLM softmax". Loss = generator MLM + the mean over every real token of
  -log(D [x_t = input_t] + (1 - D) softmax(x_t)).

The paper gives neither term's weight; both are 1 here (`objective.generator_weight`
scales the generator's). The copy layer is one dense(H, 1) on the final hidden state.
ELECTRA 15% keeps the detector and is `electra_jax.objective.electra_15`.

Parameters: ELECTRA's 'embeddings', 'generator', 'generator_head' and 'discriminator'
(the encoder that is fine-tuned, electra_jax/export.py `discriminator_encoder`), plus
'mlm_head' (tied to the shared table) and, for All-Tokens MLM, 'copy_head'.

Metrics: the generator's 'generator_mlm_loss' / 'generator_mlm_accuracy'; the
encoder's 'mlm_loss' / 'mlm_accuracy' at the selected positions (for All-Tokens MLM
under its copy mixture); All-Tokens MLM adds 'all_tokens_loss', 'all_tokens_accuracy'
over every real token and the mean 'copy_probability'.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from common.model import encoder as encoder_lib
from common.model import heads
from common.train import flops as flops_lib
from common.train import metrics as metrics_lib
from common.train import objectives
from electra_jax import model as model_lib
from electra_jax import objective as electra_objective

Array = jax.Array


class ReplacedInputMLMModel(model_lib.ElectraModel):
  """ELECTRA's generator and shared embeddings, an MLM head on the encoder.

  Attributes:
    copy_mechanism: All-Tokens MLM: logits at every position and a copy logit per
      token; else (Replace MLM) logits at the masked positions only.
  """
  copy_mechanism: bool = False

  def setup(self):
    super().setup()
    spec = encoder_lib.EncoderSpec.from_config(self.config)
    self.mlm_head = heads.MaskedLMHead(spec)
    if self.copy_mechanism:
      self.copy_head = nn.Dense(
          1, dtype=spec.compute_dtype, param_dtype=jnp.float32,
          kernel_init=encoder_lib.kernel_init(spec, ('embed', 'classes')),
          bias_init=encoder_lib.zeros_init(('classes',)))

  def __call__(self, batch: dict[str, Array], *,
               deterministic: bool = True) -> dict[str, Array]:
    """Both networks on `batch` as given (creates every parameter)."""
    return {'generator_logits': self.generate(batch, deterministic=deterministic),
            **self.predict(batch['input_ids'], batch.get('segment_ids'),
                           batch['attention_mask'], batch['masked_positions'],
                           deterministic=deterministic)}

  def predict(self, input_ids_BxL: Array, segment_ids_BxL: Array | None,
              attention_mask_BxL: Array, masked_positions_BxP: Array, *,
              deterministic: bool = True) -> dict[str, Array]:
    """The encoder on (corrupted) ids.

    Returns:
      'mlm_logits': [B, P, V] at the masked positions, or [B, L, V] with the copy
      mechanism, which adds 'copy_logits' [B, L] (float32; sigmoid = D).
    """
    embedded_BxLxE = self.embeddings(input_ids_BxL, segment_ids_BxL,
                                     deterministic=deterministic)
    hidden_BxLxH = self.discriminator.transform(embedded_BxLxE, attention_mask_BxL,
                                                deterministic=deterministic)
    positions = None if self.copy_mechanism else masked_positions_BxP
    out = {'mlm_logits': self.mlm_head(hidden_BxLxH, positions, self.embeddings.attend)}
    if self.copy_mechanism:
      out['copy_logits'] = self.copy_head(hidden_BxLxH)[..., 0].astype(jnp.float32)
    return out


def forward(model: ReplacedInputMLMModel, params: Any, batch: dict[str, Array],
            rng: Array, deterministic: bool, temperature: float) -> dict[str, Array]:
  """Generator, sample, corrupt (ELECTRA's), then the encoder on the corrupted ids.

  Returns:
    'generator_logits' [B, P, V], 'sampled' [B, P], 'corrupted' [B, L], 'labels'
    [B, L] (1 where a sample differs from the original), and `predict`'s outputs.
  """
  out = electra_objective.generate_and_corrupt(model, params, batch, rng, deterministic,
                                               temperature)
  out['generator_logits'] = out.pop('mlm_logits')
  predicted = model.apply(
      {'params': params}, out['corrupted'], batch.get('segment_ids'),
      batch['attention_mask'], batch['masked_positions'], deterministic=deterministic,
      rngs={'dropout': out.pop('rng')}, method=ReplacedInputMLMModel.predict)
  return {**out, **predicted}


def copy_mixture_loss(logits_BxLxV: Array, copy_logits_BxL: Array, input_ids_BxL: Array,
                      targets_BxL: Array) -> tuple[Array, Array, Array]:
  """All-Tokens MLM's per-token loss under the copy mixture.

  p(v) = D [v = input] + (1 - D) softmax(logits)(v), D = sigmoid(copy_logits).

  Returns:
    (loss_BxL = -log p(target), correct_BxL = argmax_v p(v) == target, D_BxL).
  """
  log_softmax_BxLxV = jax.nn.log_softmax(logits_BxLxV.astype(jnp.float32), axis=-1)
  target_BxL = jnp.take_along_axis(log_softmax_BxLxV, targets_BxL[..., None], axis=-1)[
      ..., 0]
  log_copy_BxL = jax.nn.log_sigmoid(copy_logits_BxL)
  log_generate_BxL = jax.nn.log_sigmoid(-copy_logits_BxL)
  copied_BxL = input_ids_BxL == targets_BxL
  log_p_BxL = jnp.logaddexp(log_generate_BxL + target_BxL,
                            jnp.where(copied_BxL, log_copy_BxL, -jnp.inf))
  # The mixture's argmax: the input token (copy mass + its softmax share) against the
  # best other token.
  vocab_V = jnp.arange(logits_BxLxV.shape[-1])
  is_input_BxLxV = vocab_V == input_ids_BxL[..., None]
  best_other_BxL = jnp.max(jnp.where(is_input_BxLxV, -jnp.inf, log_softmax_BxLxV), -1)
  other_id_BxL = jnp.argmax(jnp.where(is_input_BxLxV, -jnp.inf, log_softmax_BxLxV), -1)
  input_lp_BxL = jnp.take_along_axis(log_softmax_BxLxV, input_ids_BxL[..., None],
                                     axis=-1)[..., 0]
  log_p_input_BxL = jnp.logaddexp(log_copy_BxL, log_generate_BxL + input_lp_BxL)
  predicted_BxL = jnp.where(log_p_input_BxL >= log_generate_BxL + best_other_BxL,
                            input_ids_BxL, other_id_BxL)
  return -log_p_BxL, predicted_BxL == targets_BxL, jnp.exp(log_copy_BxL)


def _generator_metrics(out, batch) -> tuple[Array, metrics_lib.Metrics]:
  loss, metrics = objectives.masked_lm_loss(out['generator_logits'], batch['masked_ids'],
                                            batch['masked_weights'])
  return loss, {f'generator_{k}': v for k, v in metrics.items()}


def _objective(config, name: str, encoder_loss, flops: float, *,
               copy_mechanism: bool) -> objectives.Objective:
  """An ablation: loss = generator_weight x generator MLM + `encoder_loss(out, batch)`
  -> (loss, metrics) on `forward`'s outputs."""
  model = ReplacedInputMLMModel(config.model, copy_mechanism=copy_mechanism)
  get = config.objective.get
  gen_weight = get('generator_weight', electra_objective.GENERATOR_WEIGHT)
  temperature = get('temperature', electra_objective.TEMPERATURE)

  def loss_fn(params, batch, rng, deterministic):
    out = forward(model, params, batch, rng, deterministic, temperature)
    gen, gen_metrics = _generator_metrics(out, batch)
    encoder, encoder_metrics = encoder_loss(out, batch)
    loss = gen_weight * gen + encoder
    return loss, {'loss': metrics_lib.scalar(loss), **gen_metrics, **encoder_metrics}

  return objectives.Objective(name, model, loss_fn, objectives.MLM_KEYS, flops)


def replace_mlm(config) -> objectives.Objective:
  """'replace_mlm': generator MLM + the encoder's MLM on the generator's replacements."""

  def encoder_loss(out, batch):
    return objectives.masked_lm_loss(out['mlm_logits'], batch['masked_ids'],
                                     batch['masked_weights'])

  flops = (electra_objective.generator_flops_per_token(config)
           + objectives.masked_lm_flops_per_token(config))
  return _objective(config, 'replace_mlm', encoder_loss, flops, copy_mechanism=False)


def all_tokens_mlm(config) -> objectives.Objective:
  """'all_tokens_mlm': generator MLM + the copy-mixture loss over every real token."""

  def encoder_loss(out, batch):
    targets_BxL = electra_objective.original_ids(batch)
    loss_BxL, correct_BxL, copy_BxL = copy_mixture_loss(
        out['mlm_logits'], out['copy_logits'], out['corrupted'], targets_BxL)
    real_BxL = batch['attention_mask']
    loss_sum, count = metrics_lib.weighted(loss_BxL, real_BxL)
    at_masks = lambda x_BxL: heads.gather_positions(x_BxL[..., None],
                                                    batch['masked_positions'])[..., 0]
    return loss_sum / jnp.maximum(count, 1.0), {
        'all_tokens_loss': (loss_sum, count),
        'all_tokens_accuracy': metrics_lib.weighted(correct_BxL, real_BxL),
        'copy_probability': metrics_lib.weighted(copy_BxL, real_BxL),
        'mlm_loss': metrics_lib.weighted(at_masks(loss_BxL), batch['masked_weights']),
        'mlm_accuracy': metrics_lib.weighted(at_masks(correct_BxL),
                                             batch['masked_weights']),
    }

  return _objective(config, 'all_tokens_mlm', encoder_loss,
                    all_tokens_flops_per_token(config), copy_mechanism=True)


def all_tokens_flops_per_token(config) -> float:
  """Generator + encoder + the MLM head at EVERY position + the copy layer (H -> 1)."""
  seq_len = config.data.max_seq_length
  return (electra_objective.generator_flops_per_token(config)
          + flops_lib.encoder_flops_per_token(config.model, seq_len)
          + flops_lib.mlm_head_flops_per_token(config.model, seq_len, seq_len)
          + 6.0 * config.model.hidden_size)
