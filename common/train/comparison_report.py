"""The comparison's report: one table (comparison.md, comparison.json) and one plot
(comparison.png), score against pretraining FLOPs, a curve per recipe.

Rows come from common/train/comparison_runs.py `point_row`: a recipe's checkpoint
(step, pretraining FLOPs) and its fine-tuning scores per task (mean, spread over
seeds); the random-init control and each task's majority share are the floors to read
them against, and the paper's numbers (common/train/comparison.py `Scale.paper`) stand
beside ours where the scale has them.
"""

import json
import math
import os
import statistics
from typing import Any

from common import atomic_files

NAMES = ('comparison.md', 'comparison.json', 'comparison.png')


def mean_score(scores: dict[str, dict]) -> float:
  """The unweighted mean over tasks of each task's mean over seeds (as GLUE's score)."""
  values = [s['mean'] for s in scores.values()]
  return statistics.fmean(values) if values else float('nan')


def _cell(score: dict | None) -> str:
  if not score or score['mean'] is None or math.isnan(score['mean']):
    return '-'
  return f'{score["mean"]:.3f} ± {score["std"]:.3f}'


def markdown(report: dict[str, Any]) -> str:
  """The table: a row per recipe and evaluated checkpoint, then the random control and
  the majority baseline; the header names what every row shares."""
  tasks = report['tasks']
  head = ['recipe', 'size', 'step', 'pretraining FLOPs', '% of budget',
          *tasks, 'mean', 'vs random']
  lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  random_mean = mean_score(report['random']) if report['random'] else float('nan')
  for row in report['rows']:
    mean = mean_score(row['scores'])
    cells = [row['recipe'], row['size'], f'{row["step"]} / {row["steps"]}',
             f'{row["flops"]:.3g}', f'{row["flops"] / report["budget_flops"]:.0%}',
             *(_cell(row['scores'].get(t)) for t in tasks), f'{mean:.3f}',
             f'{mean - random_mean:+.3f}']
    lines.append('| ' + ' | '.join(cells) + ' |')
  if report['random']:
    lines.append('| random init | ' + report['random_size'] + ' | 0 | 0 | 0% | '
                 + ' | '.join(_cell(report['random'].get(t)) for t in tasks)
                 + f' | {random_mean:.3f} | |')
  majority = report.get('majority') or {}
  if any(v is not None for v in majority.values()):
    lines.append('| majority class | | | | | ' + ' | '.join(
        f'{majority[t]:.3f}' if majority.get(t) is not None else '-' for t in tasks)
                 + ' | | |')
  e = report['evaluation']
  text = [f'# Recipes at equal pretraining compute ({report["scale"]})', '',
          f'Budget {report["budget_flops"]:.3g} training FLOPs per recipe (the project\'s '
          'count, common/train/objectives.py; generator included for ELECTRA-style '
          f'recipes); corpus {report["corpus"]}; one tokenizer '
          f'({report["vocab_size"]} pieces) for all; sequence length '
          f'{report["max_seq_length"]}, batch {report["batch_size"]}.', '',
          f'Evaluation: {e["kind"]} ({", ".join(tasks)}), {e["seeds"]} seed(s), '
          f'{e["epochs"]:g} epochs, lr {e["learning_rate"]:g}, layer decay '
          f'{e["layer_decay"]:g}, the same for every start; dev score, mean ± standard '
          'deviation over seeds; "mean" averages the tasks.', '', *lines, '']
  if report.get('paper'):
    text += ['The paper\'s numbers at this scale (GLUE dev score; their FLOPs count '
             'differs from ours):', '', '| recipe | GLUE | train FLOPs | source |',
             '|---|---|---|---|']
    text += [f'| {p["recipe"]} | {p["score"]} | '
             f'{"-" if math.isnan(p["flops"]) else format(p["flops"], ".2g")} | '
             f'{p["source"]} |' for p in report['paper']]
    text.append('')
  timing = report.get('timing') or {}
  if timing:
    text += [f'Wall time, summed over the sessions: {sum(timing.values()) / 60:.0f} min ('
             + ', '.join(f'{stage} {sec / 60:.1f}' for stage, sec in timing.items())
             + ').', '']
  if report.get('notes'):
    text += ['Notes:', ''] + [f'- {n}' for n in report['notes']] + ['']
  return '\n'.join(text)


def plot(report: dict[str, Any], path: str) -> None:
  """Score against pretraining FLOPs (log scale), one panel per task and one for the
  mean, a line per recipe through its checkpoints; dashed: the random control,
  dotted: the majority class."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  panels = [*report['tasks'], 'mean'] if len(report['tasks']) > 1 else report['tasks']
  fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels) + 1.8, 3.8),
                           squeeze=False)
  recipes = list(dict.fromkeys(r['recipe'] for r in report['rows']))
  for ax, panel in zip(axes[0], panels):
    for recipe in recipes:
      rows = sorted((r for r in report['rows'] if r['recipe'] == recipe),
                    key=lambda r: r['flops'])
      ys = [mean_score(r['scores']) if panel == 'mean' else r['scores'][panel]['mean']
            for r in rows]
      errs = [0 if panel == 'mean' else r['scores'][panel]['std'] for r in rows]
      ax.errorbar([r['flops'] for r in rows], ys, yerr=errs, marker='o', capsize=3,
                  label=recipe)
    if report['random']:
      floor = (mean_score(report['random']) if panel == 'mean'
               else report['random'][panel]['mean'])
      ax.axhline(floor, color='gray', linestyle='--', label='random init')
    majority = (report.get('majority') or {}).get(panel)
    if majority is not None:
      ax.axhline(majority, color='black', linestyle=':', label='majority class')
    ax.set_xscale('log')
    ax.set_xlabel('pretraining FLOPs')
    ax.set_ylabel('dev score')
    ax.set_title(panel)
  axes[0][-1].legend(loc='upper left', bbox_to_anchor=(1.02, 1.0), fontsize='small')
  fig.suptitle(f'{report["scale"]}: budget {report["budget_flops"]:.3g} FLOPs per recipe')
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def write(out_dir: str, report: dict[str, Any]) -> dict[str, str]:
  """Writes the three files into `out_dir`; returns {name: path}."""
  os.makedirs(out_dir, exist_ok=True)
  paths = {name: os.path.join(out_dir, name) for name in NAMES}
  atomic_files.write_text(paths['comparison.json'],
                          json.dumps(report, indent=2, sort_keys=True) + '\n')
  atomic_files.write_text(paths['comparison.md'], markdown(report))
  plot(report, paths['comparison.png'])
  return paths
