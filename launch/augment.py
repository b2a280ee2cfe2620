r"""Augments a task's training data as TinyBERT does: writes train_aug.tsv beside train.tsv.

  python -m launch.augment --data_dir=/data/glue_data/SST-2 --task=sst2 \
      --model=/tmp/bert_demo

Every training example is written again with up to `--num_augmented` variants in
which each word is replaced, with probability `--replace_prob`, by one of its
`--candidates` most similar words: the masked LM `--model` predicts them for one-piece
words, its input embeddings give the nearest words for the others (Jiao et al. 2020,
section 3.4; common/data/augmentation.py, common/model/word_candidates.py). The file
keeps train's layout (format, header, labels, every other column), so
`launch.finetune ... --config.train_split=train_aug` trains on it (TinyBERT's task
distillation, experiments/tinybert.py). `--model` is a pretraining workdir or model
directory with an MLM head (BERT, RoBERTa, ALBERT, SpanBERT, a distilled student, an
HF import). An existing train_aug file is never overwritten. Bad input: one `error:`
line, exit status 2.
"""

import time

from absl import app
from absl import flags
from absl import logging

from launch.cli import fail
from launch.cli import parse_flags
from launch.cli import run_main

_DATA_DIR = flags.DEFINE_string('data_dir', None, "The task's directory (train.tsv, ...).")
_TASK = flags.DEFINE_string('task', 'generic', 'A GLUE task (sst2, mnli, ...) or '
                            'generic (task.json in --data_dir, else sentence/label '
                            'columns), as experiments/glue.py.')
_MODEL = flags.DEFINE_string('model', None, 'The masked LM that proposes words: a '
                             'pretraining workdir or a model directory with an MLM head.')
# Paper section 4.1: p 0.4, N 20, K 15.
_NUM_AUGMENTED = flags.DEFINE_integer('num_augmented', 20, 'New variants per example.')
_REPLACE_PROB = flags.DEFINE_float('replace_prob', 0.4, 'Probability of replacing a word.')
_CANDIDATES = flags.DEFINE_integer('candidates', 15, 'Candidate words per word.')
_SEED = flags.DEFINE_integer('seed', 0, 'Seed of the replacement draws.')
_MAX_SEQ_LENGTH = flags.DEFINE_integer('max_seq_length', 128, 'Pieces the masked LM '
                                       'reads of a text (words beyond it get embedding '
                                       'neighbours).')


def augment(data_dir: str, task_name: str, model: str, *, num_augmented: int,
            replace_prob: float, candidates: int, seed: int,
            max_seq_length: int) -> tuple[str, int, int]:
  """Writes the augmented train split; returns (its path, examples read, rows written)."""
  import os  # pylint: disable=g-import-not-at-top
  from common.data import augmentation  # pylint: disable=g-import-not-at-top
  from common.data import glue  # pylint: disable=g-import-not-at-top
  from common.data import tokenizer as tokenizer_lib  # pylint: disable=g-import-not-at-top
  from common.errors import UserError  # pylint: disable=g-import-not-at-top
  from common.interop import hf_checkpoint  # pylint: disable=g-import-not-at-top
  from common.model import word_candidates  # pylint: disable=g-import-not-at-top
  from common.train import finetuning  # pylint: disable=g-import-not-at-top
  from experiments import glue as glue_config  # pylint: disable=g-import-not-at-top

  if num_augmented < 1 or candidates < 1 or not 0 < replace_prob <= 1:
    raise UserError('--num_augmented and --candidates must be at least 1 and '
                    '--replace_prob in (0, 1]')
  if task_name not in glue_config.TASKS:
    raise UserError(f'unknown task {task_name!r}; known tasks: '
                    f'{", ".join(glue_config.TASKS)}')
  if not os.path.isdir(data_dir):
    raise UserError(f'--data_dir {data_dir} does not exist')
  config = glue_config.get_config(task_name)
  config.data_dir = data_dir
  finetuning.check_config(config)
  task = finetuning.load_task(config)
  target = os.path.join(data_dir, task.split(glue.AUGMENTED_TRAIN).files[0])
  if glue.has_split(task, data_dir, glue.AUGMENTED_TRAIN):
    raise UserError(f'{target} already exists; remove it to write it again')
  examples = glue.read_split(task, data_dir, 'train')
  model_config, params, objective, tok_dir, _ = hf_checkpoint.load_ours(model)
  if 'mlm_head' not in params or 'encoder' not in params:
    raise UserError(f'{model} ({objective}) has no masked-LM head named mlm_head: use a '
                    'BERT, RoBERTa, ALBERT, SpanBERT or distilled model (an ELECTRA '
                    'run: export its generator first)')
  tokenizer_path = tokenizer_lib.workdir_tokenizer(tok_dir)
  if not tokenizer_path:
    raise UserError(f'{model} has no tokenizer file')
  table = word_candidates.WordCandidates(
      model_config, params, tokenizer_lib.load_any(tokenizer_path),
      num_candidates=candidates, max_seq_length=max_seq_length)
  table.add([t for e in examples for t in (e.text_a, e.text_b) if t])
  rewrite = augmentation.rewrite_rows(lambda text: table.table[text], num_augmented,
                                      replace_prob, seed)
  path, rows = glue.write_rewritten_train(task, data_dir, rewrite)
  return path, len(examples), rows


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    fail(f'unexpected arguments: {" ".join(argv[1:])}')
  if not _DATA_DIR.value or not _MODEL.value:
    fail('--data_dir and --model are required')
  logging.set_verbosity(logging.WARNING)
  start = time.time()
  path, read, written = run_main(lambda: augment(
      _DATA_DIR.value, _TASK.value, _MODEL.value, num_augmented=_NUM_AUGMENTED.value,
      replace_prob=_REPLACE_PROB.value, candidates=_CANDIDATES.value, seed=_SEED.value,
      max_seq_length=_MAX_SEQ_LENGTH.value))
  print(f'wrote {path}: {written} rows from {read} examples '
        f'({written / max(read, 1):.1f}x) in {time.time() - start:.0f} s')


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
