"""A local probe suite: fine-tuning tasks built from the pretraining run's held-out text.

GLUE needs a download; these tasks need none. They are made from the HELD-OUT documents
of the very corpus and split a pretraining run used (`corpus.load_corpus(config.data)`),
so no sentence the encoder was pretrained on appears in a probe, and they are written
as generic TSV tasks that the fine-tuning command reads like a GLUE task:

  word_order      single sentence: as written (1), or with two pairs of adjacent
                  interior words swapped (0). Each source sentence appears once, intact
                  or perturbed, never both, so the task is acceptability, not a
                  comparison. The first and last words never move (a capital or a final
                  period out of place would give the answer away).
  sentence_order  two consecutive sentences of one document, in order (1) or swapped
                  (0); pairs do not overlap, so each sentence appears once.
  same_document   two sentences of one document (1) or of two documents (0); each
                  sentence appears once.
  topic           default corpus only: the top-level standard-library package of the
                  module a sentence comes from ('email', 'asyncio', ..., and
                  'pydoc_topics' for the language reference topics). The classes are
                  the K (<= 4, >= 3) packages with at least 3 held-out modules that give
                  the most balanced examples. Skipped, with the reason in the index,
                  for any other corpus or when too few packages qualify.

Splits are by DOCUMENT: each held-out document (module) gives sentences to one split of
a task only, so a probe never tests on text whose neighbours it was trained on. Labels
are balanced exactly in every split (downsampled to the rarest label), so the majority
baseline is 0.5 (1/K for topic); it is stated in every task.json and the index.

Sentences used: 5 to 50 words, occurring once among the held-out documents and never
in the training documents. Sizes default to 512/256/256 examples (train/dev/test) per
task and are capped by what the held-out documents give. A run's default
`data.heldout_fraction` of 0.02 holds out 10 of the default corpus' 486 documents,
too few for document-level splits of same_document and topic (see
`build_probe_suite` for the sizes each fraction gives).

Layout of the suite directory: `probes.json` (the index), `README.md`, and one
directory per task with `train.tsv`, `dev.tsv`, `test.tsv` (a header, then
tab-separated rows, no quoting) and `task.json`.
"""

from collections.abc import Mapping
import collections
import functools
import hashlib
import json
import os
import shutil
import sys
import sysconfig
import tempfile
import zlib

import numpy as np

from common import atomic_files
from common.data import corpus
from common.errors import UserError

FORMAT = 1
SPLITS = ('train', 'dev', 'test')
SIZES = {'train': 512, 'dev': 256, 'test': 256}
MIN_WORDS, MAX_WORDS = 5, 50
WORD_SWAPS = 2
TOPIC_CLASSES, MIN_TOPIC_CLASSES = 4, 3
PYDOC_TOPICS = 'pydoc_topics'


# ----------------------------------------------------------------- the suite


def build_probe_suite(data_config, out_dir: str, *, seed: int = 0,
                      sizes: Mapping[str, int] | None = None) -> dict:
  """Builds the probe suite from the held-out documents of `data_config`'s corpus.

  Sizes (train/dev/test) on the default corpus, CPython 3.11.7, data.seed 0, seed 0:

    heldout_fraction  documents  word_order   sentence_order  same_document  topic
    0.02 (default)    10         512/172/172  310/76/82       skipped        skipped
    0.1               49         512/256/256  464/232/206     344/256/256    112/32/20
    0.15              73         512/256/256  512/256/256     512/256/256    152/80/112
    0.2               97         512/256/256  512/256/256     512/256/256    252/148/148

  At 0.02 one held-out module (tkinter/__init__.py) holds 65% of the usable
  sentences and fills the train split alone, so same_document has no negatives there;
  no package has 3 held-out modules, so there is no topic task.

  Args:
    data_config: a pretraining config's `data` section; `corpus.load_corpus` gives the
      exact train/held-out split of that run.
    out_dir: the suite directory. Written into a temporary sibling renamed into place,
      so it is complete or absent. If it exists and is not empty it must already hold
      this suite (same corpus and split, seed and sizes), which is then reused.
    seed: picks the examples, labels and perturbations (not the held-out documents:
      those are the pretraining run's).
    sizes: examples per split, {'train': 512, 'dev': 256, 'test': 256} by default
      (missing keys take these); each task gives at most this many.

  Returns:
    The index written to `probes.json`: per task its task.json, skipped tasks with
    the reason, and the source fingerprint.

  Raises:
    UserError: bad sizes, an unreadable corpus, no held-out documents, or an out_dir
      holding something else.
  """
  sizes, seed = _check_sizes(sizes), int(seed)
  train_docs, heldout_docs = corpus.load_corpus(data_config)
  if not heldout_docs:
    raise UserError('the probe suite is built from held-out documents, and '
                    'data.heldout_fraction is 0; hold some documents out')
  fingerprint = hashlib.sha256(json.dumps(
      [FORMAT, train_docs, heldout_docs], ensure_ascii=False).encode()).hexdigest()
  key = dict(format=FORMAT, fingerprint=fingerprint, seed=seed, sizes=sizes)
  existing = _existing_suite(out_dir, key)
  if existing is not None:
    return existing

  heldout_docs = [[_clean(s) for s in doc] for doc in heldout_docs]
  training = {_clean(s) for doc in train_docs for s in doc}
  docs = _eligible(heldout_docs, training)
  tasks, skipped = {}, {}
  shared_split = _assign_documents([_count(d) for d in docs], sizes, min_docs=2)
  for name, make in (('word_order', _word_order),
                     ('sentence_order', _sentence_order),
                     ('same_document', _same_document)):
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    tasks[name] = make(_by_split(docs, shared_split), sizes, rng)
  rng = np.random.default_rng([seed, zlib.crc32(b'topic')])
  topic = _topic(data_config, heldout_docs, docs, sizes, rng)
  if isinstance(topic, str):
    skipped['topic'] = topic
  else:
    tasks['topic'] = topic
  for name, task in list(tasks.items()):
    empty = [s for s in SPLITS if not task['rows'][s]]
    if empty:
      skipped[name] = (f'no examples for split(s) {", ".join(empty)}: too few held-out '
                       'documents (raise data.heldout_fraction)')
      del tasks[name]
  for task in tasks.values():
    _check_task(task, training)

  source = _describe(data_config, len(train_docs), len(heldout_docs))
  index = dict(key, source=source, heldout_documents=len(heldout_docs),
               heldout_sentences=sum(map(len, heldout_docs)),
               eligible_sentences=sum(map(_count, docs)), tasks={}, skipped=skipped)
  parent = os.path.dirname(os.path.abspath(out_dir))
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix='.probes-tmp-', dir=parent)
  try:
    for name, task in tasks.items():
      index['tasks'][name] = _write_task(os.path.join(tmp, name), name, task,
                                         seed, source)
    atomic_files.write_text(os.path.join(tmp, 'probes.json'),
                            json.dumps(index, indent=1) + '\n')
    atomic_files.write_text(os.path.join(tmp, 'README.md'), _readme(index))
    os.chmod(tmp, 0o755)  # mkdtemp makes it 0700; a suite may be shared.
    if os.path.isdir(out_dir):
      os.rmdir(out_dir)  # Empty (checked above); rename needs it gone.
    os.rename(tmp, out_dir)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return index


def _check_sizes(sizes) -> dict[str, int]:
  sizes = dict(SIZES, **(sizes or {}))
  for split, n in sizes.items():
    if split not in SPLITS or not isinstance(n, int) or n < 2:
      raise UserError(f'probe sizes must map {"/".join(SPLITS)} to integers >= 2, '
                      f'got {split!r}: {n!r}')
  return {s: sizes[s] for s in SPLITS}


def _existing_suite(out_dir: str, key: dict) -> dict | None:
  """The stored index when out_dir holds this suite; None when absent or empty."""
  if not os.path.exists(out_dir) or (os.path.isdir(out_dir)
                                     and not os.listdir(out_dir)):
    return None
  try:
    with open(os.path.join(out_dir, 'probes.json'), encoding='utf-8') as f:
      index = json.load(f)
  except (OSError, ValueError) as e:
    raise UserError(f'{out_dir!r} exists and is not a probe suite; choose another '
                    'directory or remove it') from e
  differ = [k for k in key if index.get(k) != key[k]]
  if differ:
    raise UserError(f'{out_dir!r} holds a different probe suite ({", ".join(differ)} '
                    'differ); choose another directory or remove it')
  return index


def _clean(sentence: str) -> str:
  """One line with single spaces: no tab or newline can break a TSV row."""
  return ' '.join(sentence.split())


def _eligible(docs, training: set[str]) -> list[list[str | None]]:
  """Each document with its unusable sentences replaced by None (positions kept, so
  consecutive pairs stay consecutive): too short or long, seen in training, or
  occurring more than once among the held-out documents (so a document-level split
  cannot put one sentence in two splits)."""
  counts = collections.Counter(s for doc in docs for s in doc)
  ok = lambda s: (MIN_WORDS <= len(s.split()) <= MAX_WORDS and counts[s] == 1
                  and s not in training)
  return [[s if ok(s) else None for s in doc] for doc in docs]


def _count(doc) -> int:
  return sum(s is not None for s in doc)


# --------------------------------------------------------- document-level splits


def _assign_documents(weights: list[int], sizes: dict[str, int],
                      min_docs: int) -> list[str]:
  """The split of each document, whole documents in the ratio of `sizes`.

  Largest first, each document goes to the split furthest below its share of the
  total weight (ties to the larger split); the last documents fill any split still
  short of `min_docs` documents (lowered to what the count allows). Documents of
  weight 0 go nowhere (''). Deterministic: the seed picks examples, not documents, so
  the split is the same for every seed.
  """
  order = sorted((i for i, w in enumerate(weights) if w > 0),
                 key=lambda i: -weights[i])  # stable: ties in corpus order
  n = len(order)
  min_docs = min(min_docs, n // len(SPLITS))
  total = sum(sizes.values())
  target = {s: sum(weights) * sizes[s] / total for s in SPLITS}
  load, docs_in = dict.fromkeys(SPLITS, 0), dict.fromkeys(SPLITS, 0)
  out = [''] * len(weights)
  for left, i in enumerate(order):
    short = [s for s in SPLITS if docs_in[s] < min_docs]
    missing = sum(min_docs - docs_in[s] for s in short)
    candidates = short if missing >= n - left else SPLITS
    split = max(candidates, key=lambda s: ((target[s] - load[s]) / max(target[s], 1e-9),
                                           sizes[s]))
    out[i] = split
    load[split] += weights[i]
    docs_in[split] += 1
  return out


def _by_split(docs, split_of: list[str]) -> dict[str, list]:
  return {s: [d for d, t in zip(docs, split_of) if t == s] for s in SPLITS}


def _balanced(by_label: Mapping[str, list], n: int,
              rng: np.random.Generator) -> list:
  """n // K rows of each of the K labels (or as many as the rarest has), shuffled."""
  per_label = min([n // len(by_label)] + [len(r) for r in by_label.values()])
  rows = []
  for label in sorted(by_label):
    pool = by_label[label]
    rows += [(pool[i], label) for i in rng.permutation(len(pool))[:per_label]]
  return [rows[i] for i in rng.permutation(len(rows))]


# ------------------------------------------------------------------------ tasks


def _word_order(docs_by_split, sizes, rng) -> dict:
  rows = {}
  for split, docs in docs_by_split.items():
    pool = [s for doc in docs for s in doc if s is not None]
    pool = [pool[i] for i in rng.permutation(len(pool))]
    swapped = [_swap_words(s, rng) for s in pool]
    usable = [(s, w) for s, w in zip(pool, swapped) if w is not None]
    half = len(usable) // 2  # Each source sentence once: intact or perturbed.
    by_label = {'1': [(s,) for s, _ in usable[:half]],
                '0': [(w,) for _, w in usable[half:]]}
    rows[split] = _balanced(by_label, sizes[split], rng)
  return dict(columns=['sentence'], labels=['0', '1'], rows=rows,
              description='Is the sentence as written (1), or with two pairs of '
              'adjacent interior words swapped (0)? Each source sentence appears once.')


def _swap_words(sentence: str, rng: np.random.Generator) -> str | None:
  """The sentence with WORD_SWAPS non-overlapping pairs of adjacent, different words
  swapped, first and last word in place; None if it has too few such pairs."""
  words = sentence.split()
  used, swaps = set(), []
  for i in rng.permutation(np.arange(1, max(len(words) - 2, 1))):
    if words[i] != words[i + 1] and not {i - 1, i, i + 1} & used:
      used.add(i)
      swaps.append(i)
  if len(swaps) < WORD_SWAPS:
    return None
  for i in swaps[:WORD_SWAPS]:
    words[i], words[i + 1] = words[i + 1], words[i]
  return ' '.join(words)


def _sentence_order(docs_by_split, sizes, rng) -> dict:
  rows = {}
  for split, docs in docs_by_split.items():
    pairs = []
    for doc in docs:
      i = 0
      while i + 1 < len(doc):  # Disjoint consecutive pairs: each sentence once.
        if doc[i] is not None and doc[i + 1] is not None:
          pairs.append((doc[i], doc[i + 1]))
          i += 2
        else:
          i += 1
    pairs = [pairs[i] for i in rng.permutation(len(pairs))]
    half = len(pairs) // 2
    by_label = {'1': pairs[:half], '0': [(b, a) for a, b in pairs[half:]]}
    rows[split] = _balanced(by_label, sizes[split], rng)
  return dict(columns=['sentence1', 'sentence2'], labels=['0', '1'], rows=rows,
              description='Two consecutive sentences of one document: in order (1) or '
              'swapped (0). Each sentence appears once.')


def _same_document(docs_by_split, sizes, rng) -> dict:
  rows = {}
  for split, docs in docs_by_split.items():
    pools = [[doc[i] for i in rng.permutation(len(doc)) if doc[i] is not None]
             for doc in docs]
    # Half of each document's sentences for negatives (each sentence appears once),
    # but no document more than half of them, so all can meet another document.
    n_negative = [len(p) // 2 for p in pools]
    if n_negative:
      big = int(np.argmax(n_negative))
      n_negative[big] = min(n_negative[big], sum(n_negative) - n_negative[big])
    same = [pair for p, n in zip(pools, n_negative)
            for pair in zip(p[n::2], p[n + 1::2])]
    # Sorted by document; item i meets item i + m, always another document then.
    negative = sorted(((len(p), d, s) for d, (p, n) in enumerate(zip(pools, n_negative))
                       for s in p[:n]), reverse=True)
    m = len(negative) // 2
    other = [(a[2], b[2]) for a, b in zip(negative[:m], negative[m:2 * m])]
    assert all(a[1] != b[1] for a, b in zip(negative[:m], negative[m:2 * m]))
    flip = lambda pairs: [p[::-1] if rng.random() < 0.5 else p for p in pairs]
    rows[split] = _balanced({'1': flip(same), '0': flip(other)}, sizes[split], rng)
  return dict(columns=['sentence1', 'sentence2'], labels=['0', '1'], rows=rows,
              description='Two sentences from one document (1) or from two different '
              'documents (0). Each sentence appears once.')


def _topic(data_config, heldout_docs, docs, sizes, rng) -> dict | str:
  """The topic task, or the reason it is skipped."""
  if data_config.get('source', 'default') != 'default':
    return ('needs the default corpus: other corpora carry no package of origin '
            f'(data.source is {data_config.get("source")!r})')
  names = {tuple(map(_clean, doc)): source for source, doc in _named_default_corpus()}
  packages = [top_level_package(names.get(tuple(d), '')) for d in heldout_docs]
  if '' in packages:
    return 'held-out documents do not match a fresh build of the default corpus'
  by_package = collections.defaultdict(list)
  for package, doc in zip(packages, docs):
    if _count(doc):
      by_package[package].append(doc)
  capacity = {}
  for package, pdocs in by_package.items():
    if len(pdocs) >= len(SPLITS):  # One module per split at least.
      split_of = _assign_documents([_count(d) for d in pdocs], sizes, min_docs=1)
      split_docs = _by_split(pdocs, split_of)
      capacity[package] = (min(sum(map(_count, split_docs[s])) / sizes[s]
                               for s in SPLITS), split_docs)
  chosen = sorted(capacity, key=lambda p: (-capacity[p][0], p))[:TOPIC_CLASSES]
  if len(chosen) < MIN_TOPIC_CLASSES:
    return (f'{len(chosen)} package(s) have >= 3 held-out modules, need '
            f'{MIN_TOPIC_CLASSES} (raise data.heldout_fraction, e.g. to 0.2)')
  rows = {}
  for split in SPLITS:
    by_label = {p: [(s,) for doc in capacity[p][1][split] for s in doc if s is not None]
                for p in chosen}
    rows[split] = _balanced(by_label, sizes[split], rng)
  return dict(columns=['sentence'], labels=sorted(chosen), rows=rows,
              description='Which top-level standard-library package does the sentence '
              "come from ('pydoc_topics': the language reference topics)? Train, dev "
              'and test sentences come from different modules of each package.')


def top_level_package(source: str) -> str:
  """'email/mime/text.py' -> 'email', 'os.py' -> 'os', 'pydoc_topics' stays."""
  return source.replace(os.sep, '/').split('/')[0].removesuffix('.py')


@functools.lru_cache(maxsize=1)
def _named_default_corpus() -> tuple[tuple[str, tuple[str, ...]], ...]:
  """(source, document) for each document of `corpus.build_default_corpus()`, in its
  order: a module's path relative to the stdlib, or 'pydoc_topics'.

  The cached corpus stores no names, so this repeats the build's walk (~3.5 s, once
  per process); `build_probe_suite` matches held-out documents to it by content, and
  the tests check it aligns with `build_default_corpus`.
  """
  stdlib = sysconfig.get_paths()['stdlib']
  named, seen = [], set()
  for path in corpus._stdlib_sources(stdlib):  # pylint: disable=protected-access
    doc = []
    for docstring in corpus._docstrings(path):  # pylint: disable=protected-access
      if docstring not in seen:
        seen.add(docstring)
        doc.extend(corpus.split_sentences(docstring))
    if corpus._long_enough(doc):  # pylint: disable=protected-access
      named.append((os.path.relpath(path, stdlib), tuple(doc)))
  topics = corpus._pydoc_topics(stdlib)  # pylint: disable=protected-access
  return tuple(named) + tuple((PYDOC_TOPICS, tuple(d)) for d in topics)


# ---------------------------------------------------------------------- writing


def _check_task(task: dict, training: set[str]) -> None:
  """Balanced labels, no training sentence, no sentence in two splits."""
  texts = {}
  for split, rows in task['rows'].items():
    counts = collections.Counter(label for _, label in rows)
    assert len(set(counts.values())) == 1 and set(counts) == set(task['labels']), (
        split, counts)
    texts[split] = {t for texts_, _ in rows for t in texts_}
    assert not texts[split] & training, 'a probe sentence is in the training split'
  for a, b in (('train', 'dev'), ('train', 'test'), ('dev', 'test')):
    assert not texts[a] & texts[b], f'a sentence is in both {a} and {b}'


def _write_task(path: str, name: str, task: dict, seed: int, source: str) -> dict:
  os.makedirs(path)
  baseline = {}
  for split, rows in task['rows'].items():
    lines = ['\t'.join(task['columns'] + ['label'])]
    lines += ['\t'.join(list(texts) + [label]) for texts, label in rows]
    atomic_files.write_text(os.path.join(path, f'{split}.tsv'), '\n'.join(lines) + '\n')
    counts = collections.Counter(label for _, label in rows)
    baseline[split] = max(counts.values()) / len(rows)
  meta = dict(name=name, text_columns=task['columns'], label_column='label',
              labels=task['labels'], metrics=['accuracy'], majority_baseline=baseline,
              sizes={s: len(r) for s, r in task['rows'].items()}, seed=seed,
              source=source, split_by='document', description=task['description'])
  atomic_files.write_text(os.path.join(path, 'task.json'),
                          json.dumps(meta, indent=1) + '\n')
  return meta


def _describe(data_config, n_train: int, n_heldout: int) -> str:
  get = data_config.get
  source = get('source', 'default')
  if source == 'default':
    what = ('default corpus (Python '
            f'{".".join(map(str, sys.version_info[:3]))} standard-library docstrings '
            'and pydoc topics)')
  elif source == 'tfds':
    what = f'tfds:{get("tfds_name")}[{get("tfds_split", "train")}]'
  else:
    what = f'{source}:{get("paths")}'
  split = (f'heldout_split={get("heldout_split")}' if get('heldout_split', '')
           else f'heldout_fraction={get("heldout_fraction", 0.02)}')
  return (f'{what}; held-out documents {n_heldout} of {n_train + n_heldout} '
          f'({split}, data.seed={get("seed", 0)}, '
          f'max_documents={get("max_documents", 0)})')


def _readme(index: dict) -> str:
  lines = ['# Probe suite', '', f'Source: {index["source"]}.', '',
           'Built by `common/data/probe_tasks.py` from held-out documents only; splits '
           'by document; labels balanced. Sizes requested: '
           + ', '.join(f'{s} {n}' for s, n in index['sizes'].items())
           + f'; seed {index["seed"]}.', '',
           '| task | columns | labels | train | dev | test | majority baseline |',
           '|---|---|---|---|---|---|---|']
  for name, t in index['tasks'].items():
    lines.append(f'| {name} | {", ".join(t["text_columns"])} | '
                 f'{", ".join(t["labels"])} | '
                 + ' | '.join(str(t['sizes'][s]) for s in SPLITS)
                 + f' | {t["majority_baseline"]["test"]:.3f} |')
  lines += [''] + [f'Skipped `{name}`: {why}.' for name, why in
                   index['skipped'].items()]
  return '\n'.join(lines) + '\n'
