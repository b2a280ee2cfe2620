"""The input pipeline: corpus -> tokenize -> build examples -> mask -> batch.

Built on grain's `MapDataset`, which is indexable: the example at global position i of
the infinite, per-epoch reshuffled stream is a pure function of (seed, i). That makes
the pipeline deterministic from the seed and resumable at any step, and lets every host
read only its own rows (`ds[process_index::process_count]`).

Masking follows the experiment's `masking.dynamic` switch:
- dynamic (RoBERTa, fairseq): a fresh mask every time an example is seen, seeded by
  (seed, example uid, epoch);
- static (BERT, create_pretraining_data.py): `dupe_factor` copies of the data are built,
  each with its own segmentation and its own fixed mask, and the stream cycles over them.

`masking.strategy` picks the masking (common/data/mask_strategies.py); strategies that need
corpus-built tables (MacBERT's similar words, ERNIE's phrases, the 'frequency'
strategy's token counts) get them from `masking_vocab`, built from the tokenized
training corpus (the first two saved in the workdir).
Every masked example also carries the span-boundary fields (common/data/span_boundary.py)
that SpanBERT's objective reads.
"""

from collections.abc import Sequence
import dataclasses
from typing import Any

import grain
import numpy as np

from common.data import corpus
from common.data import mask_strategies
from common.data import masking
from common.data import packing
from common.data import phrases
from common.data import similar_words
from common.data import span_boundary
from common.data import tokenizer as tokenizer_lib
from common.data import word_order_probe
from common.errors import UserError
from common.data.tokenizer import Tokenizer

PACKINGS = ('full_sentences', 'doc_sentences', 'sentence_segments', 'segment_pairs')


def special_ids(tokenizer: Tokenizer) -> packing.SpecialIds:
  return packing.SpecialIds(pad=tokenizer.pad_id, cls=tokenizer.cls_id,
                            sep=tokenizer.sep_id, mask=tokenizer.mask_id)


def tokenize_corpus(docs: Sequence[Sequence[str]],
                    tokenizer: Tokenizer) -> list[list[np.ndarray]]:
  """Documents of sentences -> documents of int32 token-id arrays (empty ones dropped)."""
  flat = [sentence for doc in docs for sentence in doc]
  ids = tokenizer.encode_batch(flat)
  out, start = [], 0
  for doc in docs:
    sentences = [s for s in ids[start:start + len(doc)] if len(s)]
    start += len(doc)
    if sentences:
      out.append(sentences)
  return out


def build_examples(token_docs: list[list[np.ndarray]], data_config,
                   specials: packing.SpecialIds, rng: np.random.Generator) -> list[dict]:
  """Unpadded examples by the config's packing mode (see common/data/packing.py)."""
  mode = data_config.packing
  if mode == 'full_sentences':
    return packing.pack_full_sentences(token_docs, data_config.max_seq_length, specials)
  if mode == 'doc_sentences':
    return packing.pack_doc_sentences(token_docs, data_config.max_seq_length, specials)
  if mode == 'sentence_segments':
    return packing.pack_sentence_segments(
        token_docs, data_config.max_seq_length, specials, rng,
        single_segment_prob=data_config.get('single_segment_prob', 0.1),
        short_seq_prob=data_config.short_seq_prob)
  if mode == 'segment_pairs':
    return packing.create_segment_pairs(
        token_docs, data_config.max_seq_length, specials, rng,
        task=data_config.pair_task, short_seq_prob=data_config.short_seq_prob,
        sop_single_sentence=data_config.get('sop_single_sentence', 'random_document'))
  raise UserError(f'unknown packing {mode!r}; known: {PACKINGS}')


def masking_vocab(config, tokenizer: Tokenizer, token_docs=None,
                  workdir: str | None = None) -> mask_strategies.MaskingVocab:
  """The tokenizer's ids and tables for `config.masking.strategy`.

  MacBERT's similar-word table and ERNIE's phrase lexicon are built from the tokenized
  training corpus `token_docs` (deterministically) and saved in the workdir, or read
  from the user's file; without a corpus they are empty (random-word fallback, word
  and entity units only).
  """
  strategy = mask_strategies.check_strategy(config.masking)
  table = lexicon = capitalised = None
  if strategy == 'macbert' and (token_docs is not None
                                or config.masking.get('similar_words_path', '')):
    table = similar_words.get_table(config.masking, token_docs or [], tokenizer,
                                    workdir, config.seed)
  if strategy == 'ernie':
    capitalised = phrases.capitalised_pieces(
        [tokenizer.id_to_piece(i) for i in range(tokenizer.vocab_size)],
        tokenizer.word_start.get('start_prefix', ''))
    if token_docs is not None or config.masking.get('phrase_lexicon_path', ''):
      lexicon = phrases.get_lexicon(config.masking, token_docs or [], tokenizer, workdir)
  token_weights = None
  if strategy == 'frequency' and token_docs is not None:
    token_weights = frequency_weights(token_docs, tokenizer,
                                      config.masking.get('mlm_smoothing', 0.7))
  return mask_strategies.MaskingVocab(
      mask_id=tokenizer.mask_id, pad_id=tokenizer.pad_id,
      special_ids=np.asarray(tokenizer.special_ids, np.int32),
      random_token_ids=tokenizer.random_token_ids,
      is_word_start=tokenizer.is_word_start, is_capitalised=capitalised,
      similar_words=table, phrase_lexicon=lexicon, token_weights=token_weights)


def frequency_weights(token_docs, tokenizer: Tokenizer,
                      smoothing: float) -> np.ndarray:
  """[V] masking weights max(count, 1)^-smoothing over the tokenized corpus, 0 for
  special tokens (DistilBERT's `mlm_smoothing`, common/data/mask_strategies.py)."""
  ids = [sentence for doc in token_docs for sentence in doc]
  counts = np.bincount(np.concatenate(ids) if ids else np.zeros(0, np.int64),
                       minlength=tokenizer.vocab_size)[:tokenizer.vocab_size]
  weights = np.maximum(counts, 1).astype(np.float64) ** -float(smoothing)
  weights[np.asarray(tokenizer.special_ids, np.int64)] = 0.0
  return weights


@dataclasses.dataclass(frozen=True)
class Masker:
  """Masks and pads one example; the rng seed makes it a pure function.

  `vocab` carries the strategy's tables (`masking_vocab`); None builds one from the
  tokenizer alone.
  """
  tokenizer: Tokenizer
  masking_config: Any
  max_seq_length: int
  vocab: mask_strategies.MaskingVocab | None = None

  def __post_init__(self):
    if self.vocab is None:
      object.__setattr__(self, 'vocab', masking_vocab(
          _MaskingOnly(self.masking_config), self.tokenizer))

  def __call__(self, example: dict, seed: Sequence[int]) -> dict[str, np.ndarray]:
    cfg = self.masking_config
    padded = packing.pad_example(example, self.max_seq_length, self.tokenizer.pad_id)
    rng = np.random.default_rng(list(seed))
    if cfg.get('strategy', 'token') == 'token':
      masked = masking.mask_tokens(
          padded['input_ids'], rng,
          mask_id=self.tokenizer.mask_id, pad_id=self.tokenizer.pad_id,
          special_ids=self.tokenizer.special_ids,
          random_token_ids=self.tokenizer.random_token_ids, mask_prob=cfg.mask_prob,
          max_predictions=cfg.max_predictions_per_seq,
          mask_token_prob=cfg.mask_token_prob,
          random_token_prob=cfg.random_token_prob, budget=cfg.budget)
    else:
      masked = mask_strategies.mask_row(padded['input_ids'], rng, cfg, self.vocab)
    masked.update(span_boundary.boundary_targets(
        masked['masked_positions'], masked['masked_weights'], self.max_seq_length))
    out = {**padded, **masked}
    out.pop('uid', None)
    return {k: np.asarray(v) for k, v in out.items()}


@dataclasses.dataclass(frozen=True)
class _MaskingOnly:
  """A config view with only `masking` and a seed, for `masking_vocab` without tables."""
  masking: Any
  seed: int = 0


def train_examples(token_docs, config, specials) -> list[dict]:
  """All copies of the training examples, each tagged with a unique 'uid'.

  Static masking builds `dupe_factor` copies (each its own segmentation, as BERT's
  create_pretraining_data.py does); dynamic masking builds one.
  """
  copies = 1 if config.masking.dynamic else config.masking.dupe_factor
  examples = []
  for copy in range(copies):
    rng = np.random.default_rng([config.seed, 1, copy])
    examples.extend(build_examples(token_docs, config.data, specials, rng))
  if not examples:
    raise UserError('the training corpus produced no examples; add text or lower '
                    'data.max_seq_length')
  for uid, example in enumerate(examples):
    example['uid'] = uid
  return examples


def train_dataset(examples: list[dict], config, tokenizer: Tokenizer, *,
                  process_index: int = 0, process_count: int = 1,
                  vocab: mask_strategies.MaskingVocab | None = None) -> grain.MapDataset:
  """This host's infinite stream of batches; element k is the batch of step k.

  Each epoch is a fresh permutation of `examples` (grain reshuffles per epoch after
  `repeat`). Global position i goes to host i % process_count, so the hosts' batches of
  one step together form the global batch.
  """
  batch_size = config.train.batch_size
  if batch_size % process_count:
    raise UserError(f'train.batch_size {batch_size} is not divisible by the '
                    f'{process_count} processes')
  masker = Masker(tokenizer, config.masking, config.data.max_seq_length, vocab)
  n = len(examples)
  dynamic = bool(config.masking.dynamic)

  def mask_at(index: int, example: dict) -> dict:
    epoch = index // n if dynamic else 0
    return masker(example, (config.seed, 2, example['uid'], epoch))

  ds = grain.MapDataset.source(examples).shuffle(seed=config.seed).repeat(None)
  ds = ds.map_with_index(mask_at)
  ds = ds[process_index::process_count]
  return ds.batch(batch_size // process_count, drop_remainder=True,
                  batch_fn=stack_examples)


def stack_examples(examples: Sequence[dict]) -> dict[str, np.ndarray]:
  return {k: np.stack([e[k] for e in examples]) for k in examples[0]}


def eval_batches(token_docs, config, tokenizer: Tokenizer, *, process_index: int = 0,
                 process_count: int = 1,
                 vocab: mask_strategies.MaskingVocab | None = None
                 ) -> tuple[list[dict[str, np.ndarray]], list[dict[str, np.ndarray]]]:
  """Fixed held-out batches (static masks), this host's rows of each global batch.

  At most `train.eval_batches` global batches of `train.eval_batch_size`; a held-out
  set smaller than one batch is cycled to fill it.

  Returns:
    (batches, order_probe_batches): the second are the same batches with their context
    shuffled (common/data/word_order_probe.py), seeded per global batch, so every host
    count sees the same probe.
  """
  specials = special_ids(tokenizer)
  examples = build_examples(token_docs, config.data, specials,
                            np.random.default_rng([config.seed, 3]))
  if not examples:
    raise UserError('the held-out corpus produced no examples; raise '
                    'data.heldout_fraction or add text')
  masker = Masker(tokenizer, config.masking, config.data.max_seq_length, vocab)
  masked = [masker(ex, (config.seed, 4, i)) for i, ex in enumerate(examples)]
  size = config.train.eval_batch_size
  n_batches = max(1, min(config.train.eval_batches, len(masked) // size))
  per_host = size // process_count
  rows = slice(process_index * per_host, (process_index + 1) * per_host)
  batches, probes = [], []
  for b in range(n_batches):
    batch = stack_examples([masked[(b * size + r) % len(masked)] for r in range(size)])
    probe = word_order_probe.shuffle_context(
        batch, specials, np.random.default_rng([config.seed, 5, b]))
    batches.append({k: v[rows] for k, v in batch.items()})
    probes.append({k: v[rows] for k, v in probe.items()})
  return batches, probes


def read_options(num_threads: int) -> grain.ReadOptions:
  """Background threads that mask and batch ahead of the train step."""
  return grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=4 * num_threads)


@dataclasses.dataclass(frozen=True)
class PretrainingData:
  """What pretraining reads (common/train/pretraining.py): the tokenizer, this host's
  batch stream, held-out batches.

  `order_probe_batches` are the held-out batches with their context shuffled
  (common/data/word_order_probe.py), for `shuffled_context_mlm_accuracy`.
  """
  tokenizer: Tokenizer
  train: grain.MapDataset
  eval_batches: list[dict[str, np.ndarray]]
  order_probe_batches: list[dict[str, np.ndarray]]


def build_data(config, workdir: str, *, process_index: int = 0,
               process_count: int = 1) -> PretrainingData:
  """Corpus -> tokenizer (trained into the workdir, or loaded) -> examples -> batches."""
  train_docs, heldout_docs = corpus.load_corpus(config.data)
  tokenizer = tokenizer_lib.get_tokenizer(
      config.tokenizer, workdir, lambda: corpus.corpus_sentences(train_docs))
  if config.model.vocab_size != tokenizer.vocab_size:
    raise UserError(f'model.vocab_size {config.model.vocab_size} does not match the '
                    f'tokenizer {tokenizer.model_path} ({tokenizer.vocab_size} pieces)')
  train_tokens = tokenize_corpus(train_docs, tokenizer)
  vocab = masking_vocab(config, tokenizer, train_tokens, workdir)
  examples = train_examples(train_tokens, config, special_ids(tokenizer))
  heldout, order_probe = eval_batches(
      tokenize_corpus(heldout_docs, tokenizer), config, tokenizer,
      process_index=process_index, process_count=process_count, vocab=vocab)
  return PretrainingData(
      tokenizer=tokenizer,
      train=train_dataset(examples, config, tokenizer, process_index=process_index,
                          process_count=process_count, vocab=vocab),
      eval_batches=heldout, order_probe_batches=order_probe)
