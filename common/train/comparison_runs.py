"""Executing a comparison plan (common/train/comparison.py) in its workdir.

  <workdir>/plan.json                the plan (what `launch.compare` refuses to change)
  <workdir>/timing.json              seconds per stage, summed over the sessions
  <workdir>/tokenizer/               the one tokenizer every recipe reads
  <workdir>/probes/                  the probe suite (evaluation 'probes')
  <workdir>/runs/<recipe>/           each recipe's launch.train workdir
  <workdir>/models/<recipe>/step_N/  the checkpoint of step N as a model directory
  <workdir>/evaluation/<recipe>/step_N/<task>/, evaluation/random/<task>/
                                     fine-tuning workdirs (results.json)

Everything is resumable and reused: pretraining resumes from the loop's checkpoints
and stops (`stop_after`) at each evaluated step, whose checkpoint is written out as a
model directory before training goes on, so a later point never overwrites an earlier
one; a finished fine-tuning (its results.json) is read, not run again.
"""

from collections.abc import Callable
import hashlib
import json
import os
import shutil
from typing import Any

import ml_collections
from tqdm import tqdm

from common import atomic_files
from common.data import corpus as corpus_lib
from common.data import probe_tasks
from common.data import tokenizer as tokenizer_lib
from common.errors import UserError
from common.interop import model_dir
from common.train import checkpoint as checkpoint_lib
from common.train import pretraining
from common.train import start_evaluation

PLAN = 'plan.json'
# Seconds spent per stage, summed over every session of the comparison.
TIMING = 'timing.json'
RANDOM = 'random'
# experiments/glue.py's `get_config(task)`, passed in by the entry point.
FinetuneConfig = Callable[[str], ml_collections.ConfigDict]


def say(message: str) -> None:
  tqdm.write(f'[compare] {message}')


def read_plan(workdir: str) -> dict | None:
  path = os.path.join(workdir, PLAN)
  return model_dir.read_json(path) if os.path.isfile(path) else None


def write_plan(workdir: str, plan: dict) -> None:
  atomic_files.write_text(os.path.join(workdir, PLAN),
                          json.dumps(plan, indent=2, sort_keys=True) + '\n')


def add_time(workdir: str, stage: str, seconds: float) -> dict[str, float]:
  """Adds `seconds` to `stage` ('random evaluation', '<recipe> pretraining', ...) in
  timing.json; returns every stage's total so far."""
  path = os.path.join(workdir, TIMING)
  timing = model_dir.read_json(path) if os.path.isfile(path) else {}
  timing[stage] = timing.get(stage, 0.0) + seconds
  atomic_files.write_text(path, json.dumps(timing, indent=2, sort_keys=True) + '\n')
  return timing


def _sha256(path: str) -> str:
  with open(path, 'rb') as f:
    return hashlib.sha256(f.read()).hexdigest()


def shared_tokenizer(workdir: str, config, plan: dict) -> str:
  """The comparison's tokenizer file: trained once on the training documents of the
  shared corpus (`config.data`, any recipe's), then read by every recipe. Its
  checksum goes into the plan; a file that no longer matches it is refused."""
  directory = os.path.join(workdir, 'tokenizer')
  recorded = plan['tokenizer'].get('sha256')
  existing = tokenizer_lib.workdir_tokenizer(directory) if os.path.isdir(directory) else None
  if recorded and (existing is None or _sha256(existing) != recorded):
    raise UserError(f'the tokenizer in {directory} is missing or differs from the one '
                    f'{os.path.join(workdir, PLAN)} records; the runs were trained with '
                    'that one')
  if existing is None:
    say(f'training the shared tokenizer ({plan["tokenizer"]["vocab_size"]} pieces)')
    train_docs, _ = corpus_lib.load_corpus(config.data)
    tokenizer_config = ml_collections.ConfigDict(dict(
        path='', vocab_size=plan['tokenizer']['vocab_size'],
        model_type=plan['tokenizer']['model_type'], seed=config.seed))
    existing = tokenizer_lib.get_tokenizer(
        tokenizer_config, directory,
        lambda: corpus_lib.corpus_sentences(train_docs)).model_path
  plan['tokenizer']['sha256'] = _sha256(existing)
  return existing


def model_path(workdir: str, recipe: str, step: int) -> str:
  return os.path.join(workdir, 'models', recipe, f'step_{step}')


def export_point(run_dir: str, step: int, out_dir: str) -> None:
  """Writes checkpoint `step` of a pretraining workdir as a model directory (every
  parameter, the model config, the objective and its fine-tuning head, the tokenizer),
  which fine-tuning starts from (common/train/finetuning.py `resolve_start`)."""
  params, step = model_dir.restore_params(run_dir, step)
  config = model_dir.read_json(os.path.join(run_dir, 'config.json'))
  source = {'from': 'workdir', 'path': run_dir, 'step': step,
            'objective': config['objective']['name']}
  if config['objective'].get('head_activation'):
    source['head_activation'] = config['objective']['head_activation']
  tokenizer = tokenizer_lib.workdir_tokenizer(run_dir)
  with model_dir.atomic_directory(out_dir) as tmp:
    model_dir.write_contents(tmp, params, {**config['model'], 'source_step': step}, source)
    shutil.copy(tokenizer, os.path.join(tmp, os.path.basename(tokenizer)))


def pretrain_points(workdir: str, recipe: str, config, points: list[int]
                    ) -> dict[int, str]:
  """Pretrains `recipe` up to each of `points` in turn, exporting each.

  Returns:
    {step: model directory} of every point available; a point below what an earlier
    session already trained past, whose checkpoint is gone, is left out with a note.
  """
  run_dir = os.path.join(workdir, 'runs', recipe)
  out = {}
  for step in sorted(points):
    target = model_path(workdir, recipe, step)
    if model_dir.is_model_dir(target):
      out[step] = target
      continue
    on_disk = checkpoint_lib.steps_on_disk(os.path.join(run_dir, 'checkpoints'))
    trained = on_disk[0] if on_disk else 0
    if step < trained and step not in on_disk:
      say(f'{recipe}: no checkpoint of step {step} (trained to {trained} before it was '
          'planned); that point is left out')
      continue
    if step > trained:
      say(f'{recipe}: pretraining to step {step} of {config.train.steps}')
      pretraining.pretrain(config, run_dir, stop_after=step)
    export_point(run_dir, step, target)
    out[step] = target
  return out


def task_dirs(workdir: str, evaluation: dict, data_config, seed: int) -> dict[str, dict]:
  """{task: {'dir': its data directory, 'majority': dev majority share or None}}.

  Probes: the suite built once from the shared corpus' held-out documents; GLUE: the
  task directories under `glue_dir`.
  """
  tasks = list(evaluation['tasks'])
  if evaluation['kind'] == 'probes':
    index = probe_tasks.build_probe_suite(data_config, os.path.join(workdir, 'probes'),
                                          seed=seed)
    available = index['tasks']
    missing = [t for t in tasks if t not in available]
    if missing:
      raise UserError(f'probe task(s) {", ".join(missing)} not built from this corpus '
                      f'(skipped: {index.get("skipped", {})}); available: '
                      f'{", ".join(available)}')
    return {t: {'dir': os.path.join(workdir, 'probes', t),
                'majority': available[t]['majority_baseline']['dev']}
            for t in tasks or available}
  from common.data import glue  # pylint: disable=g-import-not-at-top
  return {t: {'dir': os.path.join(evaluation['glue_dir'], glue.get_task(t).glue_dir),
              'majority': None} for t in tasks}


def evaluate_start(finetune_config: FinetuneConfig, evaluation: dict, tasks: dict,
                   out_dir: str, *, init_from: str, pretraining_config,
                   tokenizer: str = '') -> dict[str, dict]:
  """One start fine-tuned on every task: {task: `start_evaluation.summarize`}."""
  rows = {}
  for task, spec in tasks.items():
    config = start_evaluation.task_config(
        finetune_config('generic' if evaluation['kind'] == 'probes' else task),
        init_from=init_from, data_dir=spec['dir'], pretraining=pretraining_config,
        tokenizer=tokenizer, seeds=evaluation['seeds'], epochs=evaluation['epochs'],
        learning_rate=evaluation['learning_rate'], layer_decay=evaluation['layer_decay'])
    results = start_evaluation.finetune(config, os.path.join(out_dir, task))
    rows[task] = start_evaluation.summarize(results)
  return rows


def point_row(recipe: str, step: int, entry: dict, scores: dict) -> dict[str, Any]:
  """A row of the report: a recipe's checkpoint, its pretraining FLOPs and scores."""
  flops = entry['flops_per_token'] * entry['tokens_per_step'] * step
  return {'recipe': recipe, 'size': entry['size'], 'step': step, 'steps': entry['steps'],
          'flops': flops, 'scores': scores}
