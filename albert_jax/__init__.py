"""ALBERT (Lan et al. 2020, arXiv:1909.11942; google-research/albert), as config switches.

Every ALBERT idea is one a BERT-family encoder can switch on, so each lives in the
shared code (common/ may not import a family package) and this package holds no model:

- Factorized embedding, V x E table then E -> H: `model.embedding_size` E != H in
  common/encoder.py (`Embeddings`, `Encoder.embedding_projection`, outside the shared
  layers as the reference's `embedding_hidden_mapping_in`); the MLM head maps H -> E and
  reuses the table (common/heads.py `MaskedLMHead`).
- Cross-layer sharing: `model.layer_sharing` 'all' / 'attention' / 'ffn' / 'none' and
  `model.num_hidden_groups` in common/encoder.py: one module scope applied in every
  layer, its weights once in the param tree.
- Sentence-order prediction: `data.pair_task='sop'` (common/packing.py
  `create_segment_pairs`) and objective 'mlm_sop' (common/objectives.py), the 2-way
  head on the pooled [CLS] (common/heads.py).
- n-gram masking, n = 1..3 with p(n) proportional to 1/n: `masking.strategy='ngram'`,
  `ngram_probs='albert'` (common/masking.py `select_ngrams`).
- LAMB, LayerNorm and biases excluded from decay and trust ratio:
  `optimizer.name='lamb'` (common/optimizers.py `lamb`).
- FLOPs count every applied layer (sharing saves parameters, not compute):
  common/flops.py.
- Sizes and the paper's recipe: experiments/albert.py.
"""
