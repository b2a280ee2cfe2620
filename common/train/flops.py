"""Model FLOPs per trained token, and MFU against the accelerator's peak.

Counted from the config, as MaxText's `calculate_tflops_training_per_device` does:
every matmul weight costs 2 FLOPs per token forward and 4 backward (x3 = 6), and the
attention scores and weighted sum cost 4 * T * H per token and layer forward (x3 = 12),
for full bidirectional attention (no causal halving). With N the non-embedding matmul
parameters this is the usual 6 N + 12 L H T (RECIPES.md, "Compute anchors"; Kaplan et
al. 2020 section 2.1). Heads are counted where they run: the MLM head only at the P
masked positions of each T-token sequence. Embedding lookups, LayerNorm, softmax and the
optimizer are not model FLOPs. Shared layers (ALBERT) count once per application.

These are the counting helpers; each objective adds up its own model's parts into its
`Objective.flops_per_token` (common/train/objectives.py, electra_jax/objective.py).
"""

import jax

# Dense peak FLOP/s per device for bf16 matmuls, from the vendors' spec sheets.
PEAK_FLOPS = {
    'TPU v4': 275e12,    # Cloud TPU v4 documentation.
    'TPU v5 lite': 197e12,  # v5e.
    'TPU v5': 459e12,    # v5p.
    'TPU v6 lite': 918e12,  # Trillium (v6e).
    'NVIDIA A100': 312e12,  # A100 datasheet, dense bf16.
    'NVIDIA H100': 989e12,  # H100 SXM datasheet, dense bf16.
    'NVIDIA H200': 989e12,
    'NVIDIA B200': 2250e12,
}


def encoder_flops_per_token(model_config, seq_len: int) -> float:
  """Training FLOPs per token of the shared encoder (embeddings projection + layers).

  N counts the weights of every layer APPLICATION: with ALBERT's cross-layer sharing
  (`model.layer_sharing`) one weight is applied in several layers and costs its FLOPs
  in each, so sharing changes the parameter count (summary.json) but not this.
  """
  get = model_config.get
  h, layers = model_config.hidden_size, model_config.num_layers
  e = get('embedding_size') or h
  per_layer_weights = 4 * h * h + 2 * h * model_config.intermediate_size
  flops = 6 * layers * per_layer_weights + 12 * layers * h * seq_len
  if e != h:
    flops += 6 * e * h  # The factorized embedding's E -> H projection.
  return float(flops)


def mlm_head_flops_per_token(model_config, seq_len: int, predictions: int) -> float:
  """Transform H -> E and the tied E -> V projection, at `predictions` of `seq_len`."""
  h = model_config.hidden_size
  e = model_config.get('embedding_size') or h
  return 6.0 * (h * e + e * model_config.vocab_size) * predictions / seq_len


def pooled_classifier_flops_per_token(model_config, seq_len: int, classes: int) -> float:
  """The pooler (H -> H) and a `classes`-way classifier, once per sequence on [CLS]."""
  h = model_config.hidden_size
  return 6.0 * (h * h + classes * h) / seq_len


def peak_flops_per_device(train_config) -> float | None:
  """`train.peak_flops_per_device` if set, else the table entry for this device."""
  configured = train_config.get('peak_flops_per_device', 0)
  if configured:
    return float(configured)
  kind = jax.devices()[0].device_kind
  for name, peak in sorted(PEAK_FLOPS.items(), key=lambda kv: -len(kv[0])):
    if kind.startswith(name):
      return peak
  return None  # e.g. CPUs: no well-defined peak; MFU is then not reported.


def mfu(tokens_per_sec: float, flops_per_token: float, peak_per_device: float | None,
        num_devices: int) -> float | None:
  """Model FLOPs utilisation: achieved model FLOP/s over the devices' peak."""
  if not peak_per_device:
    return None
  return tokens_per_sec * flops_per_token / (peak_per_device * num_devices)
