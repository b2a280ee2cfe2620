"""SentencePiece tokenizer with fixed special ids and word-start marks.

Our tokenizers put the five specials at fixed ids (`[PAD]`=0, `[UNK]`=1, `[CLS]`=2,
`[SEP]`=3, `[MASK]`=4), but nothing else relies on that: packing and masking read the
ids from the tokenizer instance (`pipeline.special_ids`, `pipeline.masking_vocab`),
because a tokenizer imported from Hugging Face (common/interop/hf_tokenizer.py, same
interface) keeps its model's own ids. `[CLS]`, `[SEP]` and `[MASK]` are sentencepiece
*control* symbols: user text containing the literal string "[MASK]" is encoded as
ordinary characters, never as the mask id (user-defined symbols would match it).

`is_word_start` marks the pieces that begin a word, what whole-word, n-gram and
span masking group by. For sentencepiece that is a piece starting with '▁'; a
WordPiece tokenizer would fill the same array with `not piece.startswith('##')`.

Training runs in-process from an iterator of sentences (no temp files) and is
deterministic: the same sentences and settings give the same model bytes. With
`byte_fallback` no text is ever `[UNK]`; byte pieces do not start words, and the
'▁' before them stays its own piece, so word-start marks survive.
"""

from collections.abc import Callable, Iterable, Sequence
import io
import os
import re

import numpy as np
import sentencepiece as spm

from common import atomic_files
from common.interop import hf_tokenizer
from common.errors import UserError

PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID = 0, 1, 2, 3, 4
PAD, UNK, CLS, SEP, MASK = '[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'
SPECIAL_PIECES = (PAD, UNK, CLS, SEP, MASK)
MODEL_TYPES = ('unigram', 'bpe')
WORD_START = '\u2581'  # '▁', sentencepiece's mark for a preceding space.

# Pieces accepted at ids 0 and 1 besides ours: ALBERT's released models use these.
_PAD_ALIASES = (PAD, '<pad>')
_UNK_ALIASES = (UNK, '<unk>')
# Threads are fixed, not taken from the machine: the trained model depends on them.
_TRAIN_THREADS = 2
_TOO_HIGH = re.compile(r'Vocabulary size too high \((\d+)\)\. .*<= (\d+)')
_TOO_LOW = re.compile(r'Vocabulary size is smaller than required_chars\. '
                      r'(\d+) vs (\d+)')


class Tokenizer:
  """A sentencepiece model with the five fixed specials at ids 0..4.

  Attributes:
    vocab_size: number of pieces, V.
    special_ids: int32[5], the ids of [PAD], [UNK], [CLS], [SEP], [MASK].
    is_word_start: bool[V], True where a piece begins a word (and for specials).
    random_token_ids: int32[V - 5], every non-special id: the candidates for the
      random 10% of BERT's 80/10/10 replacement.
    word_start: {'start_prefix': '▁'}, the rule behind `is_word_start` (an
      imported tokenizer may have {'continuation_prefix': '##'} instead).
    model_path: the file this was loaded from or last saved to; None for a model
      trained in memory and not yet saved.
  """

  pad_id, unk_id, cls_id, sep_id, mask_id = PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID
  word_start = {'start_prefix': WORD_START}

  def __init__(self, model_proto: bytes, model_path: str | None = None):
    """Wraps a serialized sentencepiece model.

    Args:
      model_proto: the bytes of a `.model` file.
      model_path: where they came from, for messages and `model_path`.

    Raises:
      UserError: not a sentencepiece model, or the specials are not at ids 0..4.
    """
    name = model_path or '<in-memory model>'
    self._proto = bytes(model_proto)
    self._sp = spm.SentencePieceProcessor()
    try:
      self._sp.LoadFromSerializedProto(self._proto)
    except (RuntimeError, OSError) as e:
      raise UserError(f'{name} is not a sentencepiece model') from e
    _check_specials(self._sp, name)
    self.model_path = model_path
    self.vocab_size = self._sp.get_piece_size()
    self.special_ids = np.arange(len(SPECIAL_PIECES), dtype=np.int32)
    pieces = [self._sp.id_to_piece(i) for i in range(self.vocab_size)]
    self.is_word_start = np.array([p.startswith(WORD_START) for p in pieces],
                                  dtype=bool)
    self.is_word_start[self.special_ids] = True
    self.random_token_ids = np.arange(len(SPECIAL_PIECES), self.vocab_size,
                                      dtype=np.int32)

  # ------------------------------------------------------------------ construction

  @classmethod
  def train(cls, sentences: Iterable[str], vocab_size: int,
            model_type: str = 'unigram', *, seed: int = 0,
            input_sentence_size: int = 2_000_000,
            max_sentence_length: int = 16384,
            character_coverage: float = 0.9995) -> 'Tokenizer':
    """Trains a model in memory, deterministically.

    On the default corpus (22 k sentences) a unigram vocab of 8000 trains in
    1-4 s on 2 CPU cores, BPE in under 1 s.

    Args:
      sentences: the training text, one sentence per item (consumed once).
      vocab_size: the exact number of pieces wanted, specials and the 256 byte
        pieces included.
      model_type: 'unigram' (ALBERT, T5) or 'bpe' (RoBERTa-style).
      seed: seeds sentencepiece's sampling of `input_sentence_size` sentences
        (its generator is process-global, so this sets it for the process).
      input_sentence_size: at most this many sentences are used (a uniform sample
        when there are more).
      max_sentence_length: longer sentences (in bytes) are skipped.
      character_coverage: share of characters given their own pieces; the rare
        rest are spelled in bytes.

    Returns:
      The trained tokenizer (`model_path` None until saved).

    Raises:
      UserError: unknown model type, or a corpus too small (or vocab too small) to
        give exactly `vocab_size` pieces.
    """
    if model_type not in MODEL_TYPES:
      raise UserError(f'unknown tokenizer model_type {model_type!r}; valid: '
                      f'{", ".join(MODEL_TYPES)}')
    writer = io.BytesIO()
    spm.set_random_generator_seed(seed)
    try:
      spm.SentencePieceTrainer.train(
          sentence_iterator=iter(sentences),
          model_writer=writer,
          vocab_size=vocab_size,
          model_type=model_type,
          pad_id=PAD_ID, unk_id=UNK_ID, bos_id=-1, eos_id=-1,
          pad_piece=PAD, unk_piece=UNK,
          control_symbols=[CLS, SEP, MASK],
          byte_fallback=True,
          character_coverage=character_coverage,
          input_sentence_size=input_sentence_size,
          shuffle_input_sentence=True,
          max_sentence_length=max_sentence_length,
          num_threads=_TRAIN_THREADS,
          minloglevel=2)
    except RuntimeError as e:
      raise _training_error(e, vocab_size) from e
    return cls(writer.getvalue())

  @classmethod
  def load(cls, path: str) -> 'Tokenizer':
    """Loads a `.model` file; a missing, unreadable or foreign file is a UserError."""
    try:
      with open(path, 'rb') as f:
        proto = f.read()
    except OSError as e:
      raise UserError(f'cannot read tokenizer {path!r}: {e.strerror or e}') from e
    return cls(proto, model_path=path)

  def save(self, path: str) -> None:
    """Writes the `.model` bytes to path atomically (temp file, then rename)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_files.write_bytes(path, self._proto)
    self.model_path = path

  @property
  def model_proto(self) -> bytes:
    """The serialized model, the exact bytes `save` writes."""
    return self._proto

  # ---------------------------------------------------------------------- encoding

  def encode(self, text: str) -> np.ndarray:
    """Encodes one text, no specials added. Returns int32[n]."""
    return np.asarray(self._sp.encode(text), dtype=np.int32)

  def encode_batch(self, texts: Sequence[str],
                   num_threads: int = -1) -> list[np.ndarray]:
    """Encodes many texts at once in C++ threads (-1: all cores). Each int32[n_i]."""
    ids = self._sp.encode(list(texts), num_threads=num_threads)
    return [np.asarray(x, dtype=np.int32) for x in ids]

  def decode(self, ids: Sequence[int] | np.ndarray) -> str:
    """Text of ids; [PAD] is skipped, [CLS]/[SEP]/[MASK] shown as themselves."""
    ids = [int(i) for i in np.asarray(ids).reshape(-1) if i != PAD_ID]
    parts, run = [], []
    for i in ids:
      if CLS_ID <= i <= MASK_ID:  # Control symbols, which sentencepiece drops.
        parts.extend([self._sp.decode(run), SPECIAL_PIECES[i]])
        run = []
      else:
        run.append(i)
    parts.append(self._sp.decode(run))
    return ' '.join(p for p in parts if p)

  def id_to_piece(self, i: int) -> str:
    return self._sp.id_to_piece(int(i))

  def __repr__(self) -> str:
    return f'Tokenizer(vocab_size={self.vocab_size}, model_path={self.model_path!r})'


def _check_specials(sp: spm.SentencePieceProcessor, name: str) -> None:
  """Raises UserError unless ids 0..4 are [PAD], [UNK], [CLS], [SEP], [MASK]."""
  n = sp.get_piece_size()
  pieces = [sp.id_to_piece(i) for i in range(min(n, len(SPECIAL_PIECES)))]
  ok = (len(pieces) == len(SPECIAL_PIECES)
        and pieces[PAD_ID] in _PAD_ALIASES and pieces[UNK_ID] in _UNK_ALIASES
        and sp.is_unknown(UNK_ID)
        and tuple(pieces[CLS_ID:]) == (CLS, SEP, MASK)
        and all(sp.is_control(i) for i in (PAD_ID, CLS_ID, SEP_ID, MASK_ID)))
  if not ok:
    raise UserError(
        f'tokenizer {name} does not have the special pieces {", ".join(SPECIAL_PIECES)} '
        f'as control symbols at ids 0..4 (it has {pieces})')


class CorpusTooSmall(UserError):
  """The corpus cannot give a tokenizer of the asked size; `supported` is the largest
  vocabulary it can give."""

  def __init__(self, message: str, supported: int):
    super().__init__(message)
    self.supported = supported


def _training_error(e: RuntimeError, vocab_size: int) -> UserError:
  """Turns sentencepiece's trainer failures into one readable line."""
  msg = str(e)
  if m := _TOO_HIGH.search(msg):
    return CorpusTooSmall(f'the corpus is too small for vocab_size {vocab_size}: '
                          f'it supports at most {m.group(2)} pieces', int(m.group(2)))
  if m := _TOO_LOW.search(msg):
    return UserError(f'vocab_size {vocab_size} is too small: this corpus needs at '
                     f'least {m.group(2)} pieces for its characters and specials')
  if 'sentences_.empty()' in msg:
    return UserError('cannot train a tokenizer: no sentences')
  return UserError(f'tokenizer training failed: {msg.strip().splitlines()[-1]}')


def get_tokenizer(tokenizer_config, workdir: str | None,
                  sentences_fn: Callable[[], Iterable[str]]
                  ) -> 'Tokenizer | hf_tokenizer.HFTokenizer':
  """The run's tokenizer: given file, else the workdir's, else trained and saved.

  Order: `tokenizer_config.path` if set; else the workdir's tokenizer (a resumed
  run): `<workdir>/tokenizer.model` (sentencepiece) or `<workdir>/hf_tokenizer.json`
  (imported from Hugging Face); else a new model trained on `sentences_fn()` with
  `vocab_size`, `model_type` ['unigram'] and `seed` [0], saved to
  `<workdir>/tokenizer.model`. `path` is a sentencepiece `.model` file, an
  `hf_tokenizer.json`, or an HF model directory (imported with
  `hf_tokenizer.load_hf_tokenizer`). A given path is also copied into the workdir,
  so the workdir holds the tokenizer its checkpoints were trained with; a different
  one already there is an error.

  Args:
    tokenizer_config: ConfigDict with `path`, `vocab_size`, `model_type`, `seed`
      (read with `.get`, so any may be missing).
    workdir: the run's directory (created if needed), or None to keep nothing.
    sentences_fn: called only when training, returns the training sentences.

  Returns:
    The tokenizer: a `Tokenizer` or an `hf_tokenizer.HFTokenizer`.

  Raises:
    UserError: unreadable or foreign model, a model whose vocab size differs from
      a set `vocab_size`, a workdir tokenizer that differs from `path`, or a
      failed training.
  """
  get = tokenizer_config.get
  path = get('path', None)
  vocab_size = get('vocab_size', None)
  in_workdir = workdir_tokenizer(workdir) if workdir else None

  if path:
    tokenizer = load_any(path)
    _check_vocab_size(tokenizer, vocab_size)
    if in_workdir:
      if _file_bytes(load_any(in_workdir)) != _file_bytes(tokenizer):
        raise UserError(f'tokenizer {path} differs from {in_workdir}, the one this '
                        'workdir was trained with')
    elif workdir:
      os.makedirs(workdir, exist_ok=True)
      atomic_files.write_bytes(
          os.path.join(workdir, _WORKDIR_FILES[type(tokenizer)]),
          _file_bytes(tokenizer))
  elif in_workdir:
    tokenizer = load_any(in_workdir)
    _check_vocab_size(tokenizer, vocab_size)
  else:
    if not vocab_size:
      raise UserError('tokenizer.vocab_size must be set to train a tokenizer '
                      '(or set tokenizer.path)')
    tokenizer = Tokenizer.train(sentences_fn(), int(vocab_size),
                                get('model_type', 'unigram'),
                                seed=int(get('seed', 0) or 0))
    if workdir:
      tokenizer.save(os.path.join(workdir, _WORKDIR_FILES[Tokenizer]))
  return tokenizer


_WORKDIR_FILES = {Tokenizer: 'tokenizer.model',
                  hf_tokenizer.HFTokenizer: hf_tokenizer.WORKDIR_FILE}


def load_any(path: str) -> 'Tokenizer | hf_tokenizer.HFTokenizer':
  """A `.model` file, an `hf_tokenizer.json` or an HF model directory."""
  if os.path.isdir(path):
    return hf_tokenizer.load_hf_tokenizer(path)
  if path.endswith('.json'):
    return hf_tokenizer.HFTokenizer.load(path)
  return Tokenizer.load(path)


def workdir_tokenizer(workdir: str) -> str | None:
  """The workdir's tokenizer file, None if it has none yet."""
  found = [os.path.join(workdir, name) for name in _WORKDIR_FILES.values()
           if os.path.exists(os.path.join(workdir, name))]
  if len(found) > 1:
    raise UserError(f'workdir {workdir} holds two tokenizers ({", ".join(found)}); '
                    'remove the one it was not trained with')
  return found[0] if found else None


def _file_bytes(tokenizer) -> bytes:
  """What the workdir file of this tokenizer holds."""
  if isinstance(tokenizer, Tokenizer):
    return tokenizer.model_proto
  return tokenizer.serialized


def _check_vocab_size(tokenizer, vocab_size: int | None) -> None:
  if vocab_size and tokenizer.vocab_size != int(vocab_size):
    raise UserError(f'tokenizer {tokenizer.model_path} has vocab size '
                    f'{tokenizer.vocab_size} but the config asks for {vocab_size}')
