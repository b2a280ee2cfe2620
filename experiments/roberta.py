r"""RoBERTa: dynamic masking, no next-sentence prediction, FULL-SENTENCES packing.

Liu et al. 2019, "RoBERTa: A Robustly Optimized BERT Pretraining Approach"
(arXiv:1907.11692), and facebookresearch/fairseq (examples/roberta, MaskTokensDataset).

Run the CPU demo (a few minutes on 2 cores, on the embedded default corpus):

  python -m launch.train --config=experiments/roberta.py:demo --workdir=/tmp/roberta_demo

Paper sizes: `:base` (125M) and `:large` (355M), 8K sequences of 512 tokens for 500K
steps (paper Table 8 / section 5). Any field can be overridden: `--config.train.steps=100`.
"""

import ml_collections

from common.config_args import parse_size
from experiments import base

# BERT's encoder shapes; peak learning rate and warmup from paper Table 9. 'demo' is
# ours, for a CPU (base.DEMO), and clips gradients at 1.0.
SIZES = {
    'demo': base.demo(optimizer=dict(clip_norm=1.0)),
    'base': dict(model=base.BERT_BASE,
                 optimizer=dict(learning_rate=6e-4, warmup_steps=24_000)),
    'large': dict(model=base.BERT_LARGE,
                  optimizer=dict(learning_rate=4e-4, warmup_steps=30_000)),
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  size = parse_size(arg, SIZES, default='base')
  config = base.get_config()
  config.name = f'roberta-{size}'

  # Model: BERT's post-LN encoder with a 50K byte-level BPE vocab (50265 in the released
  # models), one token type, and 514 position rows of which fairseq skips the first two
  # (padding_idx + 1), so 512 usable positions.
  config.model.update(vocab_size=50265, max_position_embeddings=514, type_vocab_size=1,
                      layer_norm_eps=1e-5, position_offset=2)

  # Objective: masked LM only; NSP removed (paper section 4.2).
  config.objective.name = 'mlm'

  # Masking: dynamic, a new mask every time a sequence is seen (section 4.1); fairseq
  # masks int(0.15 * n + U[0, 1)) tokens, 80/10/10. 80 caps nothing at 512 tokens.
  config.masking.update(max_predictions_per_seq=80, budget='roberta', dynamic=True,
                        dupe_factor=1)

  # Data: FULL-SENTENCES, contiguous sentences up to 512 tokens that may cross document
  # boundaries with a separator between documents (section 4.2).
  config.data.update(max_seq_length=512, packing='full_sentences', short_seq_prob=0.0)

  # Tokenizer: sentencepiece BPE trained on the corpus (the paper's is GPT-2's byte BPE).
  config.tokenizer.model_type = 'bpe'

  # Optimizer: Adam b1 0.9, b2 0.98 (for stability at large batch), eps 1e-6, weight
  # decay 0.01, linear warmup then linear decay (section 3.1, Table 9); fairseq's
  # recipe does not clip gradients.
  config.optimizer.update(b2=0.98, clip_norm=0.0)

  # Training: 8K sequences x 500K steps (Table 9). On fewer devices keep the global
  # batch with train.grad_accum_steps.
  config.train.update(steps=500_000, batch_size=8192, eval_batches=20)
  return base.apply(config, SIZES[size])
