"""ELECTRA: a small MLM generator and a discriminator trained on replaced-token detection.

Clark et al. 2020 (arXiv:2003.10555); reference google-research/electra.

- `electra_jax.model`: `ElectraModel` (generator + discriminator sharing one embedding
  layer), `ReplacedTokenHead`, `generator_spec`.
- `electra_jax.objective`: the loss; importing it registers the objective 'electra' in
  `common.train.objectives`. This package imports it, so `import electra_jax` (done by
  experiments/electra.py) is what makes `objective.name='electra'` available.
- `electra_jax.export`: the discriminator as a plain `common.model.encoder.Encoder`.
"""

from electra_jax import objective  # Registers 'electra' in common.train.objectives.
