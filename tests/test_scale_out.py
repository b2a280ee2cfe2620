"""Scale-out: mesh layouts on 8 simulated devices, checkpoints across layouts, FLOPs."""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from common.errors import UserError
from common.train import flops
from common.train import objectives
from common.train import optimizers
from common.train import sharding
from common.train import train_step
from tests.conftest import REPO
from tests.conftest import tiny_config
from tests.test_train_step import no_dropout_config, random_batch

LAYOUTS_SCRIPT = r"""
import tempfile
import jax, numpy as np
from jax.sharding import PartitionSpec as P
from common.train import checkpoint
from common.train import objectives
from common.train import optimizers
from common.train import sharding
from common.train import train_step
from tests.test_train_step import no_dropout_config, random_batch

assert jax.device_count() == 8
config = no_dropout_config()
config.model.update(num_heads=8)  # 8 heads of 8 dims: splits over an 8-way tensor axis.
batches = [random_batch(config, 16, seed) for seed in range(3)]

def train(mesh_shape, devices=None, save_to=None):
  mesh = sharding.make_mesh(mesh_shape, devices)
  objective = objectives.get_objective(config)
  tx, schedule = optimizers.make_optimizer(config.optimizer, 10)
  with sharding.mesh_context(mesh):
    state, shardings = train_step.init_train_state(
        objective, tx, {k: v[:8] for k, v in batches[0].items()},
        jax.random.PRNGKey(0), mesh)
    step = train_step.make_train_step(objective, tx, schedule, shardings, mesh)
    losses = []
    for batch in batches:
      state, metrics = step(state, batch, jax.random.PRNGKey(1))
      losses.append(float(metrics['loss'][0] / metrics['loss'][1]))
  return losses, state, shardings, mesh

reference, ref_state, _, _ = train({'data': 1}, jax.devices()[:1])
# The query kernel is [layers 2, embed 64, heads 8, head_dim 8]; 'embed' goes to the
# fsdp axis and 'heads' to the tensor axis (common/train/sharding.py).
expected_query_shard = {'data': (2, 64, 8, 8), 'fsdp': (2, 8, 8, 8),
                        'tensor': (2, 64, 1, 8), 'fsdp+tensor': (2, 16, 4, 8)}
layouts = {'data': {'data': 8}, 'fsdp': {'fsdp': 8}, 'tensor': {'tensor': 8},
           'fsdp+tensor': {'fsdp': 4, 'tensor': 2}}
states = {}
for name, shape in layouts.items():
  losses, state, shardings, mesh = train(shape)
  np.testing.assert_allclose(losses, reference, rtol=2e-5, err_msg=name)
  query = state.params['encoder']['layers']['attention']['query']['kernel']
  shard = query.addressable_shards[0].data.shape
  assert shard == expected_query_shard[name], (name, shard)
  # Adam's moments are laid out as their parameters: FSDP shards the optimizer state too.
  moments = [leaf for leaf in jax.tree.leaves(state.opt_state)
             if getattr(leaf, 'shape', None) == query.shape]
  assert len(moments) >= 2, name
  for moment in moments:
    assert moment.addressable_shards[0].data.shape == shard, (name, 'opt_state')
  states[name] = (state, shardings, mesh)
  print(name, 'ok', losses)

# Saved under FSDP, restored under fsdp+tensor: identical parameters.
state, _, _ = states['fsdp']
target_state, target_shardings, target_mesh = states['fsdp+tensor']
with tempfile.TemporaryDirectory() as tmp:
  ckpt = checkpoint.Checkpointer(tmp, save_every=1, keep=1)
  data_iter = iter(__import__('grain').MapDataset.range(10).to_iter_dataset())
  ckpt.save(3, state, data_iter, {'rng': [0, 1]}, force=True)
  ckpt.wait()
  with sharding.mesh_context(target_mesh):
    restored, loop = ckpt.restore(
        3, checkpoint.abstract_like(target_state, target_shardings), data_iter)
  ckpt.close()
for a, b in zip(jax.tree.leaves(restored.params), jax.tree.leaves(state.params)):
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
query = restored.params['encoder']['layers']['attention']['query']['kernel']
assert query.addressable_shards[0].data.shape == expected_query_shard['fsdp+tensor']
print('restore across layouts ok')
"""


def test_layouts_match_one_device_and_checkpoints_move_between_them():
  env = {**os.environ, 'XLA_FLAGS': '--xla_force_host_platform_device_count=8',
         'JAX_PLATFORMS': 'cpu'}
  result = subprocess.run([sys.executable, '-c', LAYOUTS_SCRIPT], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-4000:]
  assert 'restore across layouts ok' in result.stdout, result.stdout


def test_flops_formula_matches_xla_cost_analysis():
  config = no_dropout_config()
  # Unrolled layers: XLA's cost analysis counts a scan's (while loop's) body once.
  config.model.update(hidden_size=256, intermediate_size=1024, num_heads=4,
                      num_layers=2, scan_layers=False)
  config.data.max_seq_length = 32
  config.masking.max_predictions_per_seq = 4
  batch = random_batch(config, 8)
  batch['masked_weights'][:] = 1.0
  mesh = sharding.make_mesh({'data': 1}, jax.devices()[:1])
  objective = objectives.get_objective(config)
  tx, schedule = optimizers.make_optimizer(config.optimizer, 10)
  with sharding.mesh_context(mesh):
    state, shardings = train_step.init_train_state(
        objective, tx, batch, jax.random.PRNGKey(0), mesh)
    step = train_step.make_train_step(objective, tx, schedule, shardings, mesh)
    compiled = step.lower(state, batch, jax.random.PRNGKey(1)).compile()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  xla_per_token = cost['flops'] / (8 * 32)
  ours = objective.flops_per_token
  # XLA also counts LayerNorm, softmax, GeLU and the optimizer: a few percent more.
  assert 1.0 <= xla_per_token / ours < 1.08, (xla_per_token, ours)


# Objectives that read a teacher ('distillation') are built, and their FLOPs checked
# against XLA's, in tests/test_distillation.py.
@pytest.mark.parametrize('name', sorted(set(objectives.OBJECTIVES)
                                        - set(objectives.CONFIGURE)))
def test_every_objective_in_the_table_builds_and_counts_its_flops(name):
  config = tiny_config('bert')
  config.objective.name = name
  objective = objectives.get_objective(config)
  assert objective.name == name
  assert objective.flops_per_token > 0


def test_an_unknown_objective_names_the_known_ones():
  config = tiny_config('bert')
  config.objective.name = 'nope'
  with pytest.raises(UserError, match=r"unknown objective 'nope'; known objectives: "
                     r"\['all_tokens_mlm', 'distillation', 'electra', 'electra_15', "
                     r"'mlm', 'mlm_nsp', 'mlm_sbo', 'mlm_sop', 'replace_mlm'\]"):
    objectives.get_objective(config)


def test_mfu_uses_configured_or_known_peak():
  assert flops.mfu(1000.0, 1e9, 1e12, 2) == 0.5
  assert flops.mfu(1000.0, 1e9, None, 1) is None
  assert flops.peak_flops_per_device({'peak_flops_per_device': 5e12}) == 5e12


def test_launch_scripts_are_valid_bash():
  for script in ('launch/tpu_vm.sh', 'launch/slurm_gpu.sbatch'):
    result = subprocess.run(['bash', '-n', os.path.join(REPO, script)],
                            capture_output=True, text=True)
    assert result.returncode == 0, (script, result.stderr)
