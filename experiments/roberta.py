r"""RoBERTa: dynamic masking, no next-sentence prediction, FULL-SENTENCES packing.

Liu et al. 2019, "RoBERTa: A Robustly Optimized BERT Pretraining Approach"
(arXiv:1907.11692), and facebookresearch/fairseq (examples/roberta, MaskTokensDataset).

Run the CPU demo (a few minutes on 2 cores, on the embedded default corpus):

  python -m launch.train --config=experiments/roberta.py:demo --workdir=/tmp/roberta_demo

Paper sizes: `:base` (125M) and `:large` (355M), 8K sequences of 512 tokens for 500K
steps (paper Table 8 / section 5). Any field can be overridden: `--config.train.steps=100`.
"""

import ml_collections

from common.data import corpus
from common.config_args import parse_size

# name: (layers, hidden, heads, ffn, peak lr, warmup). lr/warmup: paper Table 9.
SIZES = {
    'demo': (4, 128, 2, 512, 2e-3, 80),
    'base': (12, 768, 12, 3072, 6e-4, 24_000),
    'large': (24, 1024, 16, 4096, 4e-4, 30_000),
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  size = parse_size(arg, SIZES, default='base')
  layers, hidden, heads, ffn, lr, warmup = SIZES[size]
  demo = size == 'demo'
  config = ml_collections.ConfigDict()
  config.name = f'roberta-{size}'
  config.seed = 0

  # Model: BERT's post-LN encoder with a 50K byte-level BPE vocab (50265 in the released
  # models), one token type, and 514 position rows of which fairseq skips the first two
  # (padding_idx + 1), so 512 usable positions.
  config.model = dict(
      vocab_size=4000 if demo else 50265,
      hidden_size=hidden, num_layers=layers, num_heads=heads, intermediate_size=ffn,
      max_position_embeddings=514, type_vocab_size=1, embedding_size=0,
      hidden_act='gelu', dropout_rate=0.1, attention_dropout_rate=0.1,
      layer_norm_eps=1e-5, initializer_range=0.02, pre_layer_norm=False,
      scan_layers=True, remat_policy='none', dtype='float32', attention_impl='xla',
      position_offset=2,
      layer_sharing='none', num_hidden_groups=1)

  # Objective: masked LM only; NSP removed (paper section 4.2).
  config.objective = dict(name='mlm')

  # Masking: dynamic, a new mask every time a sequence is seen (section 4.1); fairseq
  # masks int(0.15 * n + U[0, 1)) tokens, 80/10/10. 80 caps nothing at 512 tokens.
  config.masking = dict(
      strategy='token', mask_prob=0.15, mask_token_prob=0.8, random_token_prob=0.1,
      max_predictions_per_seq=10 if demo else 80, budget='roberta', dynamic=True,
      dupe_factor=1)

  # Data: FULL-SENTENCES, contiguous sentences up to 512 tokens that may cross document
  # boundaries with a separator between documents (section 4.2).
  config.data = dict(
      **corpus.source_config('default'),
      max_seq_length=64 if demo else 512, packing='full_sentences', pair_task='nsp',
      short_seq_prob=0.0)
  config.data.seed = config.get_ref('seed')

  # Tokenizer: sentencepiece BPE trained on the corpus (the paper's is GPT-2's byte BPE).
  config.tokenizer = dict(path='', model_type='bpe')
  config.tokenizer.vocab_size = config.model.get_ref('vocab_size')

  # Optimizer: Adam b1 0.9, b2 0.98 (for stability at large batch), eps 1e-6, weight
  # decay 0.01, linear warmup then linear decay (section 3.1, Table 9); fairseq's
  # recipe does not clip gradients.
  config.optimizer = dict(
      name='adamw', learning_rate=lr, warmup_steps=warmup, b1=0.9, b2=0.98, eps=1e-6,
      weight_decay=0.01, clip_norm=1.0 if demo else 0.0, schedule='warmup_linear_decay')

  # Training: 8K sequences x 500K steps (Table 9). On fewer devices keep the global
  # batch with train.grad_accum_steps.
  config.train = dict(
      steps=800 if demo else 500_000, batch_size=32 if demo else 8192,
      grad_accum_steps=1, log_every=20 if demo else 100,
      eval_every=200 if demo else 10_000, eval_batches=8 if demo else 20,
      eval_batch_size=32 if demo else 256, checkpoint_every=200 if demo else 10_000,
      keep_checkpoints=3, data_threads=2,
      peak_flops_per_device=0.0,  # 0: known accelerators' peak (common/train/flops.py).
      init_from='')  # A model directory to start from (launch.convert --from=hf).

  # Mesh: pure data parallelism over every device (dcn_data: slices, multi-slice TPU).
  config.mesh = dict(shape=dict(data=-1, fsdp=1, tensor=1), dcn_data=1)
  return config
