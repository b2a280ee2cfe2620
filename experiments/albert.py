r"""ALBERT: factorized embeddings, cross-layer sharing, sentence-order prediction, LAMB.

Lan et al. 2020, "ALBERT: A Lite BERT for Self-supervised Learning of Language
Representations" (ICLR, arXiv:1909.11942), and google-research/albert
(modeling.py, create_pretraining_data.py, run_pretraining.py, lamb_optimizer.py).
Settings of the v2 models (no dropout); albert_jax/__init__.py maps each idea to code.

Run the CPU demo (a few minutes on 2 cores, on the embedded default corpus):

  python -m launch.train --config=experiments/albert.py:demo --workdir=/tmp/albert_demo

Paper sizes (Table 1, all E=128, every layer shared): `:base` 12M, `:large` 18M,
`:xlarge` 60M, `:xxlarge` 235M (223M counted exactly, as the released model's card
says: see tests/test_albert.py). The sharing ablations of Table 4 are a flag away:
`--config.model.layer_sharing=attention` ('all', 'attention', 'ffn', 'none';
`model.num_hidden_groups` as the reference).
"""

import ml_collections

from common.config_args import parse_size
from experiments import base

# Paper Table 1; 'demo' is ours, for a CPU (base.DEMO), with E=64, 10 static copies
# of the masks, and LAMB at a larger relative step (see the optimizer below).
SIZES = {
    'demo': base.demo(model=dict(embedding_size=64), masking=dict(dupe_factor=10),
                      optimizer=dict(learning_rate=1e-2)),
    'base': dict(model=base.BERT_BASE),
    'large': dict(model=base.BERT_LARGE),
    'xlarge': dict(model=dict(num_layers=24, hidden_size=2048, num_heads=16,
                              intermediate_size=8192)),
    'xxlarge': dict(model=dict(num_layers=12, hidden_size=4096, num_heads=64,
                               intermediate_size=16384)),
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  size = parse_size(arg, SIZES, default='base')
  config = base.get_config()
  config.name = f'albert-{size}'

  # Model: BERT's post-LN encoder with a V x E token table projected E -> H outside
  # the shared layers (embedding_hidden_mapping_in), every layer parameter shared
  # (one group), GeLU, and no dropout (v2 models). The MLM head maps H -> E and
  # reuses the V x E table.
  config.model.update(
      # sentencepiece 30k of the released models; ours is the base's tokenizer, a
      # sentencepiece unigram trained on the corpus.
      vocab_size=30000,
      embedding_size=128, layer_sharing='all', num_hidden_groups=1,
      dropout_rate=0.0, attention_dropout_rate=0.0)

  # Objective: MLM + sentence-order prediction on the pooled [CLS], summed.
  config.objective.name = 'mlm_sop'

  # Masking: whole-word n-grams, n = 1..3 with p(n) proportional to 1/n (6/11, 3/11,
  # 2/11); budget min(20, max(1, round(0.15 n_tokens))) even at 512 tokens
  # (max_predictions_per_seq 20); 80% [MASK] / 10% random / 10% kept per token;
  # static masks, dupe_factor 40 (create_pretraining_data.py). The demo keeps static
  # masks with 10 copies: with one copy redrawn every epoch, each pair keeps its one
  # order label, and held-out SOP accuracy fell back to 0.50 by step 800 (measured),
  # as if the model had memorised the training pairs.
  config.masking.update(strategy='ngram', ngram_probs='albert', ngram_max=3,
                        max_predictions_per_seq=20, dupe_factor=40)

  # Data: BERT's segment pairs [CLS] A [SEP] B [SEP] from one document, A and B
  # swapped for half of them (label 1); a one-sentence chunk takes B from a random
  # document, as the reference code does (common/data/packing.py); 'skip' drops such
  # chunks, for pure sentence-order pairs as the paper describes. short_seq_prob 0.1.
  config.data.update(max_seq_length=512, pair_task='sop',
                     sop_single_sentence='random_document')

  # Optimizer: LAMB b1 0.9, b2 0.999, eps 1e-6, weight decay 0.01, LayerNorm and
  # biases excluded from decay and trust ratio; lr 0.00176, warmup 3125, linear decay,
  # clip 1.0 (paper section 4.1, optimization.py). LAMB's lr is a relative step per
  # tensor (||update|| = lr ||w||): the short demo needs a larger one (1e-2; at 3e-2
  # held-out MLM accuracy stalled at 6.3% from step 400, measured).
  config.optimizer.update(name='lamb', learning_rate=0.00176, warmup_steps=3125)

  # Training: batch 4096 x 512 tokens, 125k steps (section 4.1). On fewer devices
  # keep the global batch with train.grad_accum_steps.
  config.train.update(steps=125_000, batch_size=4096, eval_every=5_000,
                      checkpoint_every=5_000)
  return base.apply(config, SIZES[size])
