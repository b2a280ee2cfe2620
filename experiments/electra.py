r"""ELECTRA: a small MLM generator corrupts the input, the discriminator finds the fakes.

Clark et al. 2020, "ELECTRA: Pre-training Text Encoders as Discriminators Rather Than
Generators" (arXiv:2003.10555), and google-research/electra (configure_pretraining.py,
run_pretraining.py, pretrain/pretrain_helpers.py, build_pretraining_dataset.py).
The model and loss live in electra_jax/ (objective 'electra', which
common/train/objectives.py resolves there when a config names it).

Run the CPU demo (a few minutes on 2 cores, on the embedded default corpus):

  python -m launch.train --config=experiments/electra.py:demo --workdir=/tmp/electra_demo

Paper sizes (Table 6 / Appendix A): `:small` (discriminator 14M in the paper; 13.5M
counted exactly), `:base` (110M), `:large` (335M, the ELECTRA-400K run). The released
ELECTRA-Small++ used a generator as large as the discriminator:
`--config.model.generator_hidden_fraction=1.0`. Any field can be overridden.
"""

import ml_collections

from common.config_args import parse_size
from experiments import base

# Paper Table 6 (and Appendix A): encoder, embedding size E (Small only factorizes),
# sequence length, batch, steps and peak learning rate; generator 1/4 for Small and
# Large, 1/3 for Base (section 3.2); mask 0.25 for Large (Appendix A). 'demo' is
# ours, for a CPU: RoBERTa's demo scale (base.DEMO) at ELECTRA-Small's learning rate.
# Faster rates (2e-3, as the MLM demos) let the generator outpace the discriminator,
# which then stays at the base rate ("if the generator gets too good too quickly the
# discriminator fails to learn anything", K. Clark, google-research/electra issue #37).
SIZES = {
    'demo': base.demo(optimizer=dict(learning_rate=5e-4)),
    'small': dict(model=dict(num_layers=12, hidden_size=256, num_heads=4,
                             intermediate_size=1024, embedding_size=128),
                  data=dict(max_seq_length=128),
                  train=dict(batch_size=128, steps=1_000_000),
                  optimizer=dict(learning_rate=5e-4)),
    'base': dict(model=dict(**base.BERT_BASE, generator_hidden_fraction=1 / 3),
                 data=dict(max_seq_length=512),
                 train=dict(batch_size=256, steps=766_000),
                 optimizer=dict(learning_rate=2e-4)),
    'large': dict(model=base.BERT_LARGE,
                  masking=dict(mask_prob=0.25),
                  data=dict(max_seq_length=512),
                  train=dict(batch_size=2048, steps=400_000),
                  optimizer=dict(learning_rate=2e-4)),
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  size = parse_size(arg, SIZES, default='base')
  config = base.get_config()
  config.name = f'electra-{size}'

  # Model: the discriminator is BERT's post-LN encoder (30522 WordPiece vocab of the
  # released models); Small factorizes the embeddings (E=128, H=256). The generator is
  # derived from it (electra_jax/model.py::generator_spec): hidden = round(H * fraction),
  # same depth, FFN 4x, max(1, hidden // 64) heads; both share the embedding layer.
  config.model.generator_hidden_fraction = 0.25

  # Objective: generator MLM + 50 x replaced-token detection over all real tokens;
  # samples at temperature 1 (configure_pretraining.py gen_weight, disc_weight,
  # temperature).
  config.objective.update(name='electra', generator_weight=1.0,
                          discriminator_weight=50.0, temperature=1.0)

  # Masking (pretrain_helpers.mask): 85% [MASK], 15% left unchanged, no random tokens;
  # max(1, min(N, round(n * p))) tokens with N = int((p + 0.005) * L), so P = N (set
  # below, from the size's p and L). The reference masks inside the graph every step:
  # dynamic. Any masking.strategy works for the generator (e.g. 'span': ELECTRA with
  # SpanBERT's spans).
  config.masking.update(mask_token_prob=0.85, random_token_prob=0.0, budget='electra',
                        dynamic=True, dupe_factor=1)

  # Data (build_pretraining_dataset.py ExampleBuilder): sentences of one document up
  # to the target length, split into [CLS] A [SEP] B [SEP] (10% a single segment),
  # and 5% of examples aiming at a random length in [5, L]; no next-sentence task.
  config.data.update(packing='sentence_segments', single_segment_prob=0.1,
                     short_seq_prob=0.05)

  # Tokenizer: the base's sentencepiece trained on the corpus (the paper used BERT's
  # WordPiece). Optimizer: BERT's Adam b1 0.9, b2 0.999, eps 1e-6, weight decay 0.01
  # (LayerNorm and biases excluded), clip 1.0, 10k warmup then linear decay (Table 6,
  # configure_pretraining.py, model/optimization.py); the peak rate by size.

  # Training: Table 6 batch sizes and steps. On fewer devices keep the global batch
  # with train.grad_accum_steps.
  config.train.update(eval_batches=20, eval_batch_size=128)
  base.apply(config, SIZES[size])
  config.masking.max_predictions_per_seq = int(
      (config.masking.mask_prob + 0.005) * config.data.max_seq_length)
  return config


def ablation(arg: str | None, objective: str) -> ml_collections.ConfigDict:
  """ELECTRA at size `arg` trained with one of its Table 5 ablations' objectives
  (experiments/electra_15.py, replace_mlm.py, all_tokens_mlm.py): everything else,
  generator included, is ELECTRA's, and so is the fine-tuning head (dense, GeLU)."""
  config = get_config(arg)
  config.name = config.name.replace('electra', objective, 1)
  config.objective.update(name=objective, head_activation='gelu')
  return config
