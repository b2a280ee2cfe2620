r"""ERNIE 1.0: knowledge masking: phrases and entities masked as whole units, with NSP.

Sun et al. 2019, "ERNIE: Enhanced Representation through Knowledge Integration"
(arXiv:1904.09223), and PaddlePaddle/ERNIE r2.0 (batching.py `mask`, ernie config).
The paper's segmenter and entity lexicon were not released: phrases are found by
corpus PMI and entities as runs of capitalised words (common/data/phrases.py), or read
from `masking.phrase_lexicon_path`.

Run the CPU demo (a few minutes on 2 cores, on the embedded default corpus):

  python -m launch.train --config=experiments/ernie.py:demo --workdir=/tmp/ernie_demo

Sizes: `:base` (L12 H768 A12, ReLU, the released ERNIE 1.0) and `:demo`.
"""

import ml_collections

from common.config_args import parse_size
from experiments import base
from experiments import bert

# BERT's base size (experiments/bert.py); the demo (base.DEMO) caps 16 predictions
# (see the masking below).
SIZES = {'demo': base.demo(masking=dict(max_predictions_per_seq=16)), 'base': {}}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  size = parse_size(arg, SIZES, default='base')
  config = bert.get_config(size)
  config.name = f'ernie-{size}'
  # Model: 12 layers, 768 hidden, ReLU (ernie_config.json); vocab 18000 (Chinese
  # characters, unverified) for base.
  config.model.update(vocab_size=18000, hidden_act='relu')

  # Objective: BERT's MLM + next-sentence prediction (ERNIE 1.0 keeps NSP).

  # Masking: per input, knowledge units (phrases, entities, words) with prob
  # ernie_knowledge_prob (0.5, ours: the mixing rate is not stated), else single
  # tokens; each unit selected with p 0.15, 80/10/10 per token (batching.py `mask`);
  # on the fly, as the reference. The count is Bernoulli (mean 0.15 n), so the cap
  # sits well above it (64 tokens: mean 9.6; 512: mean 77). Phrases: corpus PMI >= 3
  # in 2 word2phrase passes (up to 4 words), or a lexicon file (common/data/phrases.py;
  # masking.phrase_min_pmi, phrase_passes, phrase_lexicon_path).
  config.masking.update(strategy='ernie', ernie_knowledge_prob=0.5,
                        max_predictions_per_seq=100, dynamic=True, dupe_factor=1)
  config.data.update(max_seq_length=512)
  return base.apply(config, SIZES[size])
