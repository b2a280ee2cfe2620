"""Fine-tuning end to end: a tiny run learns a synthetic task, starts from any
pretraining workdir, leaves its files, and refuses bad input with one line."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import optax
import pytest

from common.errors import UserError
from common.interop import model_dir
from common.train import finetuning
from common.train import sequence_classification
from common.train import sharding
from common.train import train_step
from experiments import glue
from tests.conftest import REPO
from tests.conftest import tiny_config

WORDS = ('the a module function returns value list string file data object class type '
         'error name path').split()


def write_keyword_task(directory: str, seed: int = 0) -> None:
  """A generic TSV task: label 1 iff the sentence holds 'alpha' (else 'omega')."""
  rng = np.random.default_rng(seed)
  os.makedirs(directory, exist_ok=True)

  def row():
    label = int(rng.integers(2))
    words = [str(w) for w in rng.choice(WORDS, 8)]
    words[int(rng.integers(8))] = 'alpha' if label else 'omega'
    return ' '.join(words), label

  for split, n in (('train', 256), ('dev', 64)):
    with open(os.path.join(directory, f'{split}.tsv'), 'w') as f:
      f.write('sentence\tlabel\n')
      f.writelines(f'{s}\t{l}\n' for s, l in (row() for _ in range(n)))
  with open(os.path.join(directory, 'test.tsv'), 'w') as f:
    f.write('index\tsentence\n')
    f.writelines(f'{i}\t{row()[0]}\n' for i in range(20))


def tiny_finetuning_config(data_dir: str, init_from: str = 'random'):
  config = glue.get_config('generic')
  pretrain = tiny_config('bert')
  config.model.update(pretrain.model.to_dict())
  config.data.update(max_documents=150, heldout_fraction=0.1, max_seq_length=32)
  config.update(init_from=init_from, data_dir=data_dir, num_seeds=1, epochs=10.0)
  config.optimizer.learning_rate = 1e-3
  config.train.update(data_threads=1, batch_size=32, eval_batch_size=32)
  return config


@pytest.fixture(scope='module')
def keyword_task(tmp_path_factory):
  directory = str(tmp_path_factory.mktemp('keyword'))
  write_keyword_task(directory)
  return directory


@pytest.fixture(scope='module')
def bert_workdir(tiny_bert_workdir):
  return tiny_bert_workdir


def test_tiny_finetuning_learns_and_leaves_its_files(keyword_task, tmp_path):
  workdir = str(tmp_path / 'run')
  results = finetuning.finetune(tiny_finetuning_config(keyword_task), workdir)
  assert results['best']['accuracy'] > 0.9, results
  assert results['median']['score'] == results['best']['score']
  with open(os.path.join(workdir, 'results.json')) as f:
    assert json.load(f)['best']['run'] == 'seed_0'
  run = os.path.join(workdir, 'seed_0')
  for name in ('metrics.jsonl', 'summary.json', 'loss_curve.png', 'best.json'):
    assert os.path.isfile(os.path.join(run, name)), name
  # The best dev parameters, a model directory a classifier export reads.
  _, _, source = model_dir.read(os.path.join(run, 'best'))
  assert source['objective'] == 'classification' and source['num_labels'] == 2
  assert source['step'] > 0  # Never the untrained head of step 0.
  with open(os.path.join(workdir, 'submission', 'generic.tsv')) as f:
    lines = f.read().splitlines()
  assert lines[0] == 'index\tprediction' and len(lines) == 21
  assert {line.split('\t')[1] for line in lines[1:]} <= {'0', '1'}
  # Started again: the finished run is not trained again.
  before = os.path.getmtime(os.path.join(run, 'best.json'))
  again = finetuning.finetune(tiny_finetuning_config(keyword_task), workdir)
  assert again['best']['score'] == results['best']['score']
  assert os.path.getmtime(os.path.join(run, 'best.json')) == before


def test_a_pretraining_workdir_gives_the_encoder_and_pooler(bert_workdir, keyword_task,
                                                           tmp_path):
  config = tiny_finetuning_config(keyword_task, init_from=bert_workdir)
  start = finetuning.resolve_start(bert_workdir, config, str(tmp_path))
  assert start.objective == 'mlm_nsp' and start.head_activation == 'tanh'
  assert start.tokenizer_path == os.path.join(bert_workdir, 'tokenizer.model')
  config.model.update(start.model_config)
  objective = sequence_classification.sequence_classification(config, 2, 'tanh')
  batch = {k: np.zeros((1, 8), np.int32) for k in ('input_ids', 'segment_ids',
                                                   'attention_mask')}
  batch.update(label=np.zeros((1,), np.int32), example_weight=np.ones((1,), np.float32))
  mesh = sharding.make_mesh({'data': -1, 'fsdp': 1, 'tensor': 1})
  tx = optax.adamw(1e-3)
  with sharding.mesh_context(mesh):
    state, shardings = train_step.init_train_state(objective, tx, batch,
                                                   jax.random.PRNGKey(0), mesh)
    params = finetuning._init_params(start, True, False, state.params, shardings.params)  # pylint: disable=protected-access
  pretrained, _ = model_dir.restore_params(bert_workdir)
  for scope in ('encoder', 'pooler'):
    ours = jax.tree.leaves(params[scope])
    theirs = jax.tree.leaves(pretrained[scope])
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert set(params) == {'encoder', 'pooler', 'classifier'}


def test_a_random_start_has_no_params_and_a_pretrained_one_fine_tunes(bert_workdir,
                                                                      keyword_task,
                                                                      tmp_path):
  config = tiny_finetuning_config(keyword_task, init_from=bert_workdir)
  config.epochs = 2.0
  results = finetuning.finetune(config, str(tmp_path / 'from_bert'))
  assert results['init_from'].startswith(bert_workdir)
  assert results['runs'][0]['steps'] == 16
  with pytest.raises(UserError, match='config.init_from is required'):
    finetuning.resolve_start('', config, str(tmp_path))
  assert finetuning.resolve_start('random', config, str(tmp_path)).params is None


def test_families_pick_their_defaults():
  assert finetuning.family('electra', {'hidden_size': 256}) == ('electra', 'small')
  assert finetuning.family('mlm_sop', {'hidden_size': 768}) == ('albert', 'base')
  assert finetuning.family('mlm', {'hidden_size': 1024, 'position_offset': 2}) == (
      'roberta', 'large')
  assert finetuning.family('mlm_nsp', {'hidden_size': 128}) == ('bert', 'small')
  assert finetuning.head_activation('electra', {}, {}) == 'gelu'
  assert finetuning.head_activation('mlm', {'type_vocab_size': 0}, {}) == 'relu'
  assert finetuning.head_activation('mlm_nsp', {'type_vocab_size': 2}, {}) == 'tanh'


@pytest.mark.parametrize('args, message', [
    (['--config.data_dir=/nonexistent/task'], 'config.data_dir /nonexistent/task does '
     'not exist'),
    (['--config.init_from=/nonexistent/run'], 'config.init_from /nonexistent/run does '
     'not exist'),
    (['--config.epochs=0'], 'config.epochs must be positive'),
])
def test_bad_input_is_one_line(keyword_task, tmp_path, args, message):
  workdir = tmp_path / 'run'
  argv = [sys.executable, '-m', 'launch.finetune', '--config=experiments/glue.py:generic',
          f'--config.data_dir={keyword_task}', '--config.init_from=random',
          f'--workdir={workdir}', *args]
  proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2, proc.stderr
  errors = [l for l in proc.stderr.splitlines() if l.startswith('error:')]
  assert len(errors) == 1 and message in errors[0], proc.stderr
  assert 'Traceback' not in proc.stderr
  assert not workdir.exists()


def test_an_unknown_task_is_refused(tmp_path):
  argv = [sys.executable, '-m', 'launch.finetune', '--config=experiments/glue.py:squad',
          f'--workdir={tmp_path / "run"}']
  proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2
  assert "error: unknown task 'squad'; known tasks: cola, sst2" in proc.stderr


def test_the_random_control_fine_tunes_like_its_pretrained_start(tmp_path):
  from common.train import start_evaluation  # pylint: disable=g-import-not-at-top
  config = glue.get_config('generic')
  defaults = config.family_defaults
  assert start_evaluation.control_settings(tiny_config('electra'), defaults) == (0.8, 'gelu')
  assert start_evaluation.control_settings(tiny_config('bert'), defaults) == (1.0, 'tanh')
  assert finetuning.resolve_start('random', config, str(tmp_path)).head_activation == 'tanh'
  config.objective.head_activation = 'gelu'
  assert finetuning.resolve_start('random', config, str(tmp_path)).head_activation == 'gelu'
