r"""Replace MLM: masked-out tokens replaced by ELECTRA's generator samples, not [MASK].

Clark et al. 2020, "ELECTRA: Pre-training Text Encoders as Discriminators Rather Than
Generators" (arXiv:2003.10555), section 3.5: "the same as masked language modeling
except instead of replacing masked-out tokens with [MASK], they are replaced with
tokens from a generator model"; GLUE 82.4 against BERT's 82.2 at base size (Table 5).
ELECTRA's generator, masking and data; the discriminator-sized encoder predicts the
original tokens at the selected positions (objective 'replace_mlm',
electra_jax/ablations.py).

  python -m launch.train --config=experiments/replace_mlm.py:demo --workdir=/tmp/replace_mlm_demo

Sizes: ELECTRA's (`:demo`, `:small`, `:base`, `:large`).
"""

import ml_collections

from experiments import electra

SIZES = electra.SIZES


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  return electra.ablation(arg, 'replace_mlm')
