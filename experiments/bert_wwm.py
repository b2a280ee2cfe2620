r"""BERT-wwm: BERT with whole-word masking (every piece of a word masked together).

google-research/bert README ("Whole Word Masking", May 2019) and
create_pretraining_data.py `--do_whole_word_mask`: "##" pieces join the previous
word's candidate and a word is masked as a unit; the budget still counts tokens, and
the 80/10/10 choice is made per token. Everything else is BERT (experiments/bert.py):
MLM + next-sentence prediction, static masks, the same sizes and optimizer. Reported:
BERT-large SQuAD 1.1 F1 91.0 -> 92.8 with whole-word masking (README).

Run the CPU demo (a few minutes on 2 cores, on the embedded default corpus):

  python -m launch.train --config=experiments/bert_wwm.py:demo --workdir=/tmp/bert_wwm_demo

Sizes: `:demo`, `:base` (110M), `:large` (340M). Words here are sentencepiece words
(a '▁' piece and its continuations); a WordPiece vocabulary works the same way
(common/data/word_units.py).
"""

import ml_collections

from common.config_args import parse_size
from experiments import bert

SIZES = bert.SIZES


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  size = parse_size(arg, SIZES, default='base')
  config = bert.get_config(size)
  config.name = f'bert-wwm-{size}'
  # Masking: whole words, shuffled and taken while they fit the token budget
  # (create_masked_lm_predictions with do_whole_word_mask).
  config.masking.strategy = 'whole_word'
  return config
