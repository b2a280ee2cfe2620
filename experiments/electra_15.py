r"""ELECTRA 15%: ELECTRA whose discriminator learns only from the masked-out tokens.

Clark et al. 2020, "ELECTRA: Pre-training Text Encoders as Discriminators Rather Than
Generators" (arXiv:2003.10555), section 3.5: "identical to ELECTRA except the
discriminator loss only comes from the 15% of the tokens that were masked out of the
input"; GLUE 82.4 against ELECTRA's 85.0 at base size (Table 5). The same networks,
data and FLOPs as experiments/electra.py; objective 'electra_15'
(electra_jax/objective.py).

  python -m launch.train --config=experiments/electra_15.py:demo --workdir=/tmp/electra_15_demo

Sizes: ELECTRA's (`:demo`, `:small`, `:base`, `:large`).
"""

import ml_collections

from experiments import electra

SIZES = electra.SIZES


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  return electra.ablation(arg, 'electra_15')
