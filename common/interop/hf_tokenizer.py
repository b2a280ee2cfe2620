"""Hugging Face tokenizers as run tokenizers: import, the workdir file, export.

`load_hf_tokenizer(model_dir)` turns the tokenizer files of a local HF model directory
into an `HFTokenizer`, which has the interface of `common.data.tokenizer.Tokenizer` (the
pipeline, packing and every masking strategy take either) but the model's OWN special
ids: BERT's vocab.txt has [PAD]=0 [UNK]=100 [CLS]=101 [SEP]=102 [MASK]=103, RoBERTa's
<s>=0 <pad>=1 </s>=2 <unk>=3 <mask>=50264 (<s> and </s> play [CLS] and [SEP]), ALBERT's
spiece.model <pad>=0 <unk>=1 [CLS]=2 [SEP]=3 [MASK]=4.

The encoding must give the ids transformers gives, so each tokenizer class is rebuilt
here with the `tokenizers` library (no transformers, no torch) the way transformers
(v5) builds it from the same files and tokenizer_config.json settings:
- WordPiece (Bert/DistilBert/Electra; vocab.txt): BertNormalizer (do_lower_case,
  strip_accents, tokenize_chinese_chars), BertPreTokenizer, '##' continuations;
- byte-level BPE (Roberta; vocab.json + merges.txt): ByteLevel(add_prefix_space);
- Unigram (Albert; spiece.model): '``'/"''" -> '"', NFKD + accent strip unless
  keep_accents, lower case if do_lower_case (the default), the model's precompiled
  charsmap, Metaspace. (Our own sentencepiece Tokenizer would not lower-case, so
  spiece.model is converted rather than wrapped.)
A tokenizer.json is read for its vocabulary (and merges, charsmap) when the class is
one of these, as transformers does; with `PreTrainedTokenizerFast` (or no known class)
it is used as it is.

Word starts, what whole-word, n-gram and span masking group by:
- WordPiece: a piece not starting with '##' (BERT's create_pretraining_data.py);
- byte-level BPE: a piece starting with 'G' with a dot, the byte-level space, as
  fairseq's whole-word mask decides (`is_beginning_of_word`: the decoded piece starts
  with a space). A piece without the space continues the previous word, so the first
  word of a sentence (no leading space without add_prefix_space) joins the last word
  of the sentence before it when packing puts them side by side: fairseq does the same;
- sentencepiece/Unigram: a piece starting with '▁'.
Specials are word starts.

Text is encoded WITHOUT special tokens (the packer adds them), and a literal "[MASK]"
or "<s>" in the text is encoded as ordinary characters, as with our sentencepiece
tokenizer; transformers' tokenizers would turn it into the special id.

The run keeps the tokenizer in ONE workdir file, `hf_tokenizer.json`: the
`tokenizers` serialization of the rebuilt tokenizer plus the names of the five
special tokens, the word-start rule and the tokenizer_config settings to export.
`export_hf_tokenizer` writes tokenizer.json, tokenizer_config.json and
special_tokens_map.json (and vocab.txt or vocab.json + merges.txt) into an HF model
directory, for an imported tokenizer and for our sentencepiece one alike.
"""

import base64
from collections.abc import Sequence
import json
import os

import numpy as np
import tokenizers
from tokenizers import AddedToken
from tokenizers import decoders
from tokenizers import models
from tokenizers import normalizers
from tokenizers import pre_tokenizers
from tokenizers import processors
from tokenizers import Regex

from common import atomic_files
from common.errors import UserError

WORKDIR_FILE = 'hf_tokenizer.json'
FORMAT = 'bert-family-jax/hf-tokenizer'
ROLES = ('pad', 'unk', 'cls', 'sep', 'mask')
MODEL_TYPES = ('bert', 'roberta', 'albert', 'electra', 'distilbert')
# The files looked for in a model directory, in this order.
TOKENIZER_FILES = ('tokenizer.json', 'vocab.txt', 'vocab.json', 'merges.txt',
                   'spiece.model')

BYTE_LEVEL_SPACE = '\u0120'  # 'Ġ', the byte-level alphabet's space.
METASPACE = '\u2581'  # '▁'.
WORDPIECE_CONTINUATION = '##'

# Tokenizer kinds: how transformers builds each class, and its defaults.
_CLASS_KIND = {
    'BertTokenizer': 'wordpiece', 'DistilBertTokenizer': 'wordpiece',
    'ElectraTokenizer': 'wordpiece', 'RobertaTokenizer': 'byte_bpe',
    'AlbertTokenizer': 'unigram', 'PreTrainedTokenizerFast': 'generic',
    'TokenizersBackend': 'generic'}
_MODEL_TYPE_KIND = {'bert': 'wordpiece', 'distilbert': 'wordpiece',
                    'electra': 'wordpiece', 'roberta': 'byte_bpe',
                    'albert': 'unigram'}
_KIND_CLASS = {'wordpiece': 'BertTokenizer', 'byte_bpe': 'RobertaTokenizer',
               'unigram': 'AlbertTokenizer', 'generic': 'PreTrainedTokenizerFast'}
_DEFAULT_SPECIALS = {
    'wordpiece': ('[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'),
    'byte_bpe': ('<pad>', '<unk>', '<s>', '</s>', '<mask>'),
    'unigram': ('<pad>', '<unk>', '[CLS]', '[SEP]', '[MASK]'),
}
_SETTINGS = {  # tokenizer_config.json keys each kind reads, with their defaults.
    'wordpiece': {'do_lower_case': True, 'strip_accents': None,
                  'tokenize_chinese_chars': True},
    'byte_bpe': {'add_prefix_space': False, 'trim_offsets': True},
    'unigram': {'do_lower_case': True, 'keep_accents': False,
                'add_prefix_space': True},
    'generic': {},
}
# DistilBERT's model takes no token types.
_MODEL_INPUTS = {'distilbert': ['input_ids', 'attention_mask']}


class HFTokenizer:
  """A `tokenizers.Tokenizer` with the interface of `common.data.tokenizer.Tokenizer`.

  Attributes:
    vocab_size: number of ids, V (added tokens included).
    pad_id, unk_id, cls_id, sep_id, mask_id: the model's own special ids.
    special_ids: int32[>=5], the five above (without repeats) and any other special
      added token: never masked, never a random replacement.
    is_word_start: bool[V], True where a piece begins a word (and for specials).
    random_token_ids: int32, every non-special id: the candidates for the random 10%
      of BERT's 80/10/10. BERT's vocab.txt keeps its [unused*] pieces in it, as
      google-research/bert's create_pretraining_data.py draws random words from the
      whole vocabulary (even the specials).
    special_tokens: {'pad': '[PAD]', ...}, the names of the five specials.
    kind: 'wordpiece', 'byte_bpe', 'unigram' or 'generic'.
    settings: the tokenizer_config.json entries export writes back.
    model_path: where it was loaded from (a directory or a workdir file) or saved.
  """

  def __init__(self, tokenizer_json: str, special_tokens: dict[str, str],
               word_start: dict[str, str], kind: str, settings: dict,
               model_path: str | None = None):
    """Wraps a tokenizers serialization; see `load_hf_tokenizer` to import one.

    Args:
      tokenizer_json: `tokenizers.Tokenizer.to_str()` text.
      special_tokens: role ('pad', 'unk', 'cls', 'sep', 'mask') -> token.
      word_start: {'continuation_prefix': '##'} or {'start_prefix': '▁'}.
      kind: see the class doc.
      settings: tokenizer_config.json entries for export.
      model_path: for messages and `model_path`.

    Raises:
      UserError: not a tokenizers serialization, a special token not in the
        vocabulary, or ids without a token.
    """
    name = model_path or '<in-memory tokenizer>'
    try:
      self._original = tokenizers.Tokenizer.from_str(tokenizer_json)
      runtime = tokenizers.Tokenizer.from_str(tokenizer_json)
    except Exception as e:  # The Rust side raises plain Exceptions.
      raise UserError(f'{name} is not a readable tokenizers serialization: '
                      f'{_first_line(e)}') from e
    runtime.no_truncation()
    runtime.no_padding()
    runtime.encode_special_tokens = True  # "[MASK]" in text is just characters.
    self._tok = runtime
    self._json = tokenizer_json
    self.special_tokens = {role: special_tokens[role] for role in ROLES}
    self.word_start = dict(word_start)
    self.kind = kind
    self.settings = dict(settings)
    self.model_path = model_path

    vocab = runtime.get_vocab(with_added_tokens=True)
    self.vocab_size = max(vocab.values(), default=-1) + 1
    if len(set(vocab.values())) != self.vocab_size:
      missing = sorted(set(range(self.vocab_size)) - set(vocab.values()))
      raise UserError(f'tokenizer {name} has no token for ids {missing[:10]}; the '
                      'ids of a vocabulary must be 0..V-1')
    ids = {}
    for role, token in self.special_tokens.items():
      if token not in vocab:
        raise UserError(f'tokenizer {name} has no {role} token {token!r} in its '
                        'vocabulary')
      ids[role] = vocab[token]
    self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = (
        ids[role] for role in ROLES)
    others = sorted(i for i, t in runtime.get_added_tokens_decoder().items()
                    if t.special and i not in ids.values())
    self.special_ids = np.asarray(list(dict.fromkeys(ids.values())) + others,
                                  np.int32)
    self._pieces = [''] * self.vocab_size
    for piece, i in vocab.items():
      self._pieces[i] = piece
    self.is_word_start = _word_starts(self._pieces, self.word_start)
    self.is_word_start[self.special_ids] = True
    not_special = np.ones(self.vocab_size, bool)
    not_special[self.special_ids] = False
    self.random_token_ids = np.flatnonzero(not_special).astype(np.int32)

  # ------------------------------------------------------------------ files

  @property
  def serialized(self) -> bytes:
    """The workdir file's bytes (canonical JSON: equal tokenizers, equal bytes)."""
    return json.dumps({
        'format': FORMAT, 'version': 1, 'kind': self.kind,
        'special_tokens': self.special_tokens, 'word_start': self.word_start,
        'settings': self.settings, 'tokenizer': json.loads(self._json),
    }, sort_keys=True, ensure_ascii=False).encode('utf-8')

  @property
  def tokenizer_json(self) -> str:
    """The `tokenizers` serialization (what an HF tokenizer.json holds)."""
    return self._json

  @classmethod
  def from_serialized(cls, data: bytes, model_path: str | None = None
                      ) -> 'HFTokenizer':
    """Reads `serialized` bytes back; anything else is a UserError."""
    name = model_path or '<in-memory tokenizer>'
    try:
      obj = json.loads(data.decode('utf-8'))
      if obj.get('format') != FORMAT:
        raise ValueError('not our format')
      return cls(json.dumps(obj['tokenizer']), obj['special_tokens'],
                 obj['word_start'], obj['kind'], obj['settings'], model_path)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
      raise UserError(f'{name} is not an imported tokenizer file ({WORKDIR_FILE} '
                      'written by load_hf_tokenizer)') from e

  @classmethod
  def load(cls, path: str) -> 'HFTokenizer':
    """Loads a file written by `save`."""
    return cls.from_serialized(_read(path), path)

  def save(self, path: str) -> None:
    """Writes `serialized` to path atomically."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_files.write_bytes(path, self.serialized)
    self.model_path = path

  # --------------------------------------------------------------- encoding

  def encode(self, text: str) -> np.ndarray:
    """Encodes one text, no specials added. Returns int32[n]."""
    return np.asarray(self._tok.encode(text, add_special_tokens=False).ids,
                      dtype=np.int32)

  def encode_batch(self, texts: Sequence[str],
                   num_threads: int = -1) -> list[np.ndarray]:
    """Encodes many texts in Rust threads (RAYON_NUM_THREADS sets how many).

    `num_threads` is accepted for the sentencepiece tokenizer's signature.
    """
    del num_threads
    out = self._tok.encode_batch(list(texts), add_special_tokens=False)
    return [np.asarray(e.ids, dtype=np.int32) for e in out]

  def decode(self, ids: Sequence[int] | np.ndarray) -> str:
    """Text of ids; padding is skipped, other specials shown as themselves."""
    ids = [int(i) for i in np.asarray(ids).reshape(-1) if i != self.pad_id]
    return self._tok.decode(ids, skip_special_tokens=False)

  def id_to_piece(self, i: int) -> str:
    return self._pieces[int(i)]

  def __repr__(self) -> str:
    return (f'HFTokenizer(kind={self.kind!r}, vocab_size={self.vocab_size}, '
            f'model_path={self.model_path!r})')


def _word_starts(pieces: Sequence[str], rule: dict[str, str]) -> np.ndarray:
  if 'continuation_prefix' in rule:
    prefix = rule['continuation_prefix']
    return np.array([not p.startswith(prefix) for p in pieces], dtype=bool)
  prefix = rule['start_prefix']
  return np.array([p.startswith(prefix) for p in pieces], dtype=bool)


# ---------------------------------------------------------------------- import


def load_hf_tokenizer(model_dir: str) -> HFTokenizer:
  """The tokenizer of a local HF model directory, with its own special ids.

  Reads tokenizer.json, vocab.txt, vocab.json + merges.txt or spiece.model, with
  tokenizer_config.json (class, do_lower_case, strip_accents, ...),
  special_tokens_map.json and config.json (model_type) when present.

  Raises:
    UserError: no tokenizer files, an unsupported tokenizer class, an unreadable or
      corrupt file, or a special token the family needs missing from the vocabulary.
  """
  if not os.path.isdir(model_dir):
    raise UserError(f'{model_dir} is not a directory (expected an HF model '
                    'directory with tokenizer files)')
  has = {f for f in TOKENIZER_FILES if os.path.isfile(os.path.join(model_dir, f))}
  if not has & {'tokenizer.json', 'vocab.txt', 'spiece.model'} and not (
      {'vocab.json', 'merges.txt'} <= has):
    raise UserError(f'no tokenizer in {model_dir}: looked for tokenizer.json, '
                    'vocab.txt, vocab.json + merges.txt, spiece.model')
  config = _read_json(model_dir, 'tokenizer_config.json')
  special_map = _read_json(model_dir, 'special_tokens_map.json')
  model_config = _read_json(model_dir, 'config.json')
  kind = _kind(model_dir, config, model_config, has)
  settings = {k: config.get(k, v) for k, v in _SETTINGS[kind].items()}
  tokenizer_json = (_read_json(model_dir, 'tokenizer.json')
                    if 'tokenizer.json' in has else None)
  if kind == 'generic' and tokenizer_json is None:
    raise UserError(f'{model_dir}: a {config.get("tokenizer_class")} tokenizer '
                    'needs tokenizer.json')
  defaults = _DEFAULT_SPECIALS.get(kind) or _DEFAULT_SPECIALS[
      _generic_kind(tokenizer_json)]
  specials = {}
  for role, default in zip(ROLES, defaults):
    token = config.get(f'{role}_token') or special_map.get(f'{role}_token') or default
    specials[role] = token['content'] if isinstance(token, dict) else str(token)

  if kind == 'generic':
    tok = _from_json(model_dir, tokenizer_json)
    word_start = _generic_word_start(model_dir, tokenizer_json)
    ids = tok.encode('a').ids
    if tok.token_to_id(specials['cls']) is not None and (
        ids[:1] != [tok.token_to_id(specials['cls'])]
        or ids[-1:] != [tok.token_to_id(specials['sep'])]):
      # Exported, `tokenizer(text)` must add the [CLS] ... [SEP] our packer adds.
      tok.post_processor = _post_processor(tok, specials, kind)
  else:
    tok = _BUILDERS[kind](model_dir, tokenizer_json, specials, settings)
    word_start = ({'continuation_prefix': WORDPIECE_CONTINUATION}
                  if kind == 'wordpiece' else
                  {'start_prefix': BYTE_LEVEL_SPACE if kind == 'byte_bpe'
                   else METASPACE})
    _add_extra_tokens(tok, model_dir, config, tokenizer_json)
    _add_specials(tok, model_dir, specials, kind)
  settings = {'tokenizer_class': _KIND_CLASS[kind], **settings}
  return HFTokenizer(tok.to_str(), specials, word_start, kind, settings,
                     model_path=model_dir)


def _kind(model_dir, config, model_config, has) -> str:
  """The tokenizer kind: tokenizer_class, else config.json's model_type, else files."""
  name = config.get('tokenizer_class')
  if name:
    base = name if name in _CLASS_KIND else name.removesuffix('Fast')
    if base not in _CLASS_KIND:
      raise UserError(f'{model_dir}: tokenizer class {name} is not supported; '
                      f'supported: {", ".join(sorted(_CLASS_KIND))}')
    return _CLASS_KIND[base]
  if model_config.get('model_type') in _MODEL_TYPE_KIND:
    return _MODEL_TYPE_KIND[model_config['model_type']]
  if 'vocab.txt' in has:
    return 'wordpiece'
  if {'vocab.json', 'merges.txt'} <= has:
    return 'byte_bpe'
  if 'spiece.model' in has:
    return 'unigram'
  return 'generic'


def _generic_kind(tokenizer_json: dict) -> str:
  model = tokenizer_json.get('model', {}).get('type')
  return {'WordPiece': 'wordpiece', 'Unigram': 'unigram'}.get(model, 'byte_bpe')


def _generic_word_start(model_dir: str, tokenizer_json: dict) -> dict[str, str]:
  """The word-start rule of a tokenizer.json used as it is."""
  model = tokenizer_json.get('model') or {}
  if model.get('type') == 'WordPiece':
    return {'continuation_prefix': model.get('continuing_subword_prefix') or '##'}
  text = json.dumps([tokenizer_json.get(k) for k in
                     ('normalizer', 'pre_tokenizer', 'decoder')])
  if '"Metaspace"' in text:
    return {'start_prefix': METASPACE}
  if '"ByteLevel"' in text:
    return {'start_prefix': BYTE_LEVEL_SPACE}
  raise UserError(f'{model_dir}/tokenizer.json: cannot tell which pieces start a '
                  'word (not WordPiece, Metaspace or ByteLevel), so whole-word '
                  'masking could not work')


def _build_wordpiece(model_dir, tokenizer_json, specials, settings):
  if tokenizer_json is not None:
    vocab = _json_vocab(model_dir, tokenizer_json, 'WordPiece')
  else:
    lines = _read(os.path.join(model_dir, 'vocab.txt')).decode(
        'utf-8', errors='replace').split('\n')
    if lines and not lines[-1]:
      lines.pop()
    vocab = {token.rstrip('\r'): i for i, token in enumerate(lines)}
  tok = tokenizers.Tokenizer(_model(model_dir, models.WordPiece, vocab=vocab,
                                    unk_token=specials['unk']))
  tok.normalizer = normalizers.BertNormalizer(
      clean_text=True, handle_chinese_chars=settings['tokenize_chinese_chars'],
      strip_accents=settings['strip_accents'],
      lowercase=settings['do_lower_case'])
  tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
  tok.decoder = decoders.WordPiece(prefix=WORDPIECE_CONTINUATION)
  return tok


def _build_byte_bpe(model_dir, tokenizer_json, specials, settings):
  del specials  # Byte-level BPE has no unknown pieces.
  if tokenizer_json is not None:
    vocab = _json_vocab(model_dir, tokenizer_json, 'BPE')
    merges = [tuple(m.split(' ')) if isinstance(m, str) else tuple(m)
              for m in tokenizer_json['model'].get('merges', [])]
  else:
    vocab = _read_json(model_dir, 'vocab.json')
    text = _read(os.path.join(model_dir, 'merges.txt')).decode('utf-8', 'replace')
    merges = [tuple(line.split(' ')) for line in text.split('\n')
              if line and not line.startswith('#version')]
  if any(len(m) != 2 for m in merges):
    raise UserError(f'{model_dir}: corrupt merges (a merge is two pieces)')
  tok = tokenizers.Tokenizer(_model(
      model_dir, models.BPE, vocab=vocab, merges=merges, dropout=None,
      continuing_subword_prefix='', end_of_word_suffix='', fuse_unk=False))
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(
      add_prefix_space=settings['add_prefix_space'])
  tok.decoder = decoders.ByteLevel()
  return tok


def _build_unigram(model_dir, tokenizer_json, specials, settings):
  """ALBERT's tokenizer, as transformers' AlbertTokenizer builds it."""
  if tokenizer_json is not None:
    vocab = [tuple(v) for v in _json_vocab(model_dir, tokenizer_json, 'Unigram')]
    charsmap = _json_charsmap(tokenizer_json.get('normalizer'))
    added = []
  else:
    proto = _spiece_proto(os.path.join(model_dir, 'spiece.model'))
    vocab = [(p.piece, p.score) for p in proto.pieces]
    charsmap = proto.normalizer_spec.precompiled_charsmap or None
    # sentencepiece extracts control and user-defined symbols whole.
    added = [AddedToken(p.piece, normalized=False, special=p.type == 3)
             for p in proto.pieces if p.type in (3, 4)]
  unk_id = dict((p, i) for i, (p, _) in enumerate(vocab)).get(specials['unk'])
  if unk_id is None:
    raise UserError(f'{model_dir}: no unk token {specials["unk"]!r} in the '
                    'vocabulary')
  tok = tokenizers.Tokenizer(_model(model_dir, models.Unigram, vocab=vocab,
                                    unk_id=unk_id, byte_fallback=False))
  steps = [normalizers.Replace('``', '"'), normalizers.Replace("''", '"')]
  if not settings['keep_accents']:
    steps += [normalizers.NFKD(), normalizers.StripAccents()]
  if settings['do_lower_case']:
    steps.append(normalizers.Lowercase())
  if charsmap:
    steps.append(normalizers.Precompiled(charsmap))
  tok.normalizer = normalizers.Sequence(steps)
  scheme = 'always' if settings['add_prefix_space'] else 'never'
  tok.pre_tokenizer = pre_tokenizers.Sequence([
      pre_tokenizers.WhitespaceSplit(),
      pre_tokenizers.Metaspace(replacement=METASPACE, prepend_scheme=scheme)])
  tok.decoder = decoders.Metaspace(replacement=METASPACE, prepend_scheme=scheme)
  tok.add_tokens(added)
  return tok


_BUILDERS = {'wordpiece': _build_wordpiece, 'byte_bpe': _build_byte_bpe,
             'unigram': _build_unigram}


def _model(model_dir, model_cls, **kwargs):
  try:
    return model_cls(**kwargs)
  except Exception as e:  # Bad vocabularies raise plain Exceptions in Rust.
    raise UserError(f'{model_dir}: corrupt {model_cls.__name__} vocabulary: '
                    f'{_first_line(e)}') from e


def _from_json(model_dir, tokenizer_json):
  try:
    return tokenizers.Tokenizer.from_str(json.dumps(tokenizer_json))
  except Exception as e:  # The Rust side raises plain Exceptions.
    raise UserError(f'{model_dir}/tokenizer.json is corrupt: {_first_line(e)}') from e


def _json_vocab(model_dir, tokenizer_json, model_type):
  model = tokenizer_json.get('model') or {}
  if model.get('type', model_type) != model_type or 'vocab' not in model:
    raise UserError(f'{model_dir}/tokenizer.json holds a {model.get("type")} model, '
                    f'not the {model_type} its tokenizer class needs')
  return model['vocab']


def _json_charsmap(normalizer):
  if not normalizer:
    return None
  if normalizer.get('type') == 'Precompiled':
    return base64.b64decode(normalizer.get('precompiled_charsmap') or '')
  for step in normalizer.get('normalizers') or []:
    if found := _json_charsmap(step):
      return found
  return None


def _spiece_proto(path: str):
  from sentencepiece import sentencepiece_model_pb2  # pylint: disable=g-import-not-at-top
  proto = sentencepiece_model_pb2.ModelProto()
  try:
    proto.ParseFromString(_read(path))
  except Exception as e:  # protobuf's DecodeError, or worse on junk.
    raise UserError(f'{path} is not a sentencepiece model') from e
  if not proto.pieces:
    raise UserError(f'{path} is not a sentencepiece model (no pieces)')
  if proto.trainer_spec.model_type not in (0, 1):  # Unset means unigram.
    raise UserError(f'{path}: only unigram sentencepiece models are supported '
                    '(ALBERT)')
  return proto


def _add_specials(tok, model_dir, specials, kind) -> None:
  """The five specials as special added tokens, and the family's [CLS] A [SEP]."""
  for role, token in specials.items():
    if tok.token_to_id(token) is None:
      raise UserError(f'{model_dir}: the {role} token {token!r} is not in the '
                      'vocabulary')
  # RoBERTa's <mask> eats the space before it, as in transformers.
  tok.add_special_tokens([AddedToken(t, special=True, normalized=False,
                                     lstrip=(kind == 'byte_bpe' and role == 'mask'))
                          for role, t in specials.items()])
  tok.post_processor = _post_processor(tok, specials, kind)


def _post_processor(tok, specials, kind):
  cls, sep = specials['cls'], specials['sep']
  pair = [(cls, tok.token_to_id(cls)), (sep, tok.token_to_id(sep))]
  if kind == 'byte_bpe':
    return processors.RobertaProcessing(pair[1], pair[0])
  return processors.TemplateProcessing(
      single=f'{cls}:0 $A:0 {sep}:0', pair=f'{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1',
      special_tokens=pair)


def _add_extra_tokens(tok, model_dir, config, tokenizer_json) -> None:
  """Other added tokens (tokenizer_config's added_tokens_decoder, else the json's)."""
  entries = {int(i): v for i, v in (config.get('added_tokens_decoder') or {}).items()}
  if not entries and tokenizer_json:
    entries = {int(t['id']): t for t in tokenizer_json.get('added_tokens') or []}
  for i in sorted(entries):
    entry = entries[i]
    token = AddedToken(entry['content'], single_word=entry.get('single_word', False),
                       lstrip=entry.get('lstrip', False),
                       rstrip=entry.get('rstrip', False),
                       normalized=entry.get('normalized', True),
                       special=entry.get('special', False))
    if tok.token_to_id(entry['content']) not in (i, None):
      raise UserError(f'{model_dir}: added token {entry["content"]!r} has id {i} '
                      f'but the vocabulary has it at {tok.token_to_id(entry["content"])}')
    if tok.token_to_id(entry['content']) is None and i != tok.get_vocab_size():
      raise UserError(f'{model_dir}: added token {entry["content"]!r} has id {i}, '
                      'not the next free id')
    if i not in tok.get_added_tokens_decoder():
      (tok.add_special_tokens if token.special else tok.add_tokens)([token])


# ---------------------------------------------------------------------- export


def export_hf_tokenizer(tokenizer, out_dir: str, model_type: str, *,
                        model_max_length: int | None = None) -> list[str]:
  """Writes tokenizer files into an HF model directory; returns the paths written.

  `transformers.AutoTokenizer.from_pretrained(out_dir)` then gives our ids for text
  (our sentencepiece tokenizer or an imported one) and `tokenizer(text)` adds the
  [CLS] ... [SEP] our packer adds (RoBERTa's pair is <s> A </s></s> B </s>).

  Args:
    tokenizer: an `HFTokenizer`, or our sentencepiece `Tokenizer` (converted to a
      tokenizers Unigram/BPE model in a tokenizer.json).
    out_dir: the model directory (created if needed; other files are left alone).
    model_type: the exported model's family, one of MODEL_TYPES (sets which inputs
      the tokenizer returns: DistilBERT takes no token types).
    model_max_length: the position table size, written for transformers.

  Raises:
    UserError: an unknown model type or a tokenizer that cannot be converted;
      nothing is written then.
  """
  if model_type not in MODEL_TYPES:
    raise UserError(f'cannot export a tokenizer for model type {model_type!r}; '
                    f'known: {", ".join(MODEL_TYPES)}')
  if not isinstance(tokenizer, HFTokenizer):
    tokenizer = from_sentencepiece(tokenizer.model_proto, tokenizer.model_path)
  files = {'tokenizer.json': tokenizer.tokenizer_json}
  spec = json.loads(tokenizer.tokenizer_json)
  if tokenizer.kind == 'wordpiece':
    files['vocab.txt'] = ''.join(
        tokenizer.id_to_piece(i) + '\n' for i in range(tokenizer.vocab_size))
  elif tokenizer.kind == 'byte_bpe':
    files['vocab.json'] = json.dumps(spec['model']['vocab'], ensure_ascii=False)
    files['merges.txt'] = '#version: 0.2\n' + ''.join(
        (m if isinstance(m, str) else ' '.join(m)) + '\n'
        for m in spec['model']['merges'])
  special_map = {f'{role}_token': token
                 for role, token in tokenizer.special_tokens.items()}
  if tokenizer.kind in ('byte_bpe', 'unigram'):
    special_map.update(bos_token=tokenizer.special_tokens['cls'],
                       eos_token=tokenizer.special_tokens['sep'])
  config = {**tokenizer.settings, **special_map,
            'model_input_names': _MODEL_INPUTS.get(
                model_type, ['input_ids', 'token_type_ids', 'attention_mask'])}
  if model_max_length:
    config['model_max_length'] = int(model_max_length)
  files['tokenizer_config.json'] = json.dumps(config, indent=2, sort_keys=True)
  files['special_tokens_map.json'] = json.dumps(special_map, indent=2, sort_keys=True)
  os.makedirs(out_dir, exist_ok=True)
  written = []
  for name, text in files.items():
    path = os.path.join(out_dir, name)
    atomic_files.write_text(path, text)
    written.append(path)
  return written


def from_sentencepiece(model_proto: bytes, name: str | None = None) -> HFTokenizer:
  """Our sentencepiece model (specials at 0..4) as a tokenizers Unigram/BPE model.

  Mirrors sentencepiece's own encoding for the settings `Tokenizer.train` uses
  (nmt_nfkc charsmap, dummy prefix, extra whitespace removed, byte fallback); BPE
  merges are recovered from the piece order, as transformers' converter does.
  """
  from sentencepiece import sentencepiece_model_pb2  # pylint: disable=g-import-not-at-top
  proto = sentencepiece_model_pb2.ModelProto()
  proto.ParseFromString(model_proto)
  spec = proto.normalizer_spec
  if not (spec.add_dummy_prefix and spec.remove_extra_whitespaces
          and spec.escape_whitespaces and not proto.trainer_spec.treat_whitespace_as_suffix):
    raise UserError(f'tokenizer {name}: only sentencepiece models with a dummy '
                    'prefix and extra whitespace removed can be exported')
  pieces = [(p.piece, p.score) for p in proto.pieces]
  byte_fallback = proto.trainer_spec.byte_fallback
  if proto.trainer_spec.model_type == 2:  # BPE.
    vocab = {p: i for i, (p, _) in enumerate(pieces)}
    merges = []
    for i, piece in enumerate(proto.pieces):
      if piece.type == 1:  # NORMAL: a merge result, ranked by its id.
        merges += sorted(((piece.piece[:k], piece.piece[k:])
                          for k in range(1, len(piece.piece))
                          if piece.piece[:k] in vocab and piece.piece[k:] in vocab),
                         key=lambda m: (vocab[m[0]], vocab[m[1]]))
    model = models.BPE(vocab, merges, unk_token=pieces[1][0], fuse_unk=True,
                       byte_fallback=byte_fallback, dropout=None)
  else:
    model = models.Unigram(pieces, 1, byte_fallback=byte_fallback)
  tok = tokenizers.Tokenizer(model)
  steps = [normalizers.Strip(), normalizers.Replace(Regex(' {2,}'), ' ')]
  if spec.precompiled_charsmap:
    steps.insert(0, normalizers.Precompiled(spec.precompiled_charsmap))
  tok.normalizer = normalizers.Sequence(steps)
  tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=METASPACE,
                                               prepend_scheme='always', split=False)
  tok.decoder = decoders.Sequence([decoders.Replace(METASPACE, ' '),
                                   decoders.ByteFallback(), decoders.Fuse(),
                                   decoders.Strip(' ', 1, 0)])
  specials = dict(zip(ROLES, (p for p, _ in pieces)))  # Our ids 0..4.
  _add_specials(tok, name, specials, 'unigram')
  return HFTokenizer(tok.to_str(), specials, {'start_prefix': METASPACE}, 'generic',
                     {'tokenizer_class': _KIND_CLASS['generic']}, model_path=name)


# ---------------------------------------------------------------------- helpers


def _read(path: str) -> bytes:
  try:
    with open(path, 'rb') as f:
      return f.read()
  except OSError as e:
    raise UserError(f'cannot read {path}: {e.strerror or e}') from e


def _read_json(model_dir: str, name: str) -> dict:
  """A JSON object file of the model directory; {} when absent."""
  path = os.path.join(model_dir, name)
  if not os.path.exists(path):
    return {}
  try:
    obj = json.loads(_read(path).decode('utf-8'))
  except (ValueError, UnicodeDecodeError) as e:
    raise UserError(f'{path} is not valid JSON: {e}') from e
  if not isinstance(obj, dict):
    raise UserError(f'{path} is not a JSON object')
  return obj


def _first_line(e: Exception) -> str:
  return (str(e).strip().splitlines() or [type(e).__name__])[0]
