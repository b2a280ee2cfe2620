"""Frozen parameters: read by the loss, never updated, reloaded and checked on resume.

A distillation-style objective: RoBERTa's MLM loss plus the squared distance of the
student's MLM logits to a frozen teacher's (a tiny RoBERTa trained first). The teacher
rides in `TrainState.frozen`; the student is trained through the generic loop.
"""

import dataclasses
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common.data import pipeline
from common.errors import UserError
from common.interop import model_dir
from common.train import frozen as frozen_lib
from common.train import loop
from common.train import objectives
from common.train import optimizers
from common.train import pretraining
from common.train import sharding
from common.train import train_step
from common.train.metrics import scalar
from tests.conftest import tiny_config


def teacher_student_objective(config, teacher: str) -> objectives.Objective:
  """MLM + mean squared distance of the student's MLM logits to the teacher's."""
  base = objectives.get_objective(config)

  def loss_fn(params, batch, rng, deterministic, frozen):
    mlm, metrics = base.loss_fn(params, batch, rng, deterministic)
    student = base.model.apply({'params': params}, batch, deterministic=True)
    teacher_out = base.model.apply({'params': frozen}, batch, deterministic=True)
    distance = jnp.mean((student['mlm_logits'] - teacher_out['mlm_logits']) ** 2)
    return mlm + distance, {**metrics, 'loss': scalar(mlm + distance),
                            'teacher_distance': scalar(distance)}

  return dataclasses.replace(base, loss_fn=loss_fn, frozen=frozen_lib.FrozenParams(
      'teacher', teacher, base.model))


def run(config, teacher, workdir, **kwargs):
  """`pretraining.pretrain`, with the teacher-student objective, through `loop.run`."""
  data = pipeline.build_data(config, workdir)
  train_iter = iter(data.train.to_iter_dataset(pipeline.read_options(1)))
  return loop.run(config, workdir, objective=teacher_student_objective(config, teacher),
                  train_iter=train_iter, example_batch=data.train[0],
                  eval_sets=pretraining.evaluation_sets(data), **kwargs)


@pytest.fixture(scope='module')
def teacher(tmp_path_factory):
  """A tiny RoBERTa workdir (checkpoints at 10 and 20) and its step-20 params."""
  workdir = str(tmp_path_factory.mktemp('teacher'))
  config = tiny_config('roberta')
  config.train.update(steps=20, checkpoint_every=10, eval_every=20)
  pretraining.pretrain(config, workdir)
  params, _ = model_dir.restore_params(workdir)
  return workdir, config, jax.tree.map(np.asarray, params)


def student_config():
  config = tiny_config('roberta')
  config.train.update(steps=20, log_every=5, eval_every=10, checkpoint_every=5)
  return config


def test_frozen_params_get_no_update_and_no_optimizer_state(teacher):
  teacher_dir, config, teacher_params = teacher
  objective = teacher_student_objective(config, teacher_dir)
  data = pipeline.build_data(config, teacher_dir)
  batches = [{k: jnp.asarray(data.train[i][k]) for k in objective.batch_keys}
             for i in range(3)]
  mesh = sharding.make_mesh({'data': -1, 'fsdp': 1, 'tensor': 1})
  tx, schedule = optimizers.make_optimizer(config.optimizer, config.train.steps)
  with sharding.mesh_context(mesh):
    record = frozen_lib.resolve(objective.frozen)
    placed = frozen_lib.place(objective.frozen, record, batches[0], mesh)
    state, shardings = train_step.init_train_state(
        objective, tx, batches[0], jax.random.PRNGKey(0), mesh, placed)
    start = jax.tree.map(np.asarray, state.params)
    step = train_step.make_train_step(objective, tx, schedule, shardings, mesh)
    losses = []
    for batch in batches:
      state, metrics = step(state, batch, jax.random.PRNGKey(1))
      losses.append(float(metrics['teacher_distance'][0]))
  # The frozen values are the teacher's step-20 params, bit for bit, after three steps.
  frozen = model_dir.flatten(model_dir.set_layer_layout(
      jax.tree.map(np.asarray, state.frozen), False))
  expected = model_dir.flatten(model_dir.set_layer_layout(teacher_params, False))
  assert frozen.keys() == expected.keys()
  for name, value in frozen.items():
    np.testing.assert_array_equal(value, expected[name], err_msg=name)
  # The student moved; the optimizer holds moments for the student only.
  moved = [not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(state.params),
                                                    jax.tree.leaves(start))]
  assert all(moved)
  n_params = len(jax.tree.leaves(state.params))
  adam_moments = [x for x in jax.tree.leaves(state.opt_state) if np.ndim(x) > 0]
  assert len(adam_moments) == 2 * n_params
  assert 0 < losses[0]  # A fresh student differs from the teacher.


def test_resume_reloads_the_frozen_source_and_matches_an_uninterrupted_run(teacher,
                                                                           tmp_path):
  teacher_dir, _, _ = teacher
  config = student_config()
  straight = run(config, teacher_dir, str(tmp_path / 'straight'))
  resumed_dir = str(tmp_path / 'resumed')
  run(config, teacher_dir, resumed_dir, stop_after=10)
  resumed = run(config, teacher_dir, resumed_dir)
  assert resumed['step'] == straight['step'] == 20
  for key in ('loss', 'teacher_distance', 'mlm_accuracy'):
    assert resumed['eval'][key] == straight['eval'][key], key
  a, _ = model_dir.restore_params(str(tmp_path / 'straight'))
  b, _ = model_dir.restore_params(resumed_dir)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  # The run recorded its teacher, pinned to the step it read; checkpoints hold no copy.
  record = model_dir.read_json(os.path.join(resumed_dir, frozen_lib.RECORD))['teacher']
  assert record['source'] == os.path.abspath(teacher_dir) and record['step'] == 20
  assert resumed['frozen']['teacher']['parameters'] == resumed['parameters'] > 0
  state_dir = os.path.join(resumed_dir, 'checkpoints', '20', 'state')
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  saved = ocp.PyTreeCheckpointer().metadata(state_dir).item_metadata.tree
  assert set(saved) == {'step', 'params', 'opt_state'}


def test_a_changed_or_vanished_source_is_refused(teacher, tmp_path):
  teacher_dir, _, _ = teacher
  source = str(tmp_path / 'teacher')
  shutil.copytree(teacher_dir, source)
  config = student_config()
  workdir = str(tmp_path / 'student')
  run(config, source, workdir, stop_after=5)
  before = sorted(os.listdir(workdir))

  # Another source named in the config.
  with pytest.raises(UserError, match='started with teacher .* config now names'):
    run(config, teacher_dir, workdir)
  # The source's recorded checkpoint changed (one flipped byte).
  state_dir = os.path.join(source, 'checkpoints', '20', 'state')
  victim = max((os.path.join(d, n) for d, _, names in os.walk(state_dir) for n in names),
               key=os.path.getsize)
  with open(victim, 'r+b') as f:
    byte = f.read(1)
    f.seek(0)
    f.write(bytes([byte[0] ^ 1]))
  with pytest.raises(UserError, match='changed since this run started'):
    run(config, source, workdir)
  with open(victim, 'r+b') as f:
    f.write(byte)
  # The source vanished.
  os.rename(source, source + '.moved')
  with pytest.raises(UserError, match='no longer exists'):
    run(config, source, workdir)
  os.rename(source + '.moved', source)
  assert sorted(os.listdir(workdir)) == before
  # Restored, the run resumes.
  assert run(config, source, workdir)['step'] == 20


def test_a_model_directory_is_a_frozen_source_too(teacher, tmp_path):
  teacher_dir, config, teacher_params = teacher
  directory = str(tmp_path / 'model')
  with model_dir.atomic_directory(directory) as tmp:
    model_dir.write_contents(tmp, teacher_params, config.model.to_dict(),
                             {'from': 'workdir', 'objective': 'mlm'})
  objective = teacher_student_objective(config, directory)
  record = frozen_lib.resolve(objective.frozen)
  assert record['kind'] == 'model_dir' and record['step'] is None
  values = frozen_lib.load_values(record)
  expected = model_dir.set_layer_layout(teacher_params, False)
  for a, b in zip(jax.tree.leaves(values), jax.tree.leaves(expected)):
    np.testing.assert_array_equal(a, b)
  with pytest.raises(UserError, match='neither a model directory'):
    frozen_lib.resolve(dataclasses.replace(objective.frozen, source=str(tmp_path)))
