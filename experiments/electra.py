r"""ELECTRA: a small MLM generator corrupts the input, the discriminator finds the fakes.

Clark et al. 2020, "ELECTRA: Pre-training Text Encoders as Discriminators Rather Than
Generators" (arXiv:2003.10555), and google-research/electra (configure_pretraining.py,
run_pretraining.py, pretrain/pretrain_helpers.py, build_pretraining_dataset.py).
The model and loss live in electra_jax/; importing it registers the objective
'electra' (common/ never imports electra_jax).

Run the CPU demo (a few minutes on 2 cores, on the embedded default corpus):

  python -m launch.train --config=experiments/electra.py:demo --workdir=/tmp/electra_demo

Paper sizes (Table 6 / Appendix A): `:small` (discriminator 14M in the paper; 13.5M
counted exactly), `:base` (110M), `:large` (335M, the ELECTRA-400K run). The released
ELECTRA-Small++ used a generator as large as the discriminator:
`--config.model.generator_hidden_fraction=1.0`. Any field can be overridden.
"""

import ml_collections

from common.data import corpus
from common.config_args import parse_size
import electra_jax  # pylint: disable=unused-import  (registers objective 'electra')

# name: (layers, hidden, heads, ffn, embedding E, generator fraction, mask prob, seq len,
#        batch, steps, peak lr). Paper Table 6 (and Appendix A); generator 1/4 for Small
# and Large, 1/3 for Base (section 3.2); mask 0.25 for Large (Appendix A). 'demo' is
# ours, for a CPU: RoBERTa's demo scale at ELECTRA-Small's learning rate. Faster
# rates (2e-3, as the MLM demos) let the generator outpace the discriminator, which
# then stays at the base rate ("if the generator gets too good too quickly the
# discriminator fails to learn anything", K. Clark, google-research/electra issue #37).
SIZES = {
    'demo': (4, 128, 2, 512, 128, 0.25, 0.15, 64, 32, 800, 5e-4),
    'small': (12, 256, 4, 1024, 128, 0.25, 0.15, 128, 128, 1_000_000, 5e-4),
    'base': (12, 768, 12, 3072, 768, 1 / 3, 0.15, 512, 256, 766_000, 2e-4),
    'large': (24, 1024, 16, 4096, 1024, 0.25, 0.25, 512, 2048, 400_000, 2e-4),
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  size = parse_size(arg, SIZES, default='base')
  (layers, hidden, heads, ffn, embedding, gen_fraction, mask_prob, seq_len, batch,
   steps, lr) = SIZES[size]
  demo = size == 'demo'
  config = ml_collections.ConfigDict()
  config.name = f'electra-{size}'
  config.seed = 0

  # Model: the discriminator is BERT's post-LN encoder (30522 WordPiece vocab of the
  # released models); Small factorizes the embeddings (E=128, H=256). The generator is
  # derived from it (electra_jax/model.py::generator_spec): hidden = round(H * fraction),
  # same depth, FFN 4x, max(1, hidden // 64) heads; both share the embedding layer.
  config.model = dict(
      vocab_size=4000 if demo else 30522,
      hidden_size=hidden, num_layers=layers, num_heads=heads, intermediate_size=ffn,
      max_position_embeddings=512, type_vocab_size=2,
      embedding_size=0 if embedding == hidden else embedding,
      generator_hidden_fraction=gen_fraction,
      hidden_act='gelu', dropout_rate=0.1, attention_dropout_rate=0.1,
      layer_norm_eps=1e-12, initializer_range=0.02, pre_layer_norm=False,
      scan_layers=True, remat_policy='none', dtype='float32', attention_impl='xla',
      position_offset=0,
      layer_sharing='none', num_hidden_groups=1)

  # Objective: generator MLM + 50 x replaced-token detection over all real tokens;
  # samples at temperature 1 (configure_pretraining.py gen_weight, disc_weight,
  # temperature).
  config.objective = dict(name='electra', generator_weight=1.0,
                          discriminator_weight=50.0, temperature=1.0)

  # Masking (pretrain_helpers.mask): 85% [MASK], 15% left unchanged, no random tokens;
  # max(1, min(N, round(n * p))) tokens with N = int((p + 0.005) * L), so P = N. The
  # reference masks inside the graph every step: dynamic. Any masking.strategy works
  # for the generator (e.g. 'span': ELECTRA with SpanBERT's spans).
  config.masking = dict(
      strategy='token', mask_prob=mask_prob, mask_token_prob=0.85,
      random_token_prob=0.0,
      max_predictions_per_seq=int((mask_prob + 0.005) * seq_len), budget='electra',
      dynamic=True, dupe_factor=1)

  # Data (build_pretraining_dataset.py ExampleBuilder): sentences of one document up
  # to the target length, split into [CLS] A [SEP] B [SEP] (10% a single segment),
  # and 5% of examples aiming at a random length in [5, L]; no next-sentence task.
  config.data = dict(
      **corpus.source_config('default'),
      max_seq_length=seq_len, packing='sentence_segments', single_segment_prob=0.1,
      short_seq_prob=0.05, pair_task='nsp')
  config.data.seed = config.get_ref('seed')

  # Tokenizer: sentencepiece trained on the corpus (the paper used BERT's WordPiece).
  config.tokenizer = dict(path='', model_type='unigram')
  config.tokenizer.vocab_size = config.model.get_ref('vocab_size')

  # Optimizer: Adam b1 0.9, b2 0.999, eps 1e-6, weight decay 0.01 (LayerNorm and
  # biases excluded), clip 1.0, 10k warmup then linear decay (Table 6,
  # configure_pretraining.py, model/optimization.py).
  config.optimizer = dict(
      name='adamw', learning_rate=lr, warmup_steps=80 if demo else 10_000, b1=0.9,
      b2=0.999, eps=1e-6, weight_decay=0.01, clip_norm=1.0,
      schedule='warmup_linear_decay')

  # Training: Table 6 batch sizes and steps. On fewer devices keep the global batch
  # with train.grad_accum_steps.
  config.train = dict(
      steps=steps, batch_size=batch, grad_accum_steps=1,
      log_every=20 if demo else 100, eval_every=200 if demo else 10_000,
      eval_batches=8 if demo else 20, eval_batch_size=32 if demo else 128,
      checkpoint_every=200 if demo else 10_000, keep_checkpoints=3, data_threads=2,
      init_from='')  # A model directory to start from (launch.convert --from=hf).

  # Mesh: pure data parallelism over every device.
  config.mesh = dict(shape=dict(data=-1, fsdp=1, tensor=1))
  return config
