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

from common.data import corpus
from common.config_args import parse_size

# name: (layers, hidden, heads, ffn). Paper Table 1; 'demo' is ours, for a CPU.
SIZES = {
    'demo': (4, 128, 2, 512),
    'base': (12, 768, 12, 3072),
    'large': (24, 1024, 16, 4096),
    'xlarge': (24, 2048, 16, 8192),
    'xxlarge': (12, 4096, 64, 16384),
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  size = parse_size(arg, SIZES, default='base')
  layers, hidden, heads, ffn = SIZES[size]
  demo = size == 'demo'
  config = ml_collections.ConfigDict()
  config.name = f'albert-{size}'
  config.seed = 0

  # Model: BERT's post-LN encoder with a V x E token table projected E -> H outside
  # the shared layers (embedding_hidden_mapping_in), every layer parameter shared
  # (one group), GeLU, and no dropout (v2 models). The MLM head maps H -> E and
  # reuses the V x E table.
  config.model = dict(
      vocab_size=4000 if demo else 30000,  # sentencepiece 30k of the released models.
      hidden_size=hidden, num_layers=layers, num_heads=heads, intermediate_size=ffn,
      max_position_embeddings=512, type_vocab_size=2,
      embedding_size=64 if demo else 128,
      layer_sharing='all', num_hidden_groups=1,
      hidden_act='gelu', dropout_rate=0.0, attention_dropout_rate=0.0,
      layer_norm_eps=1e-12, initializer_range=0.02, pre_layer_norm=False,
      scan_layers=True, remat_policy='none', dtype='float32', attention_impl='xla',
      position_offset=0)

  # Objective: MLM + sentence-order prediction on the pooled [CLS], summed.
  config.objective = dict(name='mlm_sop')

  # Masking: whole-word n-grams, n = 1..3 with p(n) proportional to 1/n (6/11, 3/11,
  # 2/11); budget min(20, max(1, round(0.15 n_tokens))) even at 512 tokens
  # (max_predictions_per_seq 20); 80% [MASK] / 10% random / 10% kept per token;
  # static masks, dupe_factor 40 (create_pretraining_data.py). The demo keeps static
  # masks with 10 copies: with one copy redrawn every epoch, each pair keeps its one
  # order label, and held-out SOP accuracy fell back to 0.50 by step 800 (measured),
  # as if the model had memorised the training pairs.
  config.masking = dict(
      strategy='ngram', ngram_probs='albert', ngram_max=3, mask_prob=0.15,
      mask_token_prob=0.8, random_token_prob=0.1,
      max_predictions_per_seq=10 if demo else 20, budget='bert',
      dynamic=False, dupe_factor=10 if demo else 40)

  # Data: BERT's segment pairs [CLS] A [SEP] B [SEP] from one document, A and B
  # swapped for half of them (label 1); a one-sentence chunk takes B from a random
  # document, as the reference code does (common/data/packing.py); 'skip' drops such
  # chunks, for pure sentence-order pairs as the paper describes. short_seq_prob 0.1.
  config.data = dict(
      **corpus.source_config('default'),
      max_seq_length=64 if demo else 512, packing='segment_pairs', pair_task='sop',
      sop_single_sentence='random_document', short_seq_prob=0.1)
  config.data.seed = config.get_ref('seed')

  # Tokenizer: sentencepiece unigram trained on the corpus (as the released 30k).
  config.tokenizer = dict(path='', model_type='unigram')
  config.tokenizer.vocab_size = config.model.get_ref('vocab_size')

  # Optimizer: LAMB b1 0.9, b2 0.999, eps 1e-6, weight decay 0.01, LayerNorm and
  # biases excluded from decay and trust ratio; lr 0.00176, warmup 3125, linear decay,
  # clip 1.0 (paper section 4.1, optimization.py). LAMB's lr is a relative step per
  # tensor (||update|| = lr ||w||): the short demo needs a larger one (1e-2; at 3e-2
  # held-out MLM accuracy stalled at 6.3% from step 400, measured).
  config.optimizer = dict(
      name='lamb', learning_rate=1e-2 if demo else 0.00176,
      warmup_steps=80 if demo else 3125, b1=0.9, b2=0.999, eps=1e-6,
      weight_decay=0.01, clip_norm=1.0, schedule='warmup_linear_decay')

  # Training: batch 4096 x 512 tokens, 125k steps (section 4.1). On fewer devices
  # keep the global batch with train.grad_accum_steps.
  config.train = dict(
      steps=800 if demo else 125_000, batch_size=32 if demo else 4096,
      grad_accum_steps=1, log_every=20 if demo else 100,
      eval_every=200 if demo else 5_000, eval_batches=8 if demo else 50,
      eval_batch_size=32 if demo else 256, checkpoint_every=200 if demo else 5_000,
      keep_checkpoints=3, data_threads=2,
      peak_flops_per_device=0.0,  # 0: known accelerators' peak (common/train/flops.py).
      init_from='')  # A model directory to start from (launch.convert --from=hf).

  # Mesh: pure data parallelism over every device (dcn_data: slices, multi-slice TPU).
  config.mesh = dict(shape=dict(data=-1, fsdp=1, tensor=1), dcn_data=1)
  return config
