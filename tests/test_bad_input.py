"""Bad input ends with one clear line and a non-zero exit; the workdir is untouched."""

import hashlib
import os
import subprocess
import sys

import pytest

from common.train import pretraining
from common.errors import UserError
from tests.conftest import REPO, tiny_config


def run_train(*args: str, workdir: str) -> subprocess.CompletedProcess:
  return subprocess.run(
      [sys.executable, '-m', 'launch.train', f'--workdir={workdir}', *args],
      cwd=REPO, capture_output=True, text=True, timeout=300,
      env={**os.environ, 'JAX_PLATFORMS': 'cpu'})


def snapshot(directory: str) -> dict[str, str]:
  out = {}
  for root, _, files in os.walk(directory):
    for name in files:
      path = os.path.join(root, name)
      with open(path, 'rb') as f:
        out[os.path.relpath(path, directory)] = hashlib.sha256(f.read()).hexdigest()
  return out


@pytest.mark.parametrize('args, message', [
    (['--config=experiments/nonexistent.py:demo'], 'nonexistent.py'),
    (['--config=experiments/bert.py:huge'], "unknown size 'huge'"),
    (['--config=experiments/bert.py:demo', '--config.train.stepz=5'], 'stepz'),
    (['--config=experiments/bert.py:demo', '--config.data.max_seq_length=1024'],
     'longer than the position table'),
    (['--config=experiments/bert.py:demo', '--config.data.source=text',
      '--config.data.paths=/nonexistent/corpus.txt'], '/nonexistent/corpus.txt'),
    (['--config=experiments/bert.py:demo', '--config.data.source=wikipedia'],
     'wikipedia'),
])
def test_cli_reports_one_line_and_fails(tmp_path, args, message):
  result = run_train(*args, workdir=str(tmp_path / 'wd'))
  assert result.returncode != 0
  lines = [l for l in result.stderr.splitlines() if l.strip()]
  assert len(lines) == 1, result.stderr
  assert message in lines[0], lines[0]


def test_empty_corpus_is_refused(tmp_path):
  empty = tmp_path / 'empty.txt'
  empty.write_text('\n\n')
  result = run_train('--config=experiments/roberta.py:demo', '--config.data.source=text',
                     f'--config.data.paths={empty}', workdir=str(tmp_path / 'wd'))
  assert result.returncode != 0
  assert 'empty' in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_vocab_mismatch_on_resume_keeps_the_workdir(tmp_path):
  workdir = str(tmp_path / 'wd')
  config = tiny_config('roberta')
  config.train.update(steps=20, checkpoint_every=10)
  pretraining.pretrain(config, workdir, stop_after=10)
  before = snapshot(workdir)

  bigger = tiny_config('roberta')
  bigger.train.update(steps=20, checkpoint_every=10)
  bigger.model.vocab_size = 700
  with pytest.raises(UserError, match='vocab size 600'):
    pretraining.pretrain(bigger, workdir)
  assert snapshot(workdir) == before

  # Even with the tokenizer file gone, the checkpoint's shapes are checked by name.
  os.remove(os.path.join(workdir, 'tokenizer.model'))
  before = snapshot(workdir)
  with pytest.raises(UserError, match='token_embed'):
    pretraining.pretrain(bigger, workdir)
  assert {k: v for k, v in snapshot(workdir).items() if k != 'tokenizer.model'} == before
