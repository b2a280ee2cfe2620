"""Where a train step's time goes: a jax.profiler trace, summed per compiled operation.

`launch.benchmark --profile=DIR` traces a few steps of the timed step into DIR (open it
in Perfetto or TensorBoard's profile plugin) and prints the operations that took the
most time per step. The trace names each operation by its HLO instruction (on CPU a
fusion such as `ynn_fusion.16` or `bitcast_dynamic-update-slice_fusion.58`); the
compiled module's text gives that instruction's output shape and the JAX source it came
from (`op_name` metadata: `jvp(ElectraModel.discriminate)/.../mlp/wo/dot_general`), so
each line reads as "this much time in this line of the model". How the ELECTRA-Small
step was made faster was found this way (README "Performance").
"""

import collections
import glob
import gzip
import json
import os
import re
from typing import Any

import jax

# `%name = shape ... op_name="..."` of each instruction in the compiled module's text.
_INSTRUCTION = re.compile(r'^\s*%(\S+) = (\S+) .*?op_name="([^"]*)"', re.M)
_NOISE = ('jit(step_fn)/', 'closed_call/', 'while/body/')


def instructions(hlo_text: str) -> dict[str, tuple[str, str]]:
  """{instruction name: (output shape, JAX source op_name)} of a compiled module."""
  out = {}
  for name, shape, op_name in _INSTRUCTION.findall(hlo_text):
    for noise in _NOISE:
      op_name = op_name.replace(noise, '')
    out[name] = (shape, op_name)
  return out


def trace_events(directory: str) -> list[dict[str, Any]]:
  """The complete ('X') events of the newest Perfetto trace under `directory`."""
  paths = sorted(glob.glob(os.path.join(directory, '**', '*.json.gz'), recursive=True),
                 key=os.path.getmtime)
  if not paths:
    return []
  with gzip.open(paths[-1]) as f:
    data = json.load(f)
  events = data['traceEvents'] if isinstance(data, dict) else data
  return [e for e in events if e.get('ph') == 'X']


def top_operations(events: list[dict[str, Any]], hlo: dict[str, tuple[str, str]],
                   steps: int, top: int = 15) -> dict[str, Any]:
  """The `top` operations of the compiled step by time per step, and their total.

  Returns:
    {'step_ms': time in all operations per step, 'operations': [{'name', 'ms',
    'share', 'shape', 'source'}]}; only events named after an instruction count.
  """
  total_us = collections.Counter()
  for event in events:
    if event['name'] in hlo:
      total_us[event['name']] += event.get('dur', 0)
  all_ms = sum(total_us.values()) / 1e3 / steps
  operations = []
  for name, us in total_us.most_common(top):
    shape, source = hlo[name]
    ms = us / 1e3 / steps
    operations.append({'name': name, 'ms': ms, 'share': ms / all_ms if all_ms else 0.0,
                       'shape': shape, 'source': source})
  return {'step_ms': all_ms, 'operations': operations}


def profile(timer, directory: str, steps: int = 3, top: int = 15) -> dict[str, Any]:
  """Traces `steps` steps of a `benchmark.StepTimer` (not counted in its timings) into
  `directory` and sums them per operation (`top_operations`)."""
  os.makedirs(directory, exist_ok=True)
  with jax.profiler.trace(directory, create_perfetto_trace=True):
    timer.run(steps, 0, record=False)
  result = top_operations(trace_events(directory), instructions(timer.hlo_text()),
                          steps, top)
  result['directory'] = directory
  return result


def table(result: dict[str, Any]) -> str:
  """The profile as printed lines."""
  lines = [f"profile ({result['directory']}): {result['step_ms']:,.0f} ms/step in compiled "
           'operations; the largest:',
           f"{'ms/step':>8} {'share':>6}  {'operation':<40} {'shape':<28} source"]
  for op in result['operations']:
    lines.append(f"{op['ms']:>8.1f} {100 * op['share']:>5.1f}%  {op['name'][:40]:<40} "
                 f"{op['shape'][:28]:<28} {op['source'][-90:]}")
  return '\n'.join(lines)
