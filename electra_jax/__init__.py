"""ELECTRA: a small MLM generator and a discriminator trained on replaced-token detection.

Clark et al. 2020 (arXiv:2003.10555); reference google-research/electra.

- `electra_jax.model`: `ElectraModel` (generator + discriminator sharing one embedding
  layer), `ReplacedTokenHead`, `generator_spec`.
- `electra_jax.objective`: the loss, FLOPs and HF architecture of the objective
  'electra', which `common.train.objectives.OBJECTIVES` names as
  'electra_jax.objective:electra' and imports when an experiment asks for it.
- `electra_jax.ablations`: the paper's Table 5 stepping stones Replace MLM and
  All-Tokens MLM (objectives 'replace_mlm', 'all_tokens_mlm'); ELECTRA 15% is
  `electra_jax.objective:electra_15`.
- `electra_jax.hf_electra`: the HF converter of model_type 'electra', named the same way
  in `common.interop.hf_checkpoint.CONVERTERS`.
- `electra_jax.export`: the discriminator as a plain `common.model.encoder.Encoder`.
"""
