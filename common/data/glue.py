"""Fine-tuning task data in GLUE's layout: task specs, reading, encoding, submissions.

One job: turn the files of a sentence(-pair) classification or regression task into
examples and fixed-size arrays, and write test predictions as GLUE's server wants them.
Pure Python and numpy; nothing is downloaded.

The nine GLUE tasks are read from the `glue_data/<TASK>/` directories that the standard
download_glue_data.py produces, at the columns the reference processors read
(google-research/bert run_classifier.py, transformers' data/processors/glue.py):

- CoLA: train/dev have NO header: source, label (0/1), mark, sentence; test: index,
  sentence.
- SST-2: sentence, label (0/1); test: index, sentence.
- MRPC: Quality (0/1), #1 ID, #2 ID, #1 String, #2 String; test: index, then the same.
- QQP: id, qid1, qid2, question1, question2, is_duplicate (0/1); test: id, question1,
  question2.
- STS-B: index, genre, filename, year, old_index, source1, source2, sentence1,
  sentence2, score (0..5); test without the score.
- MNLI: index, promptID, pairID, genre, 4 parses, sentence1, sentence2, ...,
  gold_label last (contradiction, entailment, neutral); test: the first ten.
- QNLI: index, question, sentence, label; RTE and WNLI: index, sentence1, sentence2,
  label (entailment/not_entailment; WNLI 0/1); test without the label.

Files are tab-separated and NOT quoted (sentences contain lone `"`), so lines are split
on tabs only; MRPC's train/dev start with a UTF-8 byte-order mark, which is dropped.
QQP's train file has rows with too few columns: they are skipped and counted, as the
reference processors do; in every other file a short row is an error. MNLI's two dev
files are both evaluated; the diagnostic set (AX) is an optional MNLI split read from
`diagnostic.tsv` or `AX.tsv` in the MNLI directory, or `../diagnostic/diagnostic.tsv`.

A generic task (`generic_task`) reads train/dev/test.<ext> in TSV (tab-separated, not
quoted, with a header), CSV (quoted, with a header) or JSONL (one object per line) with
named text and label columns.

Encoding follows run_classifier.py's `convert_single_example`: `[CLS] A [SEP]` or
`[CLS] A [SEP] B [SEP]` (segment ids 0, then 1 for B and its [SEP]), the longer text
losing its last token until the pair fits (`_truncate_seq_pair`, no randomness),
built with packing's helpers so fine-tuning inputs look exactly like pretraining pairs.
RoBERTa's models (one token type) take `pair_format='roberta'`:
`<s> A </s></s> B </s>`, all segment ids 0, as fairseq and transformers build them.
"""

from collections.abc import Callable, Mapping, Sequence
import csv
import dataclasses
import io
import json
import math
import os

from absl import logging
import numpy as np

from common import atomic_files
from common.data import corpus
from common.data import packing
from common.errors import UserError

METRICS = ('accuracy', 'f1', 'matthews', 'pearson', 'spearman')
FILE_FORMATS = ('tsv', 'csv', 'jsonl')
PAIR_FORMATS = ('bert', 'roberta')
SUBMISSION_HEADER = 'index\tprediction\n'
# The train split augmented by launch.augment (TinyBERT, common/data/augmentation.py):
# train_aug.tsv beside train.tsv, as the reference's data_augmentation.py names it.
AUGMENTED_TRAIN = 'train_aug'

Column = int | str  # 0-based index (GLUE's files, negative from the end) or a name.


@dataclasses.dataclass(frozen=True)
class Example:
  """One row of a task file.

  Attributes:
    text_a: the first (or only) text.
    text_b: the second text of a pair task, else None.
    label: class index into `TaskSpec.labels`, a float score (regression), or None
      (unlabeled test rows).
    index: the row's id: its index column (the id GLUE's submissions use), else its
      0-based position among the file's data rows.
  """
  text_a: str
  text_b: str | None
  label: int | float | None
  index: str


@dataclasses.dataclass(frozen=True)
class SplitSpec:
  """One file of a task and where its fields are.

  Attributes:
    name: 'train', 'dev', 'test', 'dev_matched', 'diagnostic', ...
    files: paths relative to the task directory; the first that exists is read.
    text_columns: one or two columns (text_a, text_b).
    label_column: the label's column; None for unlabeled files.
    index_column: the row id's column; None (or a name the file lacks) for the
      row's position.
    header: whether the first line names the columns (skipped when columns are
      indices).
    submission: a test split's file name in a GLUE submission, else None.
    optional: the file may be absent (`has_split`): AX, a generic task's test.
    label_required: False where the label column may be missing (a generic test).
  """
  name: str
  files: tuple[str, ...]
  text_columns: tuple[Column, ...]
  label_column: Column | None = None
  index_column: Column | None = None
  header: bool = True
  submission: str | None = None
  optional: bool = False
  label_required: bool = True


@dataclasses.dataclass(frozen=True)
class TaskSpec:
  """A fine-tuning task: its files, labels, metrics and submission format.

  Attributes:
    name: 'cola', 'sst2', ... or a generic task's name.
    glue_dir: GLUE's directory name ('CoLA', 'SST-2', ...); None for a generic task.
    text_columns: names of the one or two texts (('sentence',), ('question1',
      'question2'), ...), for messages and configs.
    labels: class names in GLUE's order (an example's label is an index into them);
      None for regression, or for a generic task whose labels are read from its
      train split (`resolve_labels`).
    metrics: what evaluation reports, names from METRICS.
    main_metrics: the mean of these picks the best checkpoint; it is the task's
      GLUE score (MRPC, QQP: F1 and accuracy; STS-B: Pearson and Spearman).
    splits: every file of the task.
    dev_splits: the splits evaluated during fine-tuning (MNLI: matched and
      mismatched).
    test_splits: the splits predicted for a submission.
    regression: a float score instead of classes.
    score_range: where predictions are clipped on writing (STS-B: 0..5).
    file_format: 'tsv', 'csv' or 'jsonl'.
    skip_short_rows: skip (and count) rows with too few columns instead of failing
      (QQP only, as the reference processors).
  """
  name: str
  glue_dir: str | None
  text_columns: tuple[str, ...]
  labels: tuple[str, ...] | None
  metrics: tuple[str, ...]
  main_metrics: tuple[str, ...]
  splits: tuple[SplitSpec, ...]
  dev_splits: tuple[str, ...]
  test_splits: tuple[str, ...]
  regression: bool = False
  score_range: tuple[float, float] | None = None
  file_format: str = 'tsv'
  skip_short_rows: bool = False

  @property
  def num_labels(self) -> int:
    """Output size of the task head: the number of classes, 1 for regression."""
    if self.regression:
      return 1
    if self.labels is None:
      raise UserError(f'task {self.name}: labels are not known yet; call '
                      'resolve_labels(task, data_dir) first')
    return len(self.labels)

  @property
  def is_pair(self) -> bool:
    return len(self.text_columns) == 2

  def split(self, name: str) -> SplitSpec:
    for spec in self.splits:
      if spec.name == name:
        return spec
    if name == AUGMENTED_TRAIN:  # train.tsv's layout, in train_aug.tsv.
      train = self.split('train')
      return dataclasses.replace(train, name=name, files=tuple(
          '{}_aug{}'.format(*os.path.splitext(f)) for f in train.files))
    raise UserError(f'task {self.name} has no split {name!r}; its splits: '
                    f'{", ".join(s.name for s in self.splits)}')

  def score(self, metrics: Mapping[str, float]) -> float:
    """The mean of `main_metrics` in `metrics`: what picks the best checkpoint."""
    return float(np.mean([metrics[m] for m in self.main_metrics]))


class Examples(list):
  """The examples of one split (a list), with where they came from.

  Attributes:
    path: the file read.
    skipped_rows: malformed rows skipped (QQP only; 0 elsewhere).
  """

  def __init__(self, examples: Sequence[Example], path: str, skipped_rows: int = 0):
    super().__init__(examples)
    self.path = path
    self.skipped_rows = skipped_rows


# ---------------------------------------------------------------------------
# The tasks.


def _glue_splits(train_dev: dict, test: dict, submission: str | dict[str, str],
                 dev: tuple[str, ...] = ('dev',)) -> tuple[SplitSpec, ...]:
  """train + dev splits with one layout, test splits (split -> submission file name,
  or the submission file of the one 'test') with another; files are <split>.tsv."""
  if isinstance(submission, str):
    submission = {'test': submission}
  return (tuple(SplitSpec(name, (f'{name}.tsv',), **train_dev)
                for name in ('train', *dev))
          + tuple(SplitSpec(name, (f'{name}.tsv',), submission=sub, **test)
                  for name, sub in submission.items()))


def _glue(name, glue_dir, text_columns, labels, metrics, main_metrics, splits,
          **kwargs) -> TaskSpec:
  return TaskSpec(
      name=name, glue_dir=glue_dir, text_columns=text_columns, labels=labels,
      metrics=metrics, main_metrics=main_metrics, splits=splits,
      dev_splits=tuple(s.name for s in splits
                       if s.name.startswith('dev') and s.label_column is not None),
      test_splits=tuple(s.name for s in splits if s.submission), **kwargs)


_BINARY = ('0', '1')
_NLI2 = ('entailment', 'not_entailment')
_PAIR_AT_1 = dict(text_columns=(1, 2), label_column=-1, index_column=0)
_PAIR_TEST_AT_1 = dict(text_columns=(1, 2), index_column=0)
_AX = SplitSpec('diagnostic', ('diagnostic.tsv', 'AX.tsv',
                               os.path.join('..', 'diagnostic', 'diagnostic.tsv')),
                text_columns=(1, 2), index_column=0, submission='AX.tsv',
                optional=True)

GLUE_TASKS: dict[str, TaskSpec] = {t.name: t for t in (
    _glue('cola', 'CoLA', ('sentence',), _BINARY, ('matthews',), ('matthews',),
          _glue_splits(dict(text_columns=(3,), label_column=1, header=False),
                       dict(text_columns=(1,), index_column=0), 'CoLA.tsv')),
    _glue('sst2', 'SST-2', ('sentence',), _BINARY, ('accuracy',), ('accuracy',),
          _glue_splits(dict(text_columns=(0,), label_column=1),
                       dict(text_columns=(1,), index_column=0), 'SST-2.tsv')),
    _glue('mrpc', 'MRPC', ('sentence1', 'sentence2'), _BINARY, ('accuracy', 'f1'),
          ('f1', 'accuracy'),
          _glue_splits(dict(text_columns=(3, 4), label_column=0),
                       dict(text_columns=(3, 4), index_column=0), 'MRPC.tsv')),
    _glue('qqp', 'QQP', ('question1', 'question2'), _BINARY, ('accuracy', 'f1'),
          ('f1', 'accuracy'),
          _glue_splits(dict(text_columns=(3, 4), label_column=5, index_column=0),
                       dict(text_columns=(1, 2), index_column=0), 'QQP.tsv'),
          skip_short_rows=True),
    _glue('stsb', 'STS-B', ('sentence1', 'sentence2'), None,
          ('pearson', 'spearman'), ('pearson', 'spearman'),
          _glue_splits(dict(text_columns=(7, 8), label_column=-1, index_column=0),
                       dict(text_columns=(7, 8), index_column=0), 'STS-B.tsv'),
          regression=True, score_range=(0.0, 5.0)),
    _glue('mnli', 'MNLI', ('sentence1', 'sentence2'),
          ('contradiction', 'entailment', 'neutral'), ('accuracy',), ('accuracy',),
          _glue_splits(dict(text_columns=(8, 9), label_column=-1, index_column=0),
                       dict(text_columns=(8, 9), index_column=0),
                       {'test_matched': 'MNLI-m.tsv',
                        'test_mismatched': 'MNLI-mm.tsv'},
                       dev=('dev_matched', 'dev_mismatched')) + (_AX,)),
    _glue('qnli', 'QNLI', ('question', 'sentence'), _NLI2, ('accuracy',),
          ('accuracy',), _glue_splits(_PAIR_AT_1, _PAIR_TEST_AT_1, 'QNLI.tsv')),
    _glue('rte', 'RTE', ('sentence1', 'sentence2'), _NLI2, ('accuracy',),
          ('accuracy',), _glue_splits(_PAIR_AT_1, _PAIR_TEST_AT_1, 'RTE.tsv')),
    _glue('wnli', 'WNLI', ('sentence1', 'sentence2'), _BINARY, ('accuracy',),
          ('accuracy',), _glue_splits(_PAIR_AT_1, _PAIR_TEST_AT_1, 'WNLI.tsv')),
)}


def generic_task(name: str = 'generic', text_columns: str | Sequence[str] = 'text_a',
                 label_column: str = 'label', labels: Sequence[str] | None = None,
                 regression: bool = False, file_format: str = 'tsv', *,
                 metrics: Sequence[str] | None = None,
                 main_metrics: Sequence[str] | None = None,
                 data_dir: str | None = None) -> TaskSpec:
  """A task of your own: train/dev/test.<ext> files with named columns.

  TSV files are tab-separated and not quoted, CSV files are quoted (Python's csv);
  both start with a header naming the columns. JSONL files hold one object per line.
  test.<ext> is optional and may lack the label column; an `index` column (or key)
  gives the rows' ids, else their position.

  Args:
    name: the task's name (the submission file is `<name>.tsv`).
    text_columns: one name (single text) or two (a pair).
    label_column: the label's column.
    labels: the class names, in the order of the model's outputs. None: the sorted
      distinct labels of the train split (numerically when all are numbers), read
      now if `data_dir` is given, else on the first `read_split`/`resolve_labels`.
    regression: float targets instead of classes.
    file_format: 'tsv', 'csv' or 'jsonl' (the files' extension).
    metrics: what to report [accuracy; pearson and spearman for regression].
    main_metrics: what picks the best checkpoint (their mean) [all of `metrics`].
    data_dir: where the files are, to infer `labels` from.

  Returns:
    The task spec.

  Raises:
    UserError: bad column names, labels, metrics or format.
  """
  if isinstance(text_columns, str):
    text_columns = (text_columns,)
  text_columns = tuple(text_columns)
  if (len(text_columns) not in (1, 2) or len(set(text_columns)) != len(text_columns)
      or not all(isinstance(c, str) and c for c in text_columns)):
    raise UserError(f'task {name}: text_columns must be one or two distinct column '
                    f'names, got {text_columns!r}')
  if not isinstance(label_column, str) or not label_column:
    raise UserError(f'task {name}: label_column must be a column name, got '
                    f'{label_column!r}')
  if label_column in text_columns:
    raise UserError(f'task {name}: label_column {label_column!r} is also a text column')
  if file_format not in FILE_FORMATS:
    raise UserError(f'task {name}: unknown file_format {file_format!r}; valid: '
                    f'{", ".join(FILE_FORMATS)}')
  if regression and labels is not None:
    raise UserError(f'task {name}: a regression task has no labels')
  if labels is not None:
    labels = tuple(str(label) for label in labels)
    if len(labels) < 2 or len(set(labels)) != len(labels):
      raise UserError(f'task {name}: labels must be at least two distinct names, '
                      f'got {labels!r}')
  metrics = tuple(metrics or (('pearson', 'spearman') if regression else ('accuracy',)))
  main_metrics = tuple(main_metrics or metrics)
  unknown = sorted(set(metrics + main_metrics) - set(METRICS))
  if unknown or not set(main_metrics) <= set(metrics):
    raise UserError(f'task {name}: metrics must be among {", ".join(METRICS)} and '
                    f'main_metrics among the metrics; got metrics {metrics}, '
                    f'main_metrics {main_metrics}')
  columns = dict(text_columns=text_columns, label_column=label_column,
                 index_column='index')
  splits = (SplitSpec('train', (f'train.{file_format}',), **columns),
            SplitSpec('dev', (f'dev.{file_format}',), **columns),
            SplitSpec('test', (f'test.{file_format}',), **columns,
                      submission=f'{name}.tsv', optional=True, label_required=False))
  task = TaskSpec(name=name, glue_dir=None, text_columns=text_columns, labels=labels,
                  metrics=metrics, main_metrics=main_metrics, splits=splits,
                  dev_splits=('dev',), test_splits=('test',), regression=regression,
                  file_format=file_format)
  return resolve_labels(task, data_dir) if data_dir is not None else task


def get_task(name: str, /, **generic_options) -> TaskSpec:
  """The spec of a GLUE task (any spelling: 'SST-2', 'sst2', 'STS-B') or 'generic'.

  Args:
    name: a GLUE task name or 'generic' (positional only, so that a generic task's
      own `name=` can be among the options).
    **generic_options: `generic_task`'s arguments, for 'generic' only.

  Raises:
    UserError: an unknown task, or options given to a GLUE task.
  """
  key = str(name).lower().replace('-', '').replace('_', '')
  if key == 'generic':
    return generic_task(**generic_options)
  if key not in GLUE_TASKS:
    raise UserError(f'unknown task {name!r}; known: '
                    f'{", ".join([*GLUE_TASKS, "generic"])}')
  if generic_options:
    raise UserError(f'task {name} takes no options (got '
                    f'{", ".join(sorted(generic_options))}); only generic does')
  return GLUE_TASKS[key]


# ---------------------------------------------------------------------------
# Reading.


def write_rewritten_train(task: TaskSpec, data_dir: str,
                          rewrite: Callable[[list[str]], list[list[str]]]) -> tuple[str, int]:
  """Writes the train split again as `AUGMENTED_TRAIN`, each row once per text tuple
  `rewrite(texts)` returns, in the train file's own layout (format, header, every
  other column as it was): what `launch.augment` writes and `train_split` reads.

  Args:
    rewrite: a row's texts (text_a[, text_b]) -> the texts of each row to write.

  Returns:
    (the file written, its number of rows). UserError if that file already exists.
  """
  source = split_path(task, data_dir, 'train')
  spec = task.split(AUGMENTED_TRAIN)
  target = os.path.join(data_dir, spec.files[task.split('train').files.index(
      os.path.relpath(source, data_dir))])
  if os.path.exists(target):
    raise UserError(f'{target} already exists; remove it to write it again')
  out, rows = io.StringIO(), 0
  if task.file_format == 'jsonl':
    for _, obj in corpus.jsonl_records(source):
      texts = [obj.get(c) for c in spec.text_columns]
      for new in rewrite(texts):
        out.write(json.dumps({**obj, **dict(zip(spec.text_columns, new))}) + '\n')
        rows += 1
  else:
    writer = csv.writer(out, lineterminator='\n') if task.file_format == 'csv' else None
    write = (writer.writerow if writer else
             lambda fields: out.write('\t'.join(fields) + '\n'))
    lines = _lines(source, task.file_format)
    columns = spec.text_columns
    if spec.header:
      header = next(lines)[1]
      write(header)
      if isinstance(columns[0], str):
        columns = _columns_by_name(source, header, spec)[0]
    for _, fields in lines:
      if len(fields) <= max(columns):
        write(fields)  # Malformed rows stay as they were, for the reader to judge.
        continue
      for new in rewrite([fields[c] for c in columns]):
        fields = list(fields)
        for c, text in zip(columns, new):
          fields[c] = text
        write(fields)
        rows += 1
  atomic_files.write_text(target, out.getvalue())
  return target, rows


def split_path(task: TaskSpec, data_dir: str, split: str) -> str:
  """The file of `split` in the task directory; UserError naming it if missing."""
  if not os.path.isdir(data_dir):
    raise UserError(f'task {task.name}: data directory {data_dir} does not exist')
  spec = task.split(split)
  paths = [os.path.join(data_dir, f) for f in spec.files]
  for path in paths:
    if os.path.isfile(path):
      return path
  hint = (' (write it with python -m launch.augment)' if split == AUGMENTED_TRAIN
          else '')
  raise UserError(f'task {task.name}: no {split} file: {" or ".join(paths)} '
                  f'does not exist{hint}')


def has_split(task: TaskSpec, data_dir: str, split: str) -> bool:
  """Whether the split's file exists (for the optional ones: AX, a generic test)."""
  spec = task.split(split)
  return any(os.path.isfile(os.path.join(data_dir, f)) for f in spec.files)


def resolve_labels(task: TaskSpec, data_dir: str) -> TaskSpec:
  """The task with its labels read from the train split, when they were not given."""
  if task.regression or task.labels is not None:
    return task
  rows, path = _raw_rows(task, data_dir, 'train')
  found = {label for _, _, _, label, _ in rows.examples if label}
  if len(found) < 2:
    raise UserError(f'{path}: a classification task needs at least two distinct '
                    f'labels, found {sorted(found)}')
  return dataclasses.replace(task, labels=tuple(sorted(found, key=_label_order)))


def read_split(task: TaskSpec, data_dir: str, split: str) -> Examples:
  """The examples of one split of a task.

  Args:
    task: the task spec.
    data_dir: the task's directory (for GLUE: `glue_data/<TASK>`).
    split: one of the task's split names ('train', 'dev', 'test', 'dev_matched', ...).

  Returns:
    `Examples` (a list of `Example`) in file order.

  Raises:
    UserError: (one line, naming the file and 1-based line where there is one) a
      missing directory or file, a file without examples or not UTF-8, a row with
      too few columns (QQP: skipped and counted instead), a label outside the task's
      labels, a score that is not a number.
  """
  if task.labels is None and not task.regression:
    task = resolve_labels(task, data_dir)
  rows, path = _raw_rows(task, data_dir, split)
  examples = []
  label_ids = {label: i for i, label in enumerate(task.labels or ())}
  for line, text_a, text_b, label, index in rows.examples:
    if label is not None:
      if task.regression:
        label = _score(label, path, line)
      elif label in label_ids:
        label = label_ids[label]
      else:
        raise UserError(f'{path}:{line}: label {label!r} is not one of the task\'s '
                        f'labels {list(task.labels)}')
    examples.append(Example(text_a, text_b, label, index))
  if rows.skipped:
    logging.warning('%s: skipped %d malformed rows (too few columns), as the '
                    'reference processors do', path, rows.skipped)
  return Examples(examples, path, rows.skipped)


@dataclasses.dataclass
class _Rows:
  """A file's rows as (line, text_a, text_b, label string or None, index)."""
  examples: list
  skipped: int


def _raw_rows(task: TaskSpec, data_dir: str, split: str) -> tuple[_Rows, str]:
  spec = task.split(split)
  path = split_path(task, data_dir, split)
  try:
    if task.file_format == 'jsonl':
      rows = _jsonl_rows(path, spec)
    else:
      rows = _table_rows(path, spec, task.file_format, task.skip_short_rows)
  except UnicodeDecodeError as e:
    raise UserError(f'{path} is not UTF-8 text ({e.reason} at byte {e.start})') from e
  except csv.Error as e:
    raise UserError(f'{path}: not a readable CSV file: {e}') from e
  if not rows.examples:
    skipped = f' ({rows.skipped} malformed rows skipped)' if rows.skipped else ''
    raise UserError(f'{path} is empty: no examples{skipped}')
  return rows, path


def _lines(path: str, file_format: str):
  """(1-based line, fields) of a TSV (split on tabs only) or CSV (quoted) file."""
  # utf-8-sig drops the byte-order mark MRPC's train/dev files start with;
  # newline='\n' keeps a stray '\r' inside a sentence from splitting its row.
  if file_format == 'csv':
    with open(path, encoding='utf-8-sig', newline='') as f:
      reader = csv.reader(f)
      start = 1
      for fields in reader:
        if fields:
          yield start, fields
        start = reader.line_num + 1
    return
  with open(path, encoding='utf-8-sig', newline='\n') as f:
    for line_no, line in enumerate(f, 1):
      line = line[:-1] if line.endswith('\n') else line
      line = line[:-1] if line.endswith('\r') else line
      if line:
        yield line_no, line.split('\t')


def _table_rows(path: str, spec: SplitSpec, file_format: str,
                skip_short_rows: bool) -> _Rows:
  lines = _lines(path, file_format)
  named = isinstance(spec.text_columns[0], str)
  text, label, index = spec.text_columns, spec.label_column, spec.index_column
  if spec.header:
    header = next(lines, None)
    if header is None:
      return _Rows([], 0)
    if named:
      text, label, index = _columns_by_name(path, header[1], spec)
  used = [c for c in (*text, label, index) if c is not None]
  # A negative column (the label, last) needs one column after the others.
  min_columns = max([c for c in used if c >= 0], default=-1) + 1 + any(
      c < 0 for c in used)
  rows, skipped = [], 0
  for n, (line, fields) in enumerate(lines):
    if len(fields) < min_columns:
      if skip_short_rows:
        skipped += 1
        continue
      hint = (' (split on tabs only; fields are not quoted)'
              if file_format == 'tsv' else '')
      raise UserError(f'{path}:{line}: {len(fields)} columns, expected at least '
                      f'{min_columns}{hint}')
    label_text = None if label is None else fields[label].strip()
    rows.append((line, fields[text[0]], fields[text[1]] if len(text) > 1 else None,
                 label_text or (label_text if spec.label_required else None),
                 str(n) if index is None else fields[index]))
  return _Rows(rows, skipped)


def _columns_by_name(path: str, header: list[str], spec: SplitSpec):
  """Named columns -> indices; a missing optional label or index becomes None."""
  header = [h.strip() for h in header]
  positions = {}
  for i, h in enumerate(header):
    positions.setdefault(h, i)
  wanted = list(spec.text_columns) + ([spec.label_column] if spec.label_required
                                      else [])
  missing = [c for c in wanted if c not in positions]
  if missing:
    raise UserError(f'{path}: no column {missing[0]!r} in its header (columns: '
                    f'{", ".join(header)})')
  return (tuple(positions[c] for c in spec.text_columns),
          positions.get(spec.label_column), positions.get(spec.index_column))


def _jsonl_rows(path: str, spec: SplitSpec) -> _Rows:
  rows = []
  for line_no, obj in corpus.jsonl_records(path):
    wanted = list(spec.text_columns) + ([spec.label_column] if spec.label_required
                                        else [])
    missing = [c for c in wanted if c not in obj]
    if missing:
      raise UserError(f'{path}:{line_no}: no field {missing[0]!r}')
    texts = [obj[c] for c in spec.text_columns]
    if not isinstance(texts[0], str) or not all(
        t is None or isinstance(t, str) for t in texts[1:]):
      raise UserError(f'{path}:{line_no}: the text fields '
                      f'{list(spec.text_columns)} must be strings')
    label = obj.get(spec.label_column)
    if label is not None and not isinstance(label, str):
      label = json.dumps(label)  # 1 -> '1', true -> 'true', as written.
    index = obj.get(spec.index_column)
    label = None if label is None else label.strip()
    rows.append((line_no, texts[0], texts[1] if len(texts) > 1 else None,
                 label or (label if spec.label_required else None),
                 str(len(rows)) if index is None else str(index)))
  return _Rows(rows, 0)


def _score(text: str, path: str, line: int) -> float:
  try:
    value = float(text)
  except ValueError:
    value = math.nan
  if not math.isfinite(value):
    raise UserError(f'{path}:{line}: score {text!r} is not a number')
  return value


def _label_order(label: str):
  """Numbers in numeric order before other labels in string order."""
  try:
    value = float(label)
  except ValueError:
    value = math.nan
  return (0, value, label) if math.isfinite(value) else (1, 0.0, label)


# ---------------------------------------------------------------------------
# Encoding.


def truncate_seq_pair(a: np.ndarray, b: np.ndarray,
                      max_num_tokens: int) -> tuple[np.ndarray, np.ndarray]:
  """run_classifier.py's `_truncate_seq_pair`: the longer loses its LAST token until
  the pair fits (B on a tie). Deterministic, unlike pretraining's
  `packing._truncate_pair`, which cuts a random end; the lengths are the same."""
  la, lb = len(a), len(b)
  excess = la + lb - max_num_tokens
  if excess > 0:
    d = min(excess, abs(la - lb))  # First the longer down to the other's length,
    if la > lb:
      la -= d
    else:
      lb -= d
    excess -= d
    lb -= (excess + 1) // 2  # then both in turn, B first.
    la -= excess // 2
  return a[:la], b[:lb]


def encode(examples: Sequence[Example], tokenizer, max_seq_length: int, *,
           pair_format: str = 'bert',
           regression: bool | None = None) -> dict[str, np.ndarray]:
  """Token ids and labels of examples, padded to `max_seq_length`.

  Args:
    examples: from `read_split`.
    tokenizer: our sentencepiece `Tokenizer` or an `HFTokenizer` (`encode` without
      specials, `cls_id`, `sep_id`, `pad_id`, `mask_id`).
    max_seq_length: L, specials included (>= 3; >= 5 for pairs, 6 with 'roberta').
    pair_format: 'bert' (`[CLS] A [SEP] B [SEP]`, segment ids 0/1) or 'roberta'
      (`<s> A </s></s> B </s>`, all segment ids 0, for one-token-type models).
      Single texts are `[CLS] A [SEP]` either way. An empty text B counts as no B, as
      in run_classifier.py.
    regression: float labels; None infers it from the labels (any float).

  Returns:
    `input_ids`, `segment_ids`, `attention_mask` int32 [N, L] (pad_id, 0 and 0 after
    the tokens); `label` [N] int32 (class index) or float32 (score), 0 where
    unlabeled; `example_weight` [N] float32, 1 (0 marks padding rows, see
    `pad_to_batches`).
  """
  if pair_format not in PAIR_FORMATS:
    raise UserError(f'unknown pair_format {pair_format!r}; valid: '
                    f'{", ".join(PAIR_FORMATS)}')
  pair_specials = 3 if pair_format == 'bert' else 4
  has_pairs = any(e.text_b is not None for e in examples)
  minimum = pair_specials + 2 if has_pairs else 3
  if (not isinstance(max_seq_length, (int, np.integer)) or isinstance(
      max_seq_length, bool) or max_seq_length < minimum):
    raise UserError(f'max_seq_length must be an integer >= {minimum}, got '
                    f'{max_seq_length!r}')
  if regression is None:
    regression = any(isinstance(e.label, float) for e in examples)
  specials = packing.SpecialIds(pad=tokenizer.pad_id, cls=tokenizer.cls_id,
                                sep=tokenizer.sep_id, mask=tokenizer.mask_id)
  ids_a = _encode_texts(tokenizer, [e.text_a for e in examples])
  ids_b = iter(_encode_texts(tokenizer, [e.text_b for e in examples
                                         if e.text_b is not None]))
  n, length = len(examples), int(max_seq_length)
  out = {key: np.zeros((n, length), np.int32)
         for key in ('input_ids', 'segment_ids', 'attention_mask')}
  out['label'] = np.zeros(n, np.float32 if regression else np.int32)
  out['example_weight'] = np.ones(n, np.float32)
  for i, (example, a) in enumerate(zip(examples, ids_a)):
    b = next(ids_b) if example.text_b is not None else a[:0]
    if len(b):
      a, b = truncate_seq_pair(a, b, length - pair_specials)
      if pair_format == 'bert':
        # pylint: disable-next=protected-access
        row = packing._segments_example(a, b, specials)
      else:
        ids = np.concatenate([[specials.cls], a, [specials.sep, specials.sep], b,
                              [specials.sep]]).astype(np.int32)
        row = {'input_ids': ids, 'segment_ids': np.zeros_like(ids)}
    else:
      # pylint: disable-next=protected-access
      row = packing._single_segment([a[:length - 2]], specials)
    row = packing.pad_example(row, length, specials.pad)
    for key in ('input_ids', 'segment_ids', 'attention_mask'):
      out[key][i] = row[key]
    if example.label is not None:
      if not regression and not isinstance(example.label, (int, np.integer)):
        raise UserError(f'example {example.index}: label {example.label!r} is not a '
                        'class index (a regression task needs regression=True)')
      out['label'][i] = example.label
  return out


def _encode_texts(tokenizer, texts: list[str]) -> list[np.ndarray]:
  if not texts:
    return []
  if hasattr(tokenizer, 'encode_batch'):
    return list(tokenizer.encode_batch(texts))
  return [tokenizer.encode(t) for t in texts]


def pad_to_batches(arrays: Mapping[str, np.ndarray],
                   batch_size: int) -> list[dict[str, np.ndarray]]:
  """`encode`'s arrays cut into batches of exactly `batch_size` rows.

  The last batch is filled with padding rows of `example_weight` 0 (copies of the
  first example, label 0), so every example is seen exactly once and metrics that
  weight by `example_weight` ignore the padding; predictions of the first N rows
  of the concatenated batches are the examples' in order.
  """
  if (not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool)
      or batch_size < 1):
    raise UserError(f'batch_size must be a positive integer, got {batch_size!r}')
  if 'example_weight' not in arrays:
    raise UserError('pad_to_batches needs the arrays of encode (no example_weight)')
  n = len(arrays['example_weight'])
  if any(len(v) != n for v in arrays.values()):
    raise UserError('pad_to_batches: arrays of different lengths '
                    f'{ {k: len(v) for k, v in arrays.items()} }')
  batches = []
  for start in range(0, n, batch_size):
    batch = {k: np.asarray(v[start:start + batch_size]) for k, v in arrays.items()}
    short = batch_size - len(batch['example_weight'])
    if short:
      for key, value in batch.items():
        fill = np.repeat(np.asarray(arrays[key][:1]), short, axis=0)
        if key in ('example_weight', 'label'):
          fill = np.zeros_like(fill)
        batch[key] = np.concatenate([value, fill])
    batches.append(batch)
  return batches


# ---------------------------------------------------------------------------
# Submissions.


def write_predictions(task: TaskSpec, split: str, indices: Sequence[str] | None,
                      predictions, out_dir: str) -> str:
  """Writes a test split's predictions as GLUE's server reads them.

  The file is `<out_dir>/<submission name>` (CoLA.tsv, MNLI-m.tsv, AX.tsv, ...):
  a header `index<TAB>prediction`, then one line per example. Classes are written as
  the task's label names (entailment, ... for MNLI/QNLI/RTE; 0/1 for CoLA, SST-2,
  MRPC, QQP, WNLI), scores as floats clipped to the task's range (STS-B: [0, 5]).

  Args:
    task: the task spec.
    split: a split with a submission name (`task.test_splits`).
    indices: the examples' `index`, in order; None for 0..N-1.
    predictions: class ids [N] (or logits [N, C], argmax taken) or scores [N].
    out_dir: where to write (created if needed).

  Returns:
    The path written (atomically).
  """
  spec = task.split(split)
  if not spec.submission:
    raise UserError(f'task {task.name}: split {split} is not a test split '
                    f'(test splits: {", ".join(task.test_splits)})')
  predictions = np.asarray(predictions)
  if indices is None:
    indices = [str(i) for i in range(len(predictions))]
  if not task.regression and predictions.ndim == 2:
    predictions = predictions.argmax(axis=-1)
  if task.regression and predictions.ndim == 2 and predictions.shape[1] == 1:
    predictions = predictions[:, 0]
  if predictions.ndim != 1 or len(predictions) != len(indices):
    raise UserError(f'task {task.name} {split}: {len(indices)} indices but '
                    f'predictions of shape {predictions.shape}')
  if task.regression:
    values = predictions.astype(np.float64)
    if task.score_range:
      values = np.clip(values, *task.score_range)
    lines = [f'{v:.4f}' for v in values]
  else:
    task.num_labels  # pylint: disable=pointless-statement  # Raises if unknown.
    labels = task.labels
    if (not np.issubdtype(predictions.dtype, np.integer)
        or (len(predictions) and not 0 <= predictions.min() <= predictions.max()
            < len(labels))):
      raise UserError(f'task {task.name} {split}: predictions must be class ids in '
                      f'[0, {len(labels)})')
    lines = [labels[p] for p in predictions]
  os.makedirs(out_dir, exist_ok=True)
  path = os.path.join(out_dir, spec.submission)
  atomic_files.write_text(path, SUBMISSION_HEADER + ''.join(
      f'{i}\t{p}\n' for i, p in zip(indices, lines)))
  return path
