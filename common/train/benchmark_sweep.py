"""How the train step's time grows with batch, sequence length and depth.

Each point is the config with one field changed, timed by `benchmark.time_train_step`.
A longer sequence keeps the masking rate: `masking.max_predictions_per_seq` scales with
it. Depth is timed with the layers under `nn.scan` and unrolled (`model.scan_layers`),
so the compile times show what scanning buys: flat in depth, against growing.
"""

from typing import Any

from common.errors import UserError
from common.train import benchmark
from common.train import sharding


def default_points(config) -> dict[str, list[int]]:
  """Half, the config's and double batch and length (within the position table), and
  depth 1, half and full."""
  batch, length = config.train.batch_size, config.data.max_seq_length
  positions = config.model.max_position_embeddings - config.model.position_offset
  layers = config.model.num_layers
  return {
      'batch_size': sorted({max(1, batch // 2), batch, 2 * batch}),
      'max_seq_length': sorted({l for l in (length // 2, length, 2 * length)
                                if 16 <= l <= positions}),
      'num_layers': sorted({1, max(1, layers // 2), layers}),
  }


def _variant(config, **fields):
  variant = config.copy_and_resolve_references()
  for name, value in fields.items():
    section, field = name.split('.')
    variant[section][field] = value
  return variant


def _point(config, steps: int, warmup: int) -> dict[str, float]:
  timing = benchmark.time_train_step(config, steps=steps, warmup=warmup)
  return {'compile_s': timing.compile_s, 'step_ms': timing.median_ms,
          'tokens_per_sec': timing.tokens_per_sec}


def sweep(config, points: dict[str, list[int]], *, steps: int = 3,
          warmup: int = 1) -> dict[str, list[dict[str, Any]]]:
  """{'batch_size': [...], 'max_seq_length': [...], 'num_layers': [...]} of timings."""
  dp = sharding.data_parallel_size(sharding.make_mesh(config.mesh.shape,
                                                      dcn_data=config.mesh.dcn_data))
  length, predictions = config.data.max_seq_length, config.masking.max_predictions_per_seq
  out = {'batch_size': [], 'max_seq_length': [], 'num_layers': []}
  for batch in points.get('batch_size', []):
    if batch % (dp * config.train.grad_accum_steps):
      raise UserError(f'--sweep_batch {batch} does not split over {dp} data-parallel '
                      'devices')
    out['batch_size'].append({'batch_size': batch, **_point(
        _variant(config, **{'train.batch_size': batch}), steps, warmup)})
  for new_length in points.get('max_seq_length', []):
    scaled = max(1, round(predictions * new_length / length))
    out['max_seq_length'].append({'max_seq_length': new_length, **_point(
        _variant(config, **{'data.max_seq_length': new_length,
                            'masking.max_predictions_per_seq': scaled}), steps, warmup)})
  for layers in points.get('num_layers', []):
    groups = min(config.model.num_hidden_groups, layers)
    out['num_layers'].append({'num_layers': layers, **{
        name: _point(_variant(config, **{'model.num_layers': layers,
                                         'model.num_hidden_groups': groups,
                                         'model.scan_layers': scan}), steps, warmup)
        for name, scan in (('scan', True), ('unrolled', False))}})
  return out
