r"""The defaults every experiment file starts from: every field of every section.

`get_config()` is BERT-base, pretrained as Devlin et al. 2019 did ("BERT: Pre-training
of Deep Bidirectional Transformers for Language Understanding", arXiv:1810.04805;
google-research/bert create_pretraining_data.py, run_pretraining.py, optimization.py).
Each experiment file starts here (or from the recipe it extends) and states only what
its paper changes, as t5x's gin files include a base and MaxText's model files
override its base.yml.

A field that only one recipe or strategy reads is here too, at the value its reader
uses without it, so it changes nothing for the others, and any
`--config.<section>.<field>=...` override works for every recipe
(tests/test_experiments.py checks that every recipe has exactly these fields).
The model fields are the encoder's own (`common.model.encoder.EncoderSpec`), so the
config and the code cannot disagree on a name or a default.

`BERT_BASE` and `BERT_LARGE` are the encoder sizes most recipes keep, `DEMO` the CPU
demo scale the recipes' 'demo' sizes share (`demo(...)` adds a recipe's own demo
values); `apply` sets a size's fields and refuses a misspelled one.
"""

from collections.abc import Mapping
import copy
import dataclasses
from typing import Any

import ml_collections

from common.data import corpus
from common.model import encoder

# BERT's encoder sizes (paper section 3; BERT_BASE is get_config's own), which RoBERTa,
# ALBERT and ELECTRA keep for their base and large models.
BERT_BASE = dict(num_layers=12, hidden_size=768, num_heads=12, intermediate_size=3072)
BERT_LARGE = dict(num_layers=24, hidden_size=1024, num_heads=16, intermediate_size=4096)

# The CPU demo of every recipe (ours, not a paper's): a 4-layer H128 encoder on a 4000
# vocabulary, 64-token sequences (on a CPU, more updates of shorter sequences learn
# more in the same minutes), 800 steps of 32 at the MLM demos' learning rate, and
# evaluations often enough to watch it learn. Recipes add their own demo values.
DEMO = dict(
    model=dict(num_layers=4, hidden_size=128, num_heads=2, intermediate_size=512,
               vocab_size=4000),
    masking=dict(max_predictions_per_seq=10),
    # 15% of the documents held out: enough for the probe suite's document-level
    # splits of all four tasks (common/data/probe_tasks.py; 2% gives two of them).
    data=dict(max_seq_length=64, heldout_fraction=0.15),
    optimizer=dict(learning_rate=2e-3, warmup_steps=80),
    train=dict(steps=800, batch_size=32, log_every=20, eval_every=200, eval_batches=8,
               eval_batch_size=32, checkpoint_every=200))


def model_defaults() -> dict[str, Any]:
  """`config.model` at EncoderSpec's defaults (BERT-base's), as configs store them."""
  fields = {f.name: f.default for f in dataclasses.fields(encoder.EncoderSpec)}
  fields.update(
      vocab_size=30522,  # The spec has no default: BERT's WordPiece vocabulary.
      # 0: no factorization (the spec resolves it to hidden_size); ALBERT and
      # ELECTRA-Small set a V x E table with E < H.
      embedding_size=0)
  return fields


def get_config() -> ml_collections.ConfigDict:
  """BERT-base with every field any recipe reads (see the module docstring)."""
  config = ml_collections.ConfigDict()
  config.name = 'bert-base'  # Each recipe sets '<recipe>-<size>'.
  config.seed = 0

  # Model: post-LN encoder, learned positions, 2 token types, GeLU (paper section 3),
  # L12 H768 A12 I3072, dropout 0.1, 30522 WordPiece vocab of the released models.
  # embedding_size (factorized table) and layer_sharing are ALBERT's switches, off here.
  config.model = dict(
      **model_defaults(),
      # ELECTRA (electra_jax/model.py::generator_spec): generator hidden size as a
      # fraction of the discriminator's; 0.25 is the code's default.
      generator_hidden_fraction=0.25)

  # Objective: MLM + next-sentence prediction, summed (run_pretraining.py). The other
  # fields are read only by other objectives, at their code defaults: SpanBERT's
  # 'mlm_sbo' (SBO weight, relative position rows) and 'electra' (loss weights and
  # sampling temperature, configure_pretraining.py).
  config.objective = dict(
      name='mlm_nsp',
      sbo_weight=1.0, sbo_positions=200,
      generator_weight=1.0, discriminator_weight=50.0, temperature=1.0,
      # 'distillation' (common/train/distillation.py): loss = alpha_ce * T^2 KL of the
      # soft targets at T = distill_temperature (over 'all' real tokens or the
      # 'masked' ones) + alpha_mlm * MLM + alpha_cos * cosine of the last hidden
      # states + alpha_attention * attention-score MSE + alpha_hidden * embedding and
      # hidden-state MSE; DistilBERT's README values, TinyBERT's terms off.
      alpha_ce=5.0, alpha_mlm=2.0, alpha_cos=1.0, alpha_attention=0.0,
      alpha_hidden=0.0, distill_temperature=2.0, soft_target_positions='all',
      # The task head fine-tuning puts on this recipe's encoder ('tanh' pooler-style,
      # 'gelu' as ELECTRA's, 'relu'); '' = the family's (common/train/finetuning.py
      # `head_activation`). ELECTRA's ablations set ELECTRA's.
      head_activation='')

  # Masking: 15% of tokens, 80% [MASK] / 10% random / 10% kept, at most 20 per
  # 128-token sequence, static: dupe_factor copies with fixed masks
  # (create_pretraining_data.py defaults). The other fields belong to other
  # strategies (common/data/mask_strategies.py), at their code defaults.
  config.masking = dict(
      strategy='token', mask_prob=0.15, mask_token_prob=0.8, random_token_prob=0.1,
      max_predictions_per_seq=20, budget='bert', dynamic=False, dupe_factor=10,
      # 'span' (SpanBERT): span lengths ~ Geo(span_p) clipped at span_max words.
      span_p=0.2, span_max=10,
      # 'ngram' (ALBERT) and 'macbert': p(n) for n = 1..ngram_max, a preset name or
      # '' for the strategy's own (1/n for 'ngram', MacBERT's 40/30/20/10%).
      ngram_probs='', ngram_max=3,
      # 'macbert': replacement by a similar word, the table from a file or the corpus.
      similar_word_prob=0.8, similar_words_path='', similar_words_max=3000,
      # 'ernie': knowledge units (phrases, entities) for this share of the inputs,
      # phrases from a lexicon file or corpus PMI (common/data/phrases.py).
      ernie_knowledge_prob=0.5, phrase_lexicon_path='', phrase_min_pmi=3.0,
      phrase_passes=2,
      # 'frequency' (DistilBERT's reference option): p(token) ~ count^-mlm_smoothing.
      mlm_smoothing=0.7)

  # Data: segment pairs [CLS] A [SEP] B [SEP], B the true next text half the time; 10%
  # of examples shorter (short_seq_prob). Source: the embedded default corpus (Python's
  # own documentation text); see common/data/corpus.py for text, JSONL and TFDS sources.
  config.data = dict(
      **corpus.source_config('default'),
      max_seq_length=128, packing='segment_pairs', pair_task='nsp', short_seq_prob=0.1,
      # packing 'sentence_segments' (ELECTRA): share of single-segment examples.
      single_segment_prob=0.1,
      # pair_task 'sop' (ALBERT, MacBERT): where a one-sentence chunk takes its B
      # ('random_document' as the reference code, or 'skip'; common/data/packing.py).
      sop_single_sentence='random_document')
  config.data.seed = config.get_ref('seed')

  # Tokenizer: sentencepiece trained on the corpus (the paper used a 30k WordPiece).
  config.tokenizer = dict(path='', model_type='unigram')
  config.tokenizer.vocab_size = config.model.get_ref('vocab_size')

  # Optimizer: Adam lr 1e-4, b1 0.9, b2 0.999, L2 weight decay 0.01, warmup 10k steps,
  # linear decay (paper Appendix A.2); eps 1e-6 and clip norm 1.0 from optimization.py.
  config.optimizer = dict(
      name='adamw', learning_rate=1e-4, warmup_steps=10_000, b1=0.9, b2=0.999,
      eps=1e-6, weight_decay=0.01, clip_norm=1.0, schedule='warmup_linear_decay',
      # Fine-tuning: layer-wise learning-rate decay (common/train/optimizers.py); 1 = off.
      layer_decay=1.0)

  # Training: batch 256 x 128 tokens for 1M steps (paper A.2 trains 90% of them at
  # 128 and 10% at 512 tokens; run the second phase as its own run with
  # data.max_seq_length=512 and masking.max_predictions_per_seq=80). On fewer
  # devices keep the global batch with train.grad_accum_steps.
  config.train = dict(
      steps=1_000_000, batch_size=256, grad_accum_steps=1, log_every=100,
      eval_every=10_000, eval_batches=50, eval_batch_size=256, checkpoint_every=10_000,
      keep_checkpoints=3, data_threads=2,
      peak_flops_per_device=0.0,  # 0: known accelerators' peak (common/train/flops.py).
      init_from='',  # A model directory to start from (launch.convert --from=hf).
      # Non-finite loss, gradient or update (common/train/nonfinite.py): 'halt' stops
      # with one error line and writes nothing after the last good checkpoint; 'skip'
      # drops the update (the step still counts) and logs skipped_steps, halting after
      # nonfinite_max_consecutive bad steps in a row.
      nonfinite='halt', nonfinite_max_consecutive=10)

  # Teacher: read only by objective 'distillation' (DistilBERT, TinyBERT). path: a
  # pretraining workdir or model directory (none here); layer_map: the teacher layer
  # of each student layer ('spread', 'block_last' or indices '0,2,4,7,9,11');
  # init_student: start the student from the teacher's embeddings, MLM head and
  # mapped layers; hidden_projection: TinyBERT's learned student -> teacher width
  # map ('none', 'shared', 'per_layer').
  config.teacher = dict(path='', layer_map='spread', init_student=False,
                        hidden_projection='none')

  # Mesh: pure data parallelism over every device (dcn_data: slices, multi-slice TPU).
  config.mesh = dict(shape=dict(data=-1, fsdp=1, tensor=1), dcn_data=1)
  return config


def demo(**sections: Mapping[str, Any]) -> dict[str, Any]:
  """`DEMO` with a recipe's own demo values over it, e.g. `demo(optimizer=dict(...))`."""
  table = copy.deepcopy(DEMO)
  for section, fields in sections.items():
    table.setdefault(section, {}).update(fields)
  return table


def apply(config: ml_collections.ConfigDict, fields: Mapping[str, Any],
          where: str = 'config') -> ml_collections.ConfigDict:
  """Sets `fields` ({section: {field: value}}, nested as the config) in `config`.

  A field the config does not have is an error naming it: every field has its default
  in `get_config`. Returns `config`.
  """
  for key, value in fields.items():
    if key not in config:
      raise KeyError(f'{where}.{key} is not a field of experiments/base.py')
    if isinstance(value, Mapping):
      apply(config[key], value, f'{where}.{key}')
    else:
      config[key] = value
  return config
