"""ALBERT (Lan et al. 2020, arXiv:1909.11942; google-research/albert), as config switches.

Every ALBERT idea is one a BERT-family encoder can switch on, so each lives in the
shared code (common/ may not import a family package) and this package holds no model:

- Factorized embedding, V x E table then E -> H: `model.embedding_size` E != H in
  common/model/encoder.py (`Embeddings`, `Encoder.embedding_projection`, outside the shared
  layers as the reference's `embedding_hidden_mapping_in`); the MLM head maps H -> E and
  reuses the table (common/model/heads.py `MaskedLMHead`).
- Cross-layer sharing: `model.layer_sharing` 'all' / 'attention' / 'ffn' / 'none' and
  `model.num_hidden_groups` in common/model/encoder.py: one module scope applied in every
  layer, its weights once in the param tree.
- Sentence-order prediction: `data.pair_task='sop'` (common/data/packing.py
  `create_segment_pairs`) and objective 'mlm_sop' (common/train/objectives.py), the 2-way
  head on the pooled [CLS] (common/model/heads.py).
- n-gram masking, n = 1..3 with p(n) proportional to 1/n: `masking.strategy='ngram'`,
  `ngram_probs='albert'` (common/data/masking.py `select_ngrams`).
- LAMB, LayerNorm and biases excluded from decay and trust ratio:
  `optimizer.name='lamb'` (common/train/optimizers.py `lamb`).
- FLOPs count every applied layer (sharing saves parameters, not compute):
  common/train/flops.py `encoder_flops_per_token`, in the objective's `flops_per_token`.
- Sizes and the paper's recipe: experiments/albert.py.

What only ALBERT has is its HF converter, `albert_jax.hf_albert.ALBERT`, which
`common.interop.hf_checkpoint.CONVERTERS` names for model_type 'albert' and imports
when such a checkpoint is converted.
"""
