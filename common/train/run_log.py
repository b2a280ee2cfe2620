"""What a run leaves for people to look at: metrics.jsonl, TensorBoard events, a plot.

`metrics.jsonl` has one JSON object per logged step. Training lines carry `step`,
`loss`, `learning_rate`, `tokens_per_sec` and the objective's own metrics
(`mlm_accuracy`, `nsp_accuracy`, ...); evaluation lines carry the same step and
`eval_`-prefixed metrics. Only process 0 writes.
"""

import json
import math
import os
from typing import Any

from tensorboardX import SummaryWriter

from common import atomic_files


class RunLog:
  """Appends metrics to metrics.jsonl and TensorBoard under the workdir.

  The TensorBoard events mirror metrics.jsonl: on a resume, lines past the restored
  step (an interrupted run's, which the resumed run redoes) are dropped from
  metrics.jsonl and the event files are rewritten from the lines kept, so TensorBoard
  never shows a step twice. A fresh start moves an old metrics.jsonl to
  metrics.jsonl.old and drops the events that mirrored it.
  """

  def __init__(self, workdir: str, *, resume_step: int = 0, enabled: bool = True):
    self.path = os.path.join(workdir, 'metrics.jsonl')
    self.enabled = enabled
    if not enabled:
      return
    kept = []
    if resume_step and os.path.exists(self.path):
      kept = [line for line in read_metrics(self.path) if line['step'] <= resume_step]
      atomic_files.write_text(self.path, ''.join(json.dumps(l) + '\n' for l in kept))
    elif not resume_step and os.path.exists(self.path):
      os.replace(self.path, self.path + '.old')
    tb_dir = os.path.join(workdir, 'tensorboard')
    stale = [os.path.join(tb_dir, n) for n in os.listdir(tb_dir)
             if 'tfevents' in n] if os.path.isdir(tb_dir) else []
    for path in stale:  # Out of the way of the new file's name (same second, host).
      os.replace(path, path + '.stale')
    self._file = open(self.path, 'a')
    self._tb = SummaryWriter(tb_dir)
    if stale:
      for record in kept:
        self._add_scalars(record['step'], record)
      self._tb.flush()
      for path in stale:
        os.remove(path + '.stale')

  def _add_scalars(self, step: int, metrics: dict, prefix: str = '') -> None:
    for k, v in metrics.items():
      if k != 'step' and isinstance(v, (int, float)) and math.isfinite(v):
        self._tb.add_scalar(prefix + k, v, step)

  def write(self, step: int, metrics: dict[str, float], prefix: str = '') -> None:
    if not self.enabled:
      return
    record = {'step': int(step)}
    record.update({prefix + k: _json_number(v) for k, v in metrics.items()})
    self._file.write(json.dumps(record) + '\n')
    self._file.flush()
    self._add_scalars(step, metrics, prefix)
    self._tb.flush()

  def close(self) -> None:
    if self.enabled:
      self._file.close()
      self._tb.close()


def _json_number(v: Any) -> Any:
  return v if not isinstance(v, float) or math.isfinite(v) else None


def read_metrics(path: str) -> list[dict]:
  """The records of a metrics.jsonl file, in order."""
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def write_summary(workdir: str, summary: dict) -> str:
  path = os.path.join(workdir, 'summary.json')
  atomic_files.write_text(path, json.dumps(summary, indent=2, sort_keys=True) + '\n')
  return path


def plot_curves(workdir: str) -> str:
  """Writes loss_curve.png: train/eval loss and eval accuracies against step."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  records = read_metrics(os.path.join(workdir, 'metrics.jsonl'))
  train = [r for r in records if 'loss' in r and r['loss'] is not None]
  evals = [r for r in records if 'eval_loss' in r]
  fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
  ax_loss.plot([r['step'] for r in train], [r['loss'] for r in train], label='train')
  ax_loss.plot([r['step'] for r in evals], [r['eval_loss'] for r in evals], 'o-',
               label='held-out')
  ax_loss.set(xlabel='step', ylabel='loss', title='loss')
  ax_loss.legend()
  acc_keys = sorted({k for r in evals for k in r if k.endswith('_accuracy')})
  for key in acc_keys:
    ax_acc.plot([r['step'] for r in evals], [r[key] for r in evals], 'o-',
                label=key[len('eval_'):])
  ax_acc.set(xlabel='step', ylabel='accuracy', title='held-out accuracy')
  if acc_keys:
    ax_acc.legend()
  fig.suptitle(os.path.basename(os.path.abspath(workdir)))
  fig.tight_layout()
  path = os.path.join(workdir, 'loss_curve.png')
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path
