"""Two processes on loopback (JAX distributed runtime, gloo) train like one process."""

import os
import subprocess
import sys

import numpy as np

from common.train import run_log
from tests.conftest import REPO

# A tiny BERT without dropout, so the two runs differ only in which host loads which
# rows (the global batch is the same rows, in another order).
TINY = ['--config=experiments/bert.py:demo', '--config.model.vocab_size=600',
        '--config.model.hidden_size=64', '--config.model.num_layers=2',
        '--config.model.num_heads=2', '--config.model.intermediate_size=256',
        '--config.model.dropout_rate=0.0', '--config.model.attention_dropout_rate=0.0',
        '--config.data.max_documents=150', '--config.data.heldout_fraction=0.1',
        '--config.data.max_seq_length=64', '--config.masking.max_predictions_per_seq=10',
        '--config.train.steps=12', '--config.train.batch_size=16',
        '--config.train.log_every=4', '--config.train.eval_every=6',
        '--config.train.eval_batches=2', '--config.train.eval_batch_size=16',
        '--config.train.checkpoint_every=6', '--config.train.data_threads=1']


def run(command: list[str]) -> None:
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu'}
  result = subprocess.run([sys.executable, '-m', *command], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-4000:]


def test_two_processes_match_one(tmp_path):
  one, two = str(tmp_path / 'one'), str(tmp_path / 'two')
  run(['launch.train', *TINY, f'--workdir={one}'])
  # Each process as one slice: the data axis spans the two over the "DCN".
  run(['launch.multiprocess', '--num_processes=2', '--', *TINY,
       '--config.mesh.dcn_data=2', f'--workdir={two}'])
  a = run_log.read_metrics(os.path.join(one, 'metrics.jsonl'))
  b = run_log.read_metrics(os.path.join(two, 'metrics.jsonl'))
  assert [r['step'] for r in a] == [r['step'] for r in b]
  for ra, rb in zip(a, b):
    for key in ('loss', 'mlm_accuracy', 'eval_loss', 'eval_mlm_accuracy',
                'eval_shuffled_context_mlm_accuracy'):
      if key in ra:
        np.testing.assert_allclose(rb[key], ra[key], rtol=1e-4, err_msg=key)
  # Both processes wrote their part of the checkpoint, including the data iterators.
  step_dir = os.path.join(two, 'checkpoints', '12')
  assert os.path.isdir(os.path.join(step_dir, 'state'))
  data_files = os.listdir(os.path.join(step_dir, 'data'))
  assert {'process_0-of-2.json', 'process_1-of-2.json'} <= set(data_files)
