"""Fine-tuning one start on one task over seeds, and the summary of its scores.

What `launch.evaluate` (a run's checkpoint against a random encoder on the probe
suite) and `launch.compare` (every recipe's checkpoints and one random control)
share: the fine-tuning config of a start on a task (common/train/finetuning.py
through experiments/glue.py's config, which the caller passes in), reuse of a
finished evaluation, and the mean, spread and median over seeds.
"""

import os
import statistics
from typing import Any

from common.interop import model_dir
from common.train import finetuning


def task_config(finetune_config, *, init_from: str, data_dir: str, pretraining,
                tokenizer: str, seeds: int, epochs: float, learning_rate: float,
                layer_decay: float = 0.0):
  """`finetune_config` (experiments/glue.py's, generic or a GLUE task) set to fine-tune
  `init_from` on the task in `data_dir`.

  Args:
    finetune_config: a fresh experiments/glue.py config (modified and returned).
    init_from: a pretraining workdir, a model directory, or 'random'.
    data_dir: the task's directory.
    pretraining: the pretraining config whose model a random start builds and whose
      data section (corpus, sequence length) the task is read with.
    tokenizer: the tokenizer file of a random start ('' for a pretrained one, which
      brings its own).
    seeds, epochs, learning_rate: the runs; layer_decay 0 = the family default.
  """
  config = finetune_config
  config.update(init_from=init_from, data_dir=data_dir, num_seeds=seeds, epochs=epochs)
  config.model.update(pretraining.model.to_dict())
  config.tokenizer.path = tokenizer
  config.data.update(pretraining.data.to_dict())
  config.data.max_seq_length = pretraining.data.max_seq_length
  config.optimizer.update(learning_rate=learning_rate, layer_decay=layer_decay)
  return config


def finished(out_dir: str, seeds: int) -> dict[str, Any] | None:
  """results.json of a fine-tuning that already ran `seeds` scored runs, else None."""
  path = os.path.join(out_dir, 'results.json')
  if not os.path.isfile(path):
    return None
  results = model_dir.read_json(path)
  runs = [r for r in results.get('runs', []) if r.get('score') is not None]
  return results if len(runs) == seeds else None


def finetune(config, out_dir: str) -> dict[str, Any]:
  """results.json of `config` in `out_dir`: reused when finished, else fine-tuned
  (finetuning.finetune reuses its finished seeds)."""
  return finished(out_dir, config.num_seeds) or finetuning.finetune(config, out_dir)


def summarize(results: dict[str, Any]) -> dict[str, Any]:
  """Dev scores over seeds: mean, standard deviation, median and each run's."""
  scores = [r['score'] for r in results['runs'] if r['score'] is not None]
  mean = statistics.fmean(scores) if scores else float('nan')
  std = statistics.stdev(scores) if len(scores) > 1 else (0.0 if scores else float('nan'))
  return {'mean': mean, 'std': std, 'median': results.get('median', {}).get('score'),
          'scores': scores}


def control_settings(pretraining, family_defaults) -> tuple[float, str]:
  """(layer decay, task head) of the pretraining run's family (`family_defaults` of
  experiments/glue.py; ELECTRA: 0.8 and GeLU): both starts fine-tune with them, so the
  random control differs from the pretrained start in its weights only."""
  objective, model = pretraining.objective.name, pretraining.model.to_dict()
  family, width = finetuning.family(objective, model)
  layer_decay = family_defaults[f'{family}_{width}'].layer_decay
  return layer_decay, finetuning.head_activation(objective, model,
                                                 pretraining.objective.to_dict())
