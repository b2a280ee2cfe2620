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
from jax.experimental import mesh_utils
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
              devices: Sequence[jax.Device] | None = None, *,
              dcn_data: int = 1) -> Mesh:
  """Builds the mesh ('data', 'fsdp', 'tensor') from the config's axis sizes.

  Args:
    mesh_shape: axis name -> size within one slice; one axis may be -1 to take the
      slice's remaining devices. Missing axes have size 1. {'data': -1} is pure data
      parallelism.
    devices: defaults to all devices of all processes.
    dcn_data: number of slices (TPU multi-slice, or hosts joined over the data-center
      network) laid out as an outer data-parallel factor: the 'data' axis spans
      dcn_data x mesh_shape['data'] devices, and only gradients cross the slower
      network. On platforms without slices each process counts as one.

  Returns:
    A `Mesh` whose device order follows the topology (`jax.make_mesh`, or
    `create_hybrid_device_mesh` across slices).
  """
  devices = list(devices if devices is not None else jax.devices())
  unknown = set(mesh_shape) - set(MESH_AXES)
  if unknown:
    raise UserError(f'unknown mesh axes {sorted(unknown)}; valid axes are {MESH_AXES}')
  if dcn_data < 1 or len(devices) % dcn_data:
    raise UserError(f'mesh.dcn_data {dcn_data} does not divide {len(devices)} devices')
  per_slice = len(devices) // dcn_data
  sizes = [int(mesh_shape.get(axis, 1)) for axis in MESH_AXES]
  if sizes.count(-1) > 1:
    raise UserError(f'at most one mesh axis may be -1, got {dict(mesh_shape)}')
  known = math.prod(s for s in sizes if s != -1)
  if -1 in sizes:
    if per_slice % known:
      raise UserError(f'mesh {dict(mesh_shape)} does not divide {per_slice} devices')
    sizes[sizes.index(-1)] = per_slice // known
  if math.prod(sizes) != per_slice:
    raise UserError(f'mesh {dict(zip(MESH_AXES, sizes))} needs {math.prod(sizes)} '
                    f'devices per slice, there are {per_slice}')
  # Auto axes: XLA propagates shardings from the annotated parameters and batch.
  axis_types = (jax.sharding.AxisType.Auto,) * len(MESH_AXES)
  if dcn_data == 1:
    return jax.make_mesh(tuple(sizes), MESH_AXES, devices=devices,
                         axis_types=axis_types)
  device_array = mesh_utils.create_hybrid_device_mesh(
      sizes, (dcn_data, 1, 1), devices,
      process_is_granule=len({getattr(d, 'slice_index', 0) for d in devices}) == 1)
  return Mesh(device_array, MESH_AXES, axis_types=axis_types)


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
