"""Text sources as documents of sentences: the embedded default corpus and real ones.

A document is `list[str]`, its sentences in order; a corpus is `list[list[str]]`.
Sentence boundaries matter to the recipes (next-sentence and sentence-order
prediction, FULL-SENTENCES packing), so every source is split the same way by one
simple deterministic splitter, `split_sentences`.

Sources:
  * `default_corpus`: built at run time from text every Python installation carries
    (standard-library docstrings and the pydoc topics), so a demo runs with no
    download. Same Python version, same text; cached as gzipped JSON.
  * `read_text_files`, `read_jsonl`: local files.
  * `read_tfds`: a prepared TFDS dataset in array_record format, read through
    `tfds.data_source` (random access, no TensorFlow needed).

`load_corpus(config.data)` is the one entry point the pipeline uses: it picks the
source, optionally caps the number of documents and holds some out for evaluation.
"""

from collections.abc import Iterable, Sequence
import ast
import glob
import gzip
import hashlib
import json
import os
import re
import sys
import sysconfig
import tempfile

import numpy as np

from common.errors import UserError

Document = list[str]
Corpus = list[Document]

SOURCES = ('default', 'text', 'jsonl', 'tfds')


def source_config(source: str = 'default') -> dict:
  """The corpus fields of an experiment's `config.data`, at their defaults.

  Every recipe reads its corpus the same way (see `load_corpus` for each field), so
  the experiment files start from this and add their packing settings; any field can
  then be overridden on the command line (`--config.data.source=jsonl`).
  """
  return dict(source=source, paths='', text_field='text', document_per='block',
              tfds_name='', tfds_split='train', tfds_data_dir='', heldout_split='',
              heldout_fraction=0.02, max_documents=0, cache_dir='')

# Bump when the default corpus' extraction or splitting changes, so caches rebuild.
_CORPUS_FORMAT = 3
_MIN_DOC_CHARS = 80
_MIN_DOC_SENTENCES = 2
# Directories of the standard library whose text is not prose about Python: tests,
# vendored or demo code, and installers of third-party packages.
_SKIP_DIRS = frozenset({
    'site-packages', 'dist-packages', 'test', 'tests', 'idlelib', 'lib2to3',
    '__pycache__', 'turtledemo', 'ensurepip',
})

# Sentence end: . ! or ? (plus closing quotes/brackets), whitespace, then something
# that starts a sentence (capital, digit, opening quote or bracket).
_SENTENCE_END = re.compile(
    r'(?:(?<=[.!?])|(?<=[.!?]["\'\)\]]))\s+(?=["\'`(\[]?[A-Z0-9])')
# reST/markdown underlines and rules ("*****", "=====", "-----").
_RULE_LINE = re.compile(r'^\s*([-=*~^#_+`:.])\1{2,}\s*$')
_DOCTEST_LINE = re.compile(r'^\s*(>>>|\.\.\.)( |$)')
_GLOB_CHARS = re.compile(r'[*?\[]')


# --------------------------------------------------------------------------- splitting


def split_sentences(text: str) -> list[str]:
  """Splits text into sentences, deterministically and without a model.

  Paragraphs are separated by blank lines. Within a paragraph, wrapped lines are
  joined with single spaces and the result is cut after `.`, `!` or `?` followed by
  whitespace and a capital, digit or opening quote. Doctest paragraphs (`>>>` lines)
  keep one line per sentence, since joining code would make nonsense sentences.
  Underline rules (`*****`) are dropped.

  Args:
    text: any text; `\\r\\n` and tabs are fine.

  Returns:
    The non-empty sentences, whitespace-normalised, in order.
  """
  sentences = []
  for paragraph in _paragraphs(text):
    if any(_DOCTEST_LINE.match(line) for line in paragraph):
      sentences.extend(' '.join(line.split()) for line in paragraph)
      continue
    joined = ' '.join(' '.join(paragraph).split())
    sentences.extend(s.strip() for s in _SENTENCE_END.split(joined))
  return [s for s in sentences if s]


def _paragraphs(text: str) -> list[list[str]]:
  """Blank-line-separated blocks of non-rule lines."""
  paragraphs, current = [], []
  for line in text.splitlines():
    if not line.strip():
      if current:
        paragraphs.append(current)
      current = []
    elif not _RULE_LINE.match(line):
      current.append(line)
  if current:
    paragraphs.append(current)
  return paragraphs


# ---------------------------------------------------------------------- default corpus


def default_corpus(cache_dir: str | None = None) -> Corpus:
  """The embedded default corpus: standard-library docstrings and pydoc topics.

  Built from the running Python's standard-library *source* (parsed with `ast`,
  nothing is imported: importing `antigravity` opens a browser, `this` prints): one
  document per module, made of its module, class and function docstrings in source
  order (exact duplicates dropped; documents under 2 sentences or 80 characters
  skipped), then one per pydoc topic (`pydoc_data/topics.py`, sorted by key). Files
  are walked in sorted order, so the same Python version gives the same corpus.

  On CPython 3.11.7 (Linux) this is 486 documents (median 19 sentences), 26,171
  sentences and 1.95 M characters, ~450 k tokens at a vocab of 4000. A build takes
  ~3.5 s on one core; a cache hit ~0.02 s.

  Args:
    cache_dir: where the gzipped JSON cache lives; default `$BERT_FAMILY_CACHE` or
      `~/.cache/bert_family`. The file name carries the Python version; a corrupt or
      stale file is rebuilt, and the cache is written atomically.

  Returns:
    The corpus, a list of documents, each a list of sentences.
  """
  path = os.path.join(_cache_dir(cache_dir), _cache_name())
  cached = _read_cache(path)
  if cached is not None:
    return cached
  corpus = build_default_corpus()
  _write_cache(path, corpus)
  return corpus


def build_default_corpus() -> Corpus:
  """Builds `default_corpus` from source, with no cache (see there)."""
  stdlib = sysconfig.get_paths()['stdlib']
  corpus, seen = [], set()
  for path in _stdlib_sources(stdlib):
    # One document per module, its docstrings in source order, as an article: the
    # sentence pairs and packed sequences then span related text, not one docstring.
    doc = []
    for docstring in _docstrings(path):
      if docstring not in seen:
        seen.add(docstring)
        doc.extend(split_sentences(docstring))
    if _long_enough(doc):
      corpus.append(doc)
  corpus.extend(_pydoc_topics(stdlib))
  return corpus


def _long_enough(doc: Document) -> bool:
  return (len(doc) >= _MIN_DOC_SENTENCES
          and sum(map(len, doc)) >= _MIN_DOC_CHARS)


def _stdlib_sources(stdlib: str) -> list[str]:
  """Sorted .py files of the standard library, without tests and vendored code."""
  paths = []
  for dirpath, dirnames, filenames in os.walk(stdlib):
    # pydoc_data holds the topics dict, read separately below.
    dirnames[:] = sorted(d for d in dirnames
                         if d not in _SKIP_DIRS and d != 'pydoc_data')
    paths.extend(os.path.join(dirpath, f) for f in sorted(filenames)
                 if f.endswith('.py'))
  return paths


def _docstrings(path: str) -> list[str]:
  """Cleaned module, class and function docstrings of one file, in source order."""
  try:
    with open(path, 'rb') as f:
      tree = ast.parse(f.read(), filename=path)
  except (OSError, SyntaxError, ValueError, UnicodeDecodeError):
    return []  # A broken file in someone's stdlib is no reason to fail.
  kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
  out = []

  def visit(node):  # Depth-first pre-order: the order docstrings appear in the file.
    if isinstance(node, kinds):
      docstring = ast.get_docstring(node, clean=True)
      if docstring:
        out.append(docstring)
    for child in ast.iter_child_nodes(node):
      visit(child)

  visit(tree)
  return out


def _pydoc_topics(stdlib: str) -> Corpus:
  """One document per pydoc topic, read from source with `ast.literal_eval`."""
  path = os.path.join(stdlib, 'pydoc_data', 'topics.py')
  try:
    with open(path, 'rb') as f:
      tree = ast.parse(f.read(), filename=path)
  except (OSError, SyntaxError, ValueError, UnicodeDecodeError):
    return []
  for node in tree.body:
    if (isinstance(node, ast.Assign) and len(node.targets) == 1
        and isinstance(node.targets[0], ast.Name)
        and node.targets[0].id == 'topics'):
      try:
        topics = ast.literal_eval(node.value)
      except ValueError:
        return []
      docs = [split_sentences(topics[k]) for k in sorted(topics)]
      return [d for d in docs if _long_enough(d)]
  return []


def _cache_dir(cache_dir: str | None) -> str:
  if cache_dir:
    return cache_dir
  return os.environ.get('BERT_FAMILY_CACHE') or os.path.join(
      os.path.expanduser('~'), '.cache', 'bert_family')


def _cache_name() -> str:
  # The full sys.version (build date, compiler) and the stdlib path go in the hash:
  # two builds of one version may ship different stdlib text.
  ident = f'{_CORPUS_FORMAT}|{sys.version}|{sysconfig.get_paths()["stdlib"]}'
  digest = hashlib.sha256(ident.encode()).hexdigest()[:10]
  version = '.'.join(map(str, sys.version_info[:3]))
  return f'default_corpus-py{version}-{digest}.json.gz'


def _read_cache(path: str) -> Corpus | None:
  """The cached corpus, or None when missing, corrupt or from another build."""
  try:
    with gzip.open(path, 'rt', encoding='utf-8') as f:
      payload = json.load(f)
    if (payload['format'] != _CORPUS_FORMAT
        or payload['python'] != sys.version):
      return None
    corpus = payload['documents']
    if not (isinstance(corpus, list) and all(
        isinstance(d, list) and all(isinstance(s, str) for s in d)
        for d in corpus)):
      return None
    return corpus
  except (OSError, EOFError, ValueError, KeyError, TypeError):
    return None


def _write_cache(path: str, corpus: Corpus) -> None:
  """Writes atomically; a cache that cannot be written is skipped, not fatal."""
  payload = {'format': _CORPUS_FORMAT, 'python': sys.version,
             'documents': corpus}
  directory = os.path.dirname(path)
  try:
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix='.tmp-', suffix='.json.gz')
  except OSError:
    return
  try:
    with os.fdopen(fd, 'wb') as raw, gzip.GzipFile(
        fileobj=raw, mode='wb', mtime=0) as f:
      f.write(json.dumps(payload, ensure_ascii=False).encode('utf-8'))
    os.chmod(tmp, 0o644)  # mkstemp makes it 0600; a cache may be shared.
    os.replace(tmp, path)
  except OSError:
    try:
      os.remove(tmp)
    except OSError:
      pass


# ----------------------------------------------------------------------- local files


def _expand_paths(paths: Sequence[str] | str) -> list[str]:
  """Expands globs (sorted); a missing file or an empty glob is a UserError."""
  if isinstance(paths, str):
    paths = [paths]
  files = []
  for pattern in paths:
    pattern = os.path.expanduser(pattern)
    if _GLOB_CHARS.search(pattern):
      matches = sorted(p for p in glob.glob(pattern) if os.path.isfile(p))
      if not matches:
        raise UserError(f'no files match {pattern!r}')
      files.extend(matches)
    elif os.path.isdir(pattern):
      raise UserError(f'{pattern!r} is a directory; pass files or a glob such as '
                      f'{os.path.join(pattern, "*.txt")!r}')
    elif not os.path.isfile(pattern):
      raise UserError(f'file {pattern!r} does not exist')
    else:
      files.append(pattern)
  if not files:
    raise UserError('no input files given')
  return files


def _read_text(path: str) -> str:
  try:
    with open(path, encoding='utf-8-sig') as f:  # -sig: drop a BOM if present.
      return f.read()
  except UnicodeDecodeError as e:
    raise UserError(f'file {path!r} is not UTF-8 text (byte {e.start})') from e
  except OSError as e:
    raise UserError(f'cannot read {path!r}: {e.strerror or e}') from e


def read_text_files(paths: Sequence[str] | str,
                    document_per: str = 'block') -> Corpus:
  """Reads UTF-8 plain-text files as a corpus.

  Args:
    paths: file paths or globs (`data/*.txt`), expanded in sorted order.
    document_per: 'block' makes each blank-line-separated block a document (e.g. one
      article per paragraph block); 'file' makes each file a document whose blank
      lines only separate paragraphs.

  Returns:
    The corpus; documents with no text are dropped.

  Raises:
    UserError: a missing, unreadable or non-UTF-8 file, an empty glob, or an
      unknown `document_per`.
  """
  if document_per not in ('block', 'file'):
    raise UserError(f"document_per must be 'block' or 'file', got {document_per!r}")
  corpus = []
  for path in _expand_paths(paths):
    text = _read_text(path)
    if document_per == 'file':
      docs = [split_sentences(text)]
    else:
      docs = [split_sentences('\n'.join(p)) for p in _paragraphs(text)]
    corpus.extend(d for d in docs if d)
  return corpus


def jsonl_records(path: str) -> Iterable[tuple[int, dict]]:
  """(1-based line number, object) of each non-blank line of a JSONL file; a line that
  is not a JSON object is a UserError naming the file and line."""
  for lineno, line in enumerate(_read_text(path).splitlines(), start=1):
    if not line.strip():
      continue
    try:
      record = json.loads(line)
    except json.JSONDecodeError as e:
      raise UserError(f'{path}:{lineno}: bad JSON ({e.msg})') from e
    if not isinstance(record, dict):
      raise UserError(f'{path}:{lineno}: expected a JSON object, got '
                      f'{type(record).__name__}')
    yield lineno, record


def read_jsonl(paths: Sequence[str] | str, text_field: str = 'text') -> Corpus:
  """Reads JSON-lines files: one document per line, from its `text_field`.

  Args:
    paths: file paths or globs, expanded in sorted order.
    text_field: the key of each object that holds the document's text.

  Returns:
    The corpus; blank lines and empty texts are skipped.

  Raises:
    UserError: a missing/unreadable file, a line that is not a JSON object, or one
      whose `text_field` is missing or not a string (file and line are named).
  """
  corpus = []
  for path in _expand_paths(paths):
    for lineno, record in jsonl_records(path):
      if text_field not in record:
        raise UserError(f'{path}:{lineno}: no field {text_field!r} (fields: '
                        f'{", ".join(sorted(record)) or "none"})')
      text = record[text_field]
      if not isinstance(text, str):
        raise UserError(f'{path}:{lineno}: field {text_field!r} is '
                        f'{type(text).__name__}, not a string')
      doc = split_sentences(text)
      if doc:
        corpus.append(doc)
  return corpus


# ---------------------------------------------------------------------------- TFDS


def read_tfds(name: str, split: str = 'train', data_dir: str | None = None,
              text_field: str = 'text', max_documents: int = 0,
              seed: int = 0) -> Corpus:
  """Reads a prepared TFDS dataset (array_record format) without TensorFlow.

  Args:
    name: a registered dataset name (`wikipedia/20230601.en`) found under
      `data_dir`, or the path of a prepared dataset version directory (the one
      holding `dataset_info.json`).
    split: a split or TFDS slice (`train`, `train[:10%]`).
    data_dir: the TFDS data directory for a name; default TFDS' own.
    text_field: the feature holding the text; bytes are decoded as UTF-8.
    max_documents: if > 0, read only a seeded random subset of this many examples
      (in dataset order), so a demo on a large dataset does not read all of it.
    seed: picks that subset.

  Returns:
    One document per example, sentence-split; empty ones dropped.

  Raises:
    UserError: the dataset, split or field is missing, or it is not prepared in a
      random-access format (prepare it with `tfds build --file_format=array_record`).
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top  # Slow.

  try:
    if os.path.isdir(name):
      source = tfds.builder_from_directory(name).as_data_source(split=split)
    else:
      # Never download or prepare: that belongs to `tfds build`, not to a training run.
      source = tfds.data_source(name, split=split, data_dir=data_dir,
                                download=False)
  except Exception as e:  # pylint: disable=broad-except  # tfds raises many types.
    first_line = str(e).strip().splitlines()[0] if str(e).strip() else repr(e)
    raise UserError(
        f'cannot open TFDS dataset {name!r} split {split!r}: {first_line} '
        '(prepare it with `tfds build --file_format=array_record`)') from e
  indices = np.arange(len(source))
  if 0 < max_documents < len(source):
    indices = np.sort(_seeded_order(len(source), seed)[:max_documents])
  corpus = []
  for start in range(0, len(indices), 1024):  # Batched reads are much faster.
    keys = [int(i) for i in indices[start:start + 1024]]
    for key, record in zip(keys, source.__getitems__(keys)):
      doc = split_sentences(_tfds_text(record, name, key, text_field))
      if doc:
        corpus.append(doc)
  return corpus


def _tfds_text(record, name: str, key: int, text_field: str) -> str:
  """The text field of one TFDS example, decoded."""
  if text_field not in record:
    raise UserError(f'TFDS dataset {name!r} has no field {text_field!r} '
                    f'(fields: {", ".join(sorted(record))})')
  text = record[text_field]
  if isinstance(text, np.ndarray) and text.shape == ():
    text = text.item()
  if isinstance(text, bytes):
    try:
      return text.decode('utf-8')
    except UnicodeDecodeError as e:
      raise UserError(f'TFDS dataset {name!r} example {key}: field '
                      f'{text_field!r} is not UTF-8') from e
  if not isinstance(text, str):
    raise UserError(f'TFDS dataset {name!r}: field {text_field!r} is '
                    f'{type(text).__name__}, not text')
  return text


# ----------------------------------------------------------- splitting and dispatch


def _seeded_order(n: int, seed: int) -> np.ndarray:
  """A permutation of range(n) fixed by seed, on every machine and numpy version.

  Sorts by a splitmix64 hash of (seed, index) instead of using a numpy RNG, whose
  streams numpy does not promise to keep.
  """
  with np.errstate(over='ignore'):
    x = np.arange(n, dtype=np.uint64) + np.uint64(
        (seed * 0x9E3779B97F4A7C15) % 2**64)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
  return np.argsort(x, kind='stable')


def split_heldout(corpus: Corpus, fraction: float, seed: int,
                  min_heldout: int = 1) -> tuple[Corpus, Corpus]:
  """Holds out a seeded random subset of documents.

  Args:
    corpus: the documents to split.
    fraction: the share of documents held out, in [0, 1).
    seed: fixes which documents are held out.
    min_heldout: at least this many are held out (and at least one, and at most
      all but one, so both parts are non-empty).

  Returns:
    (train, heldout), each in the corpus' original order, disjoint, together the
    whole corpus.

  Raises:
    UserError: fewer than 2 documents, or a fraction outside [0, 1).
  """
  if not 0.0 <= fraction < 1.0:
    raise UserError(f'heldout fraction must be in [0, 1), got {fraction}')
  n = len(corpus)
  if n < 2:
    raise UserError(f'cannot hold out documents from a corpus of {n} document(s); '
                    'need at least 2 (data.heldout_fraction=0 holds none out)')
  n_heldout = min(max(int(round(n * fraction)), min_heldout, 1), n - 1)
  is_heldout = np.zeros(n, dtype=bool)
  is_heldout[_seeded_order(n, seed)[:n_heldout]] = True
  train = [d for d, h in zip(corpus, is_heldout) if not h]
  heldout = [d for d, h in zip(corpus, is_heldout) if h]
  return train, heldout


def _cap(corpus: Corpus, max_documents: int, seed: int) -> Corpus:
  """A seeded random subset of at most max_documents, in original order."""
  if max_documents <= 0 or len(corpus) <= max_documents:
    return corpus
  keep = np.sort(_seeded_order(len(corpus), seed)[:max_documents])
  return [corpus[i] for i in keep]


def _paths_of(data_config) -> list[str]:
  paths = data_config.get('paths', None) or []
  if isinstance(paths, str):
    paths = [p.strip() for p in paths.split(',')]
  return [p for p in paths if p]


def _check_not_empty(corpus: Corpus, what: str) -> None:
  if not corpus:
    raise UserError(f"corpus '{what}' is empty: no text found after loading")


def load_corpus(data_config) -> tuple[Corpus, Corpus]:
  """Loads the configured corpus and splits off held-out documents.

  Fields of `data_config` (an ml_collections ConfigDict; missing ones take the
  defaults in brackets): `source` ['default'] one of 'default', 'text', 'jsonl',
  'tfds'; `paths` [()] files/globs for text and jsonl, a list or a comma-separated
  string; `text_field` ['text']; `document_per` ['block']; `tfds_name`;
  `tfds_split` ['train']; `tfds_data_dir` [None]; `heldout_fraction` [0.02], 0 for
  no held-out set; `heldout_split` [None], for tfds a split read as the held-out
  set instead of a fraction; `max_documents` [0 = all], a seeded random subset
  (applied to each part read; before the fraction split); `seed` [0];
  `cache_dir` [None] for the default corpus.

  Args:
    data_config: the data section of an experiment config.

  Returns:
    (train_docs, heldout_docs); heldout_docs is empty only when
    `heldout_fraction` is 0 and no `heldout_split` is given.

  Raises:
    UserError: an unknown source, missing paths or name, unreadable input or an
      empty corpus.
  """
  get = data_config.get
  source = get('source', 'default')
  seed = int(get('seed', 0) or 0)
  max_documents = int(get('max_documents', 0) or 0)
  heldout_split = get('heldout_split', None)
  heldout = None
  if heldout_split and source != 'tfds':
    raise UserError(f"data.heldout_split is only for source 'tfds', not {source!r}; "
                    'use data.heldout_fraction')

  if source == 'default':
    what = 'default'
    corpus = default_corpus(get('cache_dir', None))
  elif source in ('text', 'jsonl'):
    paths = _paths_of(data_config)
    if not paths:
      raise UserError(f"data.source is {source!r} but data.paths is empty")
    what = f'{source}:{",".join(paths)}'
    if source == 'text':
      corpus = read_text_files(paths, get('document_per', 'block'))
    else:
      corpus = read_jsonl(paths, get('text_field', 'text'))
  elif source == 'tfds':
    name = get('tfds_name', None)
    if not name:
      raise UserError("data.source is 'tfds' but data.tfds_name is not set")
    split = get('tfds_split', 'train')
    kwargs = dict(data_dir=get('tfds_data_dir', None),
                  text_field=get('text_field', 'text'),
                  max_documents=max_documents)
    what = f'tfds:{name}[{split}]'
    corpus = read_tfds(name, split, seed=seed, **kwargs)
    if heldout_split:
      # Another seed, so the two subsets are not chosen in lockstep.
      heldout = read_tfds(name, heldout_split, seed=seed + 1, **kwargs)
      _check_not_empty(heldout, f'tfds:{name}[{heldout_split}]')
  else:
    raise UserError(f'unknown data.source {source!r}; valid: '
                    f'{", ".join(SOURCES)}')

  _check_not_empty(corpus, what)
  corpus = _cap(corpus, max_documents, seed)  # A no-op for tfds, capped on read.
  if heldout is not None:
    return corpus, heldout
  fraction = float(get('heldout_fraction', 0.02))
  if fraction == 0.0:
    return corpus, []
  return split_heldout(corpus, fraction, seed)


def corpus_sentences(corpus: Iterable[Document]) -> Iterable[str]:
  """All sentences of a corpus in order (e.g. to train a tokenizer on)."""
  for doc in corpus:
    yield from doc
