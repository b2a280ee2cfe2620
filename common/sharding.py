"""Device mesh and the rules that map logical axis names onto it.

Every parameter carries logical axis names (`nn.with_logical_partitioning` in the
encoder: 'vocab', 'embed', 'heads', 'kv', 'mlp', 'layers', ...), and activations are
annotated with 'batch', 'length', 'embed'. ONE table, `LOGICAL_AXIS_RULES`, maps those
names onto the mesh axes ('data', 'fsdp', 'tensor'), as t5x's
`standard_logical_axis_rules` and MaxText's mesh rules do. The experiment file picks the
mesh shape; the same code then runs data parallel, FSDP, tensor parallel or a mix.

A mesh axis is used at most once per array (flax resolves rules left to right), so the
activation rule ('embed' -> 'fsdp') yields to 'batch' having taken 'fsdp' already.
"""

from collections.abc import Mapping, Sequence
import contextlib
import math
from typing import Any

import flax.linen as nn
import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from common.errors import UserError

MESH_AXES = ('data', 'fsdp', 'tensor')

# Logical name -> mesh axis (or axes, or None = replicated).
LOGICAL_AXIS_RULES: tuple[tuple[str, Any], ...] = (
    ('batch', ('data', 'fsdp')),
    ('length', None),
    ('embed', 'fsdp'),
    ('factorized_embed', None),
    ('embed_out', 'tensor'),
    ('vocab', 'tensor'),
    ('heads', 'tensor'),
    ('kv', None),
    ('mlp', 'tensor'),
    ('layers', None),
    ('position', None),
    ('type_vocab', None),
    ('classes', None),
)


def make_mesh(mesh_shape: Mapping[str, int],
              devices: Sequence[jax.Device] | None = None) -> Mesh:
  """Builds the mesh ('data', 'fsdp', 'tensor') from the config's axis sizes.

  Args:
    mesh_shape: axis name -> size; one axis may be -1 to take all remaining devices.
      Missing axes have size 1. Example: {'data': -1} is pure data parallelism.
    devices: defaults to all devices of all processes.

  Returns:
    A `Mesh` whose device order follows `jax.make_mesh` (topology aware).
  """
  devices = list(devices if devices is not None else jax.devices())
  unknown = set(mesh_shape) - set(MESH_AXES)
  if unknown:
    raise UserError(f'unknown mesh axes {sorted(unknown)}; valid axes are {MESH_AXES}')
  sizes = [int(mesh_shape.get(axis, 1)) for axis in MESH_AXES]
  if sizes.count(-1) > 1:
    raise UserError(f'at most one mesh axis may be -1, got {dict(mesh_shape)}')
  known = math.prod(s for s in sizes if s != -1)
  if -1 in sizes:
    if len(devices) % known:
      raise UserError(f'mesh {dict(mesh_shape)} does not divide {len(devices)} devices')
    sizes[sizes.index(-1)] = len(devices) // known
  if math.prod(sizes) != len(devices):
    raise UserError(f'mesh {dict(zip(MESH_AXES, sizes))} needs {math.prod(sizes)} devices, '
                    f'there are {len(devices)}')
  # Auto axes: XLA propagates shardings from the annotated parameters and batch.
  return jax.make_mesh(tuple(sizes), MESH_AXES, devices=devices,
                       axis_types=(jax.sharding.AxisType.Auto,) * len(MESH_AXES))


def logical_shardings(abstract_tree: Any, mesh: Mesh,
                      rules: Sequence[tuple[str, Any]] = LOGICAL_AXIS_RULES) -> Any:
  """NamedShardings for a (possibly boxed) pytree of parameters or train state.

  Leaves boxed with `nn.LogicallyPartitioned` get their logical names mapped through
  `rules`; unboxed leaves (step counters, optimizer counts) are replicated.
  """
  specs = nn.get_partition_spec(abstract_tree)
  return nn.logical_to_mesh_sharding(specs, mesh, rules)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Shards the leading (batch) dimension over every data-like mesh axis."""
  return NamedSharding(mesh, PartitionSpec(('data', 'fsdp')))


def data_parallel_size(mesh: Mesh) -> int:
  """How many ways the batch is split: the product of the 'data' and 'fsdp' axes."""
  return mesh.shape['data'] * mesh.shape['fsdp']


def mesh_context(mesh: Mesh, rules: Sequence[tuple[str, Any]] = LOGICAL_AXIS_RULES):
  """Context in which jitted code traces: the mesh and the logical-axis rules.

  The model's `nn.with_logical_constraint` annotations resolve against both.
  """
  stack = contextlib.ExitStack()
  stack.enter_context(jax.set_mesh(mesh))
  stack.enter_context(nn.logical_axis_rules(rules))
  return stack
