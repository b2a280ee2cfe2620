r"""Times the train step of an experiment on synthetic batches, beside Hugging Face if asked.

  python -m launch.benchmark --config=experiments/electra.py:small \
      --config.train.batch_size=32 --compare=hf
  python -m launch.benchmark --config=experiments/bert.py:base \
      --config.train.batch_size=8 --steps=10 --output=/tmp/bert_base.json
  python -m launch.benchmark --config=experiments/electra.py:small \
      --config.train.batch_size=32 --profile=/tmp/electra_small_trace
  python -m launch.benchmark --config=experiments/bert.py:demo --sweep --plot=sweep.png

The step is the one `launch.train` runs for the config (objective, optimizer, state
shardings, donation; common/train/benchmark.py), timed after warm-up on synthetic
batches of the config's shape. The table: compile time, ms/step (median, p10-p90, min),
CPU ms/step, tokens/s, model FLOPs per token and FLOP/s, their fraction of a large
matmul timed in the same command (the roofline), MFU where the peak is known
(`--config.train.peak_flops_per_device`), peak memory, and the config's real input
pipeline alone (examples/s). `--compare=hf` then runs the same model, batch and
optimizer in transformers (PyTorch) in a subprocess, after JAX finished, so each had
the machine alone, and prints both rows and their ratio (common/interop/hf_benchmark.py
says what differs). `--sweep` times half and double batch and length and several depths
with and without nn.scan (`--plot` draws it). `--profile=DIR` traces a few steps with
jax.profiler and prints the operations that took the most time, each with the line of
the model it comes from. Accelerator settings are overrides like any other:
`--config.model.dtype=bfloat16 --config.model.attention_impl=cudnn
--config.model.remat_policy=dots --config.mesh.shape.fsdp=-1`.
"""

import json
import os

from absl import app
from absl import flags
from ml_collections import config_flags

from launch import host_memory
from launch.cli import check_loaded
from launch.cli import fail
from launch.cli import parse_flags
from launch.cli import run_main

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Experiment file and size, e.g. experiments/electra.py:small.',
    lock_config=True)
_STEPS = flags.DEFINE_integer('steps', 10, 'Timed steps (after the warm-up).')
_WARMUP = flags.DEFINE_integer('warmup', 2, 'Untimed steps after compilation.')
_OUTPUT = flags.DEFINE_string('output', None, 'Also write the results to this JSON file.')
_COMPARE = flags.DEFINE_enum('compare', None, ['hf'], 'Also time the same model in '
                             'Hugging Face transformers (PyTorch).')
_ROUNDS = flags.DEFINE_integer(
    'rounds', 1, 'With --compare: alternate JAX and HF this many times (--steps each) '
    'and pool the steps, so a machine whose load drifts weighs on both alike.')
_SWEEP = flags.DEFINE_bool('sweep', False, 'Also time other batch sizes, sequence '
                           'lengths and depths (with and without nn.scan).')
_SWEEP_BATCH = flags.DEFINE_list('sweep_batch', None, 'Batch sizes of the sweep '
                                 '(default: half, the config, double).')
_SWEEP_LENGTH = flags.DEFINE_list('sweep_length', None, 'Sequence lengths of the sweep '
                                  '(default: half, the config, double if it fits).')
_SWEEP_DEPTH = flags.DEFINE_list('sweep_depth', None, 'Depths of the sweep (default: 1, '
                                 'half, the config).')
_PROFILE = flags.DEFINE_string(
    'profile', None, 'Also trace 3 steps with jax.profiler into this directory and print '
    'the operations that took the most time (common/train/benchmark_profile.py).')
_PLOT = flags.DEFINE_string('plot', None, 'With --sweep: also draw it into this PNG.')
_SWEEP_STEPS = flags.DEFINE_integer('sweep_steps', 3, 'Timed steps per sweep point.')
_PIPELINE = flags.DEFINE_bool('pipeline', True, "Also time the config's input pipeline "
                              'alone (builds its tokenizer in a temporary directory).')
_ROOFLINE_SIZE = flags.DEFINE_integer('roofline_size', 2048, 'Side of the square '
                                      'matmul timed as the roofline.')


def _ints(values, name: str) -> list[int] | None:
  from common.errors import UserError  # pylint: disable=g-import-not-at-top
  if values is None:
    return None
  try:
    out = [int(v) for v in values]
  except ValueError as e:
    raise UserError(f'--{name} takes comma-separated integers, got {",".join(values)}') from e
  if not out or min(out) < 1:
    raise UserError(f'--{name} takes positive integers, got {",".join(values)}')
  return out


def _setup_lines(config, timing, threads: int, peak) -> list[str]:
  import jax  # pylint: disable=g-import-not-at-top
  model, train = config.model, config.train
  device = jax.devices()[0]
  return [
      f'{config.name}: objective {config.objective.name}, batch {train.batch_size} x '
      f'{config.data.max_seq_length} tokens ({config.masking.max_predictions_per_seq} '
      f'predictions per row), {_STEPS.value} timed steps after {_WARMUP.value} warm-up'
      f'{f" in each of {_ROUNDS.value} rounds" if _ROUNDS.value > 1 else ""}, synthetic '
      'batches',
      f'devices: {jax.device_count()} x {device.device_kind} ({device.platform}), mesh '
      f'{dict(config.mesh.shape)}, {threads} CPU threads; peak FLOP/s per device: '
      f'{f"{peak:.3g}" if peak else "unknown (--config.train.peak_flops_per_device)"}',
      f'model: {timing.parameters:,} parameters; dtype {model.dtype}, attention '
      f'{model.attention_impl}, remat {model.remat_policy}, scan_layers '
      f'{model.scan_layers}, grad_accum_steps {train.grad_accum_steps}, optimizer '
      f'{config.optimizer.name}; host allocator: {host_memory.status()}',
  ]


def _hf_run(config, objective, models, threads) -> dict:
  from common.interop import hf_benchmark  # pylint: disable=g-import-not-at-top
  from common.train import benchmark  # pylint: disable=g-import-not-at-top
  batch = benchmark.synthetic_batch(config, objective.batch_keys, seed=0)
  return hf_benchmark.run_subprocess(config, batch, models, steps=_STEPS.value,
                                     warmup=_WARMUP.value, threads=threads,
                                     roofline_size=_ROOFLINE_SIZE.value)


def _hf_row(runs: list[dict], timing, models, **common):
  """The HF row from one or more subprocess runs, and its setup line."""
  from common.train import benchmark_report  # pylint: disable=g-import-not-at-top
  hf = runs[0]
  row = benchmark_report.row(
      'HF PyTorch', compile_s=None,
      step_seconds=[t for r in runs for t in r['step_seconds']],
      cpu_seconds=[t for r in runs for t in r['cpu_seconds']],
      tokens_per_step=timing.tokens_per_step, flops_per_token=timing.flops_per_token,
      peak_memory=(max(r['peak_bytes'] for r in runs), 'peak RSS'),
      parameters=hf['parameters'], architectures=[m['architecture'] for m in models],
      matmul_flops_per_sec=max(r['matmul_flops_per_sec'] for r in runs), **common)
  setup = (f"HF: torch {hf['torch']}, transformers {hf['transformers']}, "
           f"{hf['threads']} threads (OMP_WAIT_POLICY={hf['omp_wait_policy'] or 'default'}), "
           f"attention {hf['attention']}, {hf['parameters']:,} parameters "
           f"({' + '.join(row['architectures'])}); run in a subprocess after JAX "
           f'(idle by then), {len(runs)} round(s) of JAX then HF')
  return row, setup


def measure(config) -> dict:
  """Everything the command prints, as one JSON-ready dict."""
  from common.interop import hf_benchmark  # pylint: disable=g-import-not-at-top
  from common.train import benchmark  # pylint: disable=g-import-not-at-top
  from common.train import benchmark_report  # pylint: disable=g-import-not-at-top
  from common.train import benchmark_sweep  # pylint: disable=g-import-not-at-top
  from common.train import flops as flops_lib  # pylint: disable=g-import-not-at-top
  from common.train import objectives  # pylint: disable=g-import-not-at-top
  from common.train import pretraining  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top

  pretraining.check_config(config)
  config = objectives.configure(config)
  points = {k: v for k, v in (('batch_size', _ints(_SWEEP_BATCH.value, 'sweep_batch')),
                              ('max_seq_length', _ints(_SWEEP_LENGTH.value, 'sweep_length')),
                              ('num_layers', _ints(_SWEEP_DEPTH.value, 'sweep_depth')))
            if v is not None}
  objective = objectives.get_objective(config)
  models = None
  if _COMPARE.value == 'hf':  # Refused before anything is timed.
    hf_benchmark.check_available()
    models = hf_benchmark.hf_models(config, objective.model)
  threads = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else (
      os.cpu_count() or 1)

  timer = benchmark.StepTimer(config, objective=objective)
  timer.run(_STEPS.value, _WARMUP.value)
  timing = timer.timing
  peak_memory = benchmark.peak_memory_bytes()  # Before anything else allocates.
  profile = None
  if _PROFILE.value:
    from common.train import benchmark_profile  # pylint: disable=g-import-not-at-top
    profile = benchmark_profile.profile(timer, _PROFILE.value)
  hf_runs = []
  if models is not None:
    hf_runs.append(_hf_run(config, objective, models, threads))
    for _ in range(_ROUNDS.value - 1):
      timer.run(_STEPS.value, 1)
      hf_runs.append(_hf_run(config, objective, models, threads))
  dtype = 'bfloat16' if config.model.dtype == 'bfloat16' else 'float32'
  roofline = benchmark.matmul_roofline(dtype, _ROOFLINE_SIZE.value)
  # One device's matmul, times the devices the step runs on: accelerators each have
  # their own; a host's CPU devices share its cores.
  copies = jax.process_count() if jax.devices()[0].platform == 'cpu' else jax.device_count()
  roofline *= copies
  peak = flops_lib.peak_flops_per_device(config.train)
  common = dict(roofline=roofline, peak=peak, devices=jax.device_count())
  rows = [benchmark_report.jax_row(timing, peak_memory=peak_memory, **common)]
  setup = _setup_lines(config, timing, threads, peak)
  pipeline = None
  if _PIPELINE.value:
    rate, note = benchmark.pipeline_rate(config)
    pipeline = {'examples_per_sec': rate, 'note': note,
                'threads': config.train.data_threads}
  notes = []
  if models is not None:
    row, line = _hf_row(hf_runs, timing, models, **common)
    rows.append(row)
    setup.append(line)
    notes += hf_benchmark.differences(config, models)
  cost = timing.xla_cost.get('flops')
  if cost:
    notes.append(f'XLA cost analysis of the compiled step: {cost / timing.tokens_per_step / 1e6:,.1f}'
                 ' MFLOP/token (it counts a scanned layer once)')
  notes.append('CPU ms/step is the process time of all its threads; wall time well above '
               'CPU time / threads means the machine was shared while it ran')
  result = {
      'title': f'benchmark: {config.name} train step', 'setup': setup, 'rows': rows,
      'ratio': benchmark_report.ratio(rows),
      'best_ratio': benchmark_report.ratio(rows, 'best_tokens_per_sec'),
      'roofline_flops_per_sec': roofline,
      'roofline_note': f'{f"{copies} x " if copies > 1 else ""}'
                       f'{dtype} [{_ROOFLINE_SIZE.value}, {_ROOFLINE_SIZE.value}] matmul '
                       'in XLA, best of 5',
      'batch_size': config.train.batch_size, 'seq_len': config.data.max_seq_length,
      'pipeline': pipeline, 'profile': profile, 'notes': notes, 'config': json.loads(config.to_json_best_effort()),
  }
  if _SWEEP.value:
    result['sweep'] = benchmark_sweep.sweep(
        config, {**benchmark_sweep.default_points(config), **points},
        steps=_SWEEP_STEPS.value)
  return result


def report(result: dict) -> str:
  from common.train import benchmark_report  # pylint: disable=g-import-not-at-top
  text = benchmark_report.table(result)
  if result.get('profile'):
    from common.train import benchmark_profile  # pylint: disable=g-import-not-at-top
    text += '\n\n' + benchmark_profile.table(result['profile'])
  sweep = result.get('sweep')
  if sweep:
    text += '\n\n' + '\n\n'.join(
        [benchmark_report.growth_table('batch size', sweep['batch_size'], 'batch_size'),
         benchmark_report.growth_table('sequence length', sweep['max_seq_length'],
                                       'max_seq_length'),
         benchmark_report.depth_table(sweep['num_layers'])])
  return text


def main(argv: list[str]) -> None:
  config = check_loaded(argv, _CONFIG, None, example='experiments/electra.py:small')
  if min(_STEPS.value, _SWEEP_STEPS.value, _ROUNDS.value) < 1 or _WARMUP.value < 0:
    fail('--steps, --sweep_steps and --rounds must be >= 1, --warmup >= 0')
  if _PLOT.value and not _SWEEP.value:
    fail('--plot draws the sweep: add --sweep')
  for path in (_OUTPUT.value, _PLOT.value):
    if path and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
      fail(f'no directory for {path}')
  result = run_main(lambda: measure(config))
  print(report(result), flush=True)
  if _OUTPUT.value:
    def write():
      from common import atomic_files  # pylint: disable=g-import-not-at-top
      atomic_files.write_text(_OUTPUT.value, json.dumps(result, indent=2) + '\n')
    run_main(write)
  if _PLOT.value:
    def draw():
      from common.train import benchmark_report  # pylint: disable=g-import-not-at-top
      benchmark_report.plot_sweep(result['sweep'], result['title'], _PLOT.value)
    run_main(draw)


if __name__ == '__main__':
  host_memory.reexec_with_huge_pages()
  app.run(main, flags_parser=parse_flags)
