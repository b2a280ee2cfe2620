"""The benchmark's rows, table and JSON: one row per framework, the ratio, the notes.

A row is a plain dict (it goes into the JSON as it is): compile seconds, ms/step
(median, p10, p90, min, max), CPU ms/step, tokens/s (= tokens per step / median step
time), model FLOPs per token (`Objective.flops_per_token`), achieved model FLOP/s, its
fraction of the measured matmul roofline, MFU where the peak is known, and peak memory.
"""

from typing import Any

from common.train import benchmark
from common.train import flops as flops_lib


def row(name: str, *, compile_s: float | None, step_seconds: list[float],
        cpu_seconds: list[float], tokens_per_step: int, flops_per_token: float,
        roofline: float | None, peak: float | None, devices: int,
        peak_memory: tuple[int, str], **extra: Any) -> dict[str, Any]:
  """One framework's measurements, with everything derived from them."""
  step_ms = benchmark.spread(step_seconds)
  tokens_per_sec = tokens_per_step / (step_ms['median'] / 1e3)
  flops_per_sec = tokens_per_sec * flops_per_token
  return {
      'name': name, 'compile_s': compile_s, 'step_ms': step_ms,
      'cpu_ms': benchmark.spread(cpu_seconds), 'steps': len(step_seconds),
      'tokens_per_step': tokens_per_step, 'tokens_per_sec': tokens_per_sec,
      'best_tokens_per_sec': tokens_per_step / (step_ms['min'] / 1e3),
      'model_flops_per_token': flops_per_token, 'model_flops_per_sec': flops_per_sec,
      'roofline_fraction': flops_per_sec / roofline if roofline else None,
      'mfu': flops_lib.mfu(tokens_per_sec, flops_per_token, peak, devices),
      'peak_memory_bytes': peak_memory[0], 'peak_memory_kind': peak_memory[1],
      **extra,
  }


def jax_row(timing: benchmark.StepTiming, **kwargs) -> dict[str, Any]:
  return row('JAX (this repo)', compile_s=timing.compile_s,
             step_seconds=timing.step_seconds, cpu_seconds=timing.cpu_seconds,
             tokens_per_step=timing.tokens_per_step,
             flops_per_token=timing.flops_per_token, parameters=timing.parameters,
             xla_cost=timing.xla_cost, **kwargs)


def _fmt_bytes(n: float) -> str:
  return f'{n / 2**30:.2f} GiB' if n >= 2**30 else f'{n / 2**20:.0f} MiB'


def _cells(r: dict[str, Any]) -> list[str]:
  ms = r['step_ms']
  return [
      'eager' if r['compile_s'] is None else f"{r['compile_s']:.1f} s",
      f"{ms['median']:.0f}",
      f"{ms['p10']:.0f}-{ms['p90']:.0f} (min {ms['min']:.0f})",
      f"{r['cpu_ms']['median']:.0f}",
      f"{r['tokens_per_sec']:,.0f}",
      f"{r['model_flops_per_token'] / 1e6:,.1f} M",
      f"{r['model_flops_per_sec'] / 1e9:,.1f} G",
      f"{100 * r['roofline_fraction']:.0f}%" if r['roofline_fraction'] else '-',
      f"{100 * r['mfu']:.1f}%" if r['mfu'] is not None else 'n/a',
      f"{_fmt_bytes(r['peak_memory_bytes'])} ({r['peak_memory_kind']})",
  ]


LABELS = ['compile', 'ms/step (median)', 'ms/step p10-p90', 'CPU ms/step (median)',
          'tokens/s', 'model FLOPs/token', 'model FLOP/s', 'of matmul roofline', 'MFU',
          'peak memory']


def table(result: dict[str, Any]) -> str:
  """The printed report: a header, one column per row, the ratio, then the notes."""
  rows = result['rows']
  width = max(len(l) for l in LABELS) + 2
  cols = [[r['name']] + _cells(r) for r in rows]
  col_w = [max(len(c) for c in col) + 2 for col in cols]
  lines = [result['title'], *result['setup'], '']
  lines.append(' ' * width + ''.join(c[0].rjust(w) for c, w in zip(cols, col_w)))
  for i, label in enumerate(LABELS, start=1):
    lines.append(label.ljust(width) + ''.join(c[i].rjust(w) for c, w in zip(cols, col_w)))
  if len(rows) == 2:
    lines.append('')
    lines.append(f"JAX / HF tokens/s: {result['ratio']:.2f}x median step, "
                 f"{result['best_ratio']:.2f}x best step")
  roofline = result.get('roofline_flops_per_sec')
  if roofline:
    torch_matmul = rows[-1].get('matmul_flops_per_sec') if len(rows) == 2 else None
    lines.append(f"matmul roofline: {roofline / 1e9:,.0f} GFLOP/s "
                 f"({result['roofline_note']})" + (
                     f'; the same matmul in torch: {torch_matmul / 1e9:,.0f} GFLOP/s'
                     if torch_matmul else ''))
  pipe = result.get('pipeline')
  if pipe:
    needed = rows[0]['tokens_per_sec'] / result['seq_len']
    lines.append(f"input pipeline alone: {pipe['examples_per_sec']:,.0f} examples/s "
                 f"({pipe['examples_per_sec'] / needed:,.1f}x what the JAX step consumes, "
                 f"{needed:,.1f}/s){'; ' + pipe['note'] if pipe['note'] else ''}")
  lines += [f'note: {n}' for n in result['notes']]
  return '\n'.join(lines)


def ratio(rows: list[dict[str, Any]], key: str = 'tokens_per_sec') -> float | None:
  return float(rows[0][key] / rows[1][key]) if len(rows) == 2 else None


def growth_table(title: str, points: list[dict[str, Any]], key: str) -> str:
  """A sweep axis: each value's compile time, ms/step and tokens/s, step time relative
  to the first point, and the step time per unit of `key` relative to the first."""
  lines = [title, f"{key:>10} {'compile':>9} {'ms/step':>9} {'tokens/s':>10} "
                  f"{'x time':>7} {'x time/' + key:>14}"]
  first = points[0]
  for p in points:
    rel = p['step_ms'] / first['step_ms']
    per = rel / (p[key] / first[key])
    lines.append(f"{p[key]:>10} {p['compile_s']:>8.1f}s {p['step_ms']:>9.0f} "
                 f"{p['tokens_per_sec']:>10,.0f} {rel:>7.2f} {per:>14.2f}")
  return '\n'.join(lines)


def depth_table(points: list[dict[str, Any]]) -> str:
  """Compile time and ms/step against depth, with and without nn.scan."""
  lines = ['depth (compile time: flat under nn.scan, growing unrolled)',
           f"{'layers':>7} {'scan compile':>13} {'scan ms/step':>13} "
           f"{'unrolled compile':>17} {'unrolled ms/step':>17}"]
  for p in points:
    lines.append(f"{p['num_layers']:>7} {p['scan']['compile_s']:>12.1f}s "
                 f"{p['scan']['step_ms']:>13.0f} {p['unrolled']['compile_s']:>16.1f}s "
                 f"{p['unrolled']['step_ms']:>17.0f}")
  return '\n'.join(lines)


def plot_sweep(sweep: dict[str, Any], title: str, path: str) -> None:
  """The sweep as a PNG: step time against batch size and against sequence length
  (log-log, with the line of time proportional to the first point), and step and
  compile time against depth under nn.scan and unrolled."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  fig, axes = plt.subplots(1, 3, figsize=(14, 3.9))
  for ax, key, label in ((axes[0], 'batch_size', 'batch size'),
                         (axes[1], 'max_seq_length', 'sequence length')):
    points = sweep[key]
    xs, ys = [p[key] for p in points], [p['step_ms'] for p in points]
    ax.plot(xs, ys, marker='o', label='measured')
    if xs:
      ax.plot(xs, [ys[0] * x / xs[0] for x in xs], color='gray', linestyle='--',
              label=f'proportional to {label}')
    ax.set_xscale('log', base=2)
    ax.set_yscale('log')
    ax.set_xlabel(label)
    ax.set_ylabel('ms / step')
    ax.legend(fontsize='small')
  depth = sweep['num_layers']
  layers = [p['num_layers'] for p in depth]
  ax = axes[2]
  for name, style in (('scan', '-'), ('unrolled', '--')):
    ax.plot(layers, [p[name]['step_ms'] for p in depth], marker='o', linestyle=style,
            color='C0', label=f'step, {name}')
  ax.set_xlabel('layers')
  ax.set_ylabel('ms / step', color='C0')
  twin = ax.twinx()
  for name, style in (('scan', '-'), ('unrolled', '--')):
    twin.plot(layers, [p[name]['compile_s'] for p in depth], marker='s', linestyle=style,
              color='C3', label=f'compile, {name}')
  twin.set_ylabel('compile s', color='C3')
  lines = ax.get_legend_handles_labels()
  twin_lines = twin.get_legend_handles_labels()
  ax.legend(lines[0] + twin_lines[0], lines[1] + twin_lines[1], fontsize='small')
  fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
