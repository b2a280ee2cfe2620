r"""SpanBERT: geometric span masking, span-boundary objective, single segments, no NSP.

Joshi et al. 2020, "SpanBERT: Improving Pre-training by Representing and Predicting
Spans" (TACL, arXiv:1907.10529), and facebookresearch/SpanBERT
(pretraining/fairseq/data/masking.py, models/pair_bert.py).

Run the CPU demo (a few minutes on 2 cores, on the embedded default corpus):

  python -m launch.train --config=experiments/spanbert.py:demo --workdir=/tmp/spanbert_demo

Sizes: `:base` (L12 H768 A12) and `:large` (L24 H1024 A16), BERT's encoders plus the
SBO head (about 2.4M / 3.2M more parameters). Any field can be overridden.
"""

import ml_collections

from common.config_args import parse_size
from experiments import base
from experiments import bert

# BERT's sizes (experiments/bert.py). The demo (base.DEMO) halves BERT's demo rate: at
# 2e-3 held-out MLM and SBO accuracy stayed at exactly 7.0% at every evaluation from
# step 200 to 600 (a constant prediction).
SIZES = {'demo': base.demo(optimizer=dict(learning_rate=1e-3)), 'base': {}, 'large': {}}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  size = parse_size(arg, SIZES, default='base')
  config = bert.get_config(size)
  config.name = f'spanbert-{size}'
  # Model: BERT's (the released models use BERT's cased 28996-piece WordPiece vocab).
  config.model.vocab_size = 28996

  # Objective: MLM + span-boundary objective, loss = MLM + 1.0 * SBO (section 3.2);
  # the SBO head's relative position table has 200 rows (the reference's size).
  config.objective.update(name='mlm_sbo', sbo_weight=1.0, sbo_positions=200)

  # Masking: span lengths in words ~ Geo(p=0.2) clipped at 10 (mean 3.8), spans at
  # random word-aligned anchors until ceil(0.15 * n) tokens are masked; 80/10/10 is
  # decided once per span (section 3.1). New masks every epoch (the reference masks
  # on the fly). ceil(0.15 * 512) = 77 <= 80 predictions.
  config.masking.update(strategy='span', span_p=0.2, span_max=10,
                        max_predictions_per_seq=80, budget='spanbert', dynamic=True,
                        dupe_factor=1)

  # Data: single contiguous segments [CLS] x [SEP] of up to 512 tokens from one
  # document (DOC-SENTENCES), no next-sentence prediction (section 3.3).
  config.data.update(max_seq_length=512, packing='doc_sentences', short_seq_prob=0.0)

  # Optimizer: Adam lr 1e-4, eps 1e-8, wd 0.01, warmup 10k, linear decay, clip 1.0;
  # 2.4M updates of 256 x 512 tokens (section 4.1 / appendix B; batch unverified).
  config.optimizer.eps = 1e-8
  config.train.update(steps=2_400_000)
  return base.apply(config, SIZES[size])
