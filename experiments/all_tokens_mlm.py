r"""All-Tokens MLM: Replace MLM predicting every token, with a copy mechanism.

Clark et al. 2020, "ELECTRA: Pre-training Text Encoders as Discriminators Rather Than
Generators" (arXiv:2003.10555), section 3.5: masked tokens replaced by generator
samples, and the model "predicts the identity of all tokens in the input", its output
"D weight on the input token plus 1 - D times the output of the MLM softmax", D from a
sigmoid layer; GLUE 84.3 against ELECTRA's 85.0 and BERT's 82.2 at base size (Table 5).
ELECTRA's generator, masking and data (objective 'all_tokens_mlm',
electra_jax/ablations.py). Its MLM head projects every position onto the vocabulary,
which its FLOPs count.

  python -m launch.train --config=experiments/all_tokens_mlm.py:demo --workdir=/tmp/all_tokens_demo

Sizes: ELECTRA's (`:demo`, `:small`, `:base`, `:large`).
"""

import ml_collections

from experiments import electra

SIZES = electra.SIZES


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  return electra.ablation(arg, 'all_tokens_mlm')
