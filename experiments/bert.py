r"""BERT: masked LM (15%, 80/10/10) + next-sentence prediction, static masks.

Devlin et al. 2019, "BERT: Pre-training of Deep Bidirectional Transformers for Language
Understanding" (arXiv:1810.04805), and google-research/bert (create_pretraining_data.py,
run_pretraining.py, optimization.py).

Run the CPU demo (a few minutes on 2 cores, on the embedded default corpus):

  python -m launch.train --config=experiments/bert.py:demo --workdir=/tmp/bert_demo

Paper sizes: `:base` (L12 H768 A12, 110M) and `:large` (L24 H1024 A16, 340M in the paper;
335M counted exactly). Any field can be overridden: `--config.train.steps=100`.
"""

import ml_collections

from common.data import corpus
from common.config_args import parse_size

# name: (layers, hidden, heads, ffn). Paper Table/section 3; 'demo' is ours, for a CPU.
SIZES = {
    'demo': (4, 128, 2, 512),
    'base': (12, 768, 12, 3072),
    'large': (24, 1024, 16, 4096),
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  size = parse_size(arg, SIZES, default='base')
  layers, hidden, heads, ffn = SIZES[size]
  demo = size == 'demo'
  config = ml_collections.ConfigDict()
  config.name = f'bert-{size}'
  config.seed = 0

  # Model: post-LN encoder, learned positions, 2 token types, GeLU (paper section 3).
  # embedding_size (factorized table) and layer_sharing are ALBERT's switches, off here.
  config.model = dict(
      vocab_size=4000 if demo else 30522,  # WordPiece vocab of the released models.
      hidden_size=hidden, num_layers=layers, num_heads=heads, intermediate_size=ffn,
      max_position_embeddings=512, type_vocab_size=2, embedding_size=0,
      hidden_act='gelu', dropout_rate=0.1, attention_dropout_rate=0.1,
      layer_norm_eps=1e-12, initializer_range=0.02, pre_layer_norm=False,
      scan_layers=True, remat_policy='none', dtype='float32', attention_impl='xla',
      position_offset=0,
      layer_sharing='none', num_hidden_groups=1)

  # Objective: MLM + next-sentence prediction, summed (run_pretraining.py).
  config.objective = dict(name='mlm_nsp')

  # Masking: 15% of tokens, 80% [MASK] / 10% random / 10% kept, at most 20 per
  # 128-token sequence, static: dupe_factor copies with fixed masks
  # (create_pretraining_data.py defaults). The demo trains on 64-token sequences:
  # on a CPU, more updates of shorter sequences learn more in the same minutes.
  config.masking = dict(
      strategy='token', mask_prob=0.15, mask_token_prob=0.8, random_token_prob=0.1,
      max_predictions_per_seq=10 if demo else 20, budget='bert', dynamic=False,
      dupe_factor=2 if demo else 10)

  # Data: segment pairs [CLS] A [SEP] B [SEP], B the true next text half the time; 10%
  # of examples shorter (short_seq_prob). Source: the embedded default corpus (Python's
  # own documentation text); see common/data/corpus.py for text, JSONL and TFDS sources.
  config.data = dict(
      **corpus.source_config('default'),
      max_seq_length=64 if demo else 128, packing='segment_pairs', pair_task='nsp', short_seq_prob=0.1)
  config.data.seed = config.get_ref('seed')

  # Tokenizer: sentencepiece trained on the corpus (the paper used a 30k WordPiece).
  config.tokenizer = dict(path='', model_type='unigram')
  config.tokenizer.vocab_size = config.model.get_ref('vocab_size')

  # Optimizer: Adam lr 1e-4, b1 0.9, b2 0.999, L2 weight decay 0.01, warmup 10k steps,
  # linear decay (paper Appendix A.2); eps 1e-6 and clip norm 1.0 from optimization.py.
  config.optimizer = dict(
      name='adamw', learning_rate=2e-3 if demo else 1e-4,
      warmup_steps=80 if demo else 10_000, b1=0.9, b2=0.999, eps=1e-6,
      weight_decay=0.01, clip_norm=1.0, schedule='warmup_linear_decay')

  # Training: batch 256 x 128 tokens for 1M steps (paper A.2 trains 90% of them at
  # 128 and 10% at 512 tokens; run the second phase as its own run with
  # data.max_seq_length=512 and masking.max_predictions_per_seq=80).
  config.train = dict(
      steps=800 if demo else 1_000_000, batch_size=32 if demo else 256,
      grad_accum_steps=1, log_every=20 if demo else 100,
      eval_every=200 if demo else 10_000, eval_batches=8 if demo else 50,
      eval_batch_size=32 if demo else 256, checkpoint_every=200 if demo else 10_000,
      keep_checkpoints=3, data_threads=2,
      peak_flops_per_device=0.0,  # 0: known accelerators' peak (common/train/flops.py).
      init_from='')  # A model directory to start from (launch.convert --from=hf).

  # Mesh: pure data parallelism over every device (dcn_data: slices, multi-slice TPU).
  config.mesh = dict(shape=dict(data=-1, fsdp=1, tensor=1), dcn_data=1)
  return config
