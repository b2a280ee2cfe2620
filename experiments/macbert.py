r"""MacBERT: MLM as correction: n-gram whole-word masking with similar-word replacement, SOP.

Cui et al. 2020, "Revisiting Pre-Trained Models for Chinese Natural Language
Processing" (Findings of EMNLP, arXiv:2004.13922), section 3.3. No training code was
released; the similar-word table is built from the training corpus (PPMI + SVD word
vectors, common/data/similar_words.py) or read from `masking.similar_words_path`.

Run the CPU demo (a few minutes on 2 cores, on the embedded default corpus):

  python -m launch.train --config=experiments/macbert.py:demo --workdir=/tmp/macbert_demo

Sizes: `:base` (L12 H768, 102M in the paper with its 21128-piece Chinese vocab) and
`:large` (L24 H1024, 324M); BERT's encoders with ALBERT's sentence-order prediction.
"""

import ml_collections

from common.config_args import parse_size
from experiments import base
from experiments import bert

# BERT's sizes (experiments/bert.py). The demo (base.DEMO) takes ALBERT's demo rate for
# LAMB (see the optimizer below).
SIZES = {'demo': base.demo(optimizer=dict(learning_rate=3e-2)), 'base': {}, 'large': {}}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  size = parse_size(arg, SIZES, default='base')
  config = bert.get_config(size)
  config.name = f'macbert-{size}'
  config.model.vocab_size = 21128  # Chinese BERT's vocab.

  # Objective: MLM + sentence-order prediction (section 3.3, as ALBERT).
  config.objective.name = 'mlm_sop'

  # Masking: whole-word n-grams, n = 1..4 at 40/30/20/10%, 15% of the input (we count
  # tokens, so max_predictions holds); each selected word becomes a similar word 80%,
  # a random word 10%, stays 10%, never [MASK] (mask_token_prob 0). A word without a
  # same-length neighbour gets a random word. Masks are redrawn every epoch (ours).
  config.masking.update(
      strategy='macbert', mask_token_prob=0.0, similar_word_prob=0.8,
      ngram_probs='macbert', ngram_max=4, max_predictions_per_seq=80, dynamic=True,
      dupe_factor=1)

  # Data: segment pairs, swapped half the time (SOP); 512 tokens.
  config.data.update(max_seq_length=512, pair_task='sop')

  # Optimizer: LAMB (section 4.1; lr 1e-4 for base, unverified), as ALBERT's
  # (common/train/optimizers.py: LayerNorm and biases outside decay and trust ratio); base:
  # 1M steps of batch 2560 at 512 tokens (paper section 4.1, unverified). LAMB's lr is
  # a relative step per tensor, so the demo takes ALBERT's demo rate.
  config.optimizer.update(name='lamb', learning_rate=1e-4)
  config.train.update(steps=1_000_000, batch_size=2560)
  return base.apply(config, SIZES[size])
