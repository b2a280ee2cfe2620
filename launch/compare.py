r"""Pretrains several recipes at equal compute and compares them fine-tuned, in one command.

  python -m launch.compare --recipes=bert,roberta,electra,albert --scale=cpu \
      --workdir=/tmp/compare_cpu
  python -m launch.compare --recipes=bert,electra --scale=gpu-small \
      --corpus=text:/data/owt/*.txt --workdir=/data/compare_small
  python -m launch.compare --scale=paper --dry_run --workdir=/tmp/plan

For each recipe the size of the scale (common/train/comparison.py `SCALES`) and the
number of steps that spends `--budget_flops` training FLOPs (the project's count,
generator included for ELECTRA; within 5%). Every recipe pretrains on the same corpus
with the same tokenizer (trained once), stops at 1/4, 1/2 and all of its steps
(`--fractions`), and each of those checkpoints, with one shared random-init control,
is fine-tuned on the same tasks with the same recipe and seeds (`--eval`: the probe
suite from the held-out documents, or GLUE from a glue_data directory). Writes
`<workdir>/comparison.md`, `.json` and `.png`: score against pretraining FLOPs, a
curve per recipe.

Started again on its workdir it continues where it stopped (pretraining resumes from
its checkpoints, finished fine-tunings are read back) and reuses what is done when
recipes are added or the budget grows; a different scale, corpus, tokenizer or
evaluation is refused (one `error:` line, exit status 2), as are unknown recipes and a
budget too small for one step, before anything is written.
"""

import dataclasses
import os
import time

from absl import app
from absl import flags
from absl import logging

from launch.cli import fail
from launch.cli import parse_flags
from launch.cli import run_main

_RECIPES = flags.DEFINE_list('recipes', None, "Recipes to compare (default: the "
                             "scale's), e.g. bert,roberta,electra,albert.")
_SCALE = flags.DEFINE_string('scale', 'cpu', 'cpu, gpu-small or paper.')
_BUDGET = flags.DEFINE_float('budget_flops', None, "Training FLOPs per recipe (default: "
                             "the scale's).")
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory of the whole comparison.')
_EVAL = flags.DEFINE_string('eval', None, "'probes' or 'glue:DIR' (a glue_data "
                            "directory); default: the scale's.")
_EVAL_TASKS = flags.DEFINE_list('eval_tasks', None, "Probe or GLUE tasks (default: the "
                                "scale's; for GLUE every task but WNLI).")
_EVAL_SEEDS = flags.DEFINE_integer('eval_seeds', None, 'Fine-tuning seeds per task.')
_EVAL_EPOCHS = flags.DEFINE_float('eval_epochs', None, 'Fine-tuning epochs.')
_EVAL_LR = flags.DEFINE_float('eval_learning_rate', None, 'Fine-tuning peak rate.')
_CORPUS = flags.DEFINE_string(
    'corpus', None, "default, text:GLOB[,GLOB], jsonl:GLOB[,GLOB] or tfds:NAME "
    "(default: 'default' for --scale=cpu; required at the other scales).")
_TEXT_FIELD = flags.DEFINE_string('corpus_text_field', 'text',
                                  'The text field of JSONL records or TFDS examples.')
_MAX_DOCUMENTS = flags.DEFINE_integer(
    'corpus_max_documents', 0, 'A seeded random subset of this many documents (0: all).')
_FRACTIONS = flags.DEFINE_list('fractions', ['0.25', '0.5', '1'],
                               'Checkpoints to evaluate, as fractions of the steps.')
_DRY_RUN = flags.DEFINE_bool('dry_run', False, 'Print the plan (no --corpus needed); '
                             'write nothing.')

# GLUE's tasks, as the ELECTRA paper scores them (WNLI left out, Appendix B).
GLUE_TASKS = ('cola', 'sst2', 'mrpc', 'stsb', 'qqp', 'mnli', 'qnli', 'rte')


def corpus_fields(spec: str, scale, text_field: str, max_documents: int = 0, *,
                  required: bool = True) -> dict:
  """`--corpus` -> the shared `config.data` corpus fields (`required`: refuse a
  missing one at a scale that needs a real corpus)."""
  from common.data import corpus  # pylint: disable=g-import-not-at-top
  from common.errors import UserError  # pylint: disable=g-import-not-at-top
  if spec is None:
    if scale.corpus_required and required:
      raise UserError(f'--scale={scale.name} needs --corpus=text:GLOB, jsonl:GLOB or '
                      'tfds:NAME (or --corpus=default, Python\'s own documentation, '
                      'which is too small for this scale)')
    spec = 'default'
  source, _, rest = spec.partition(':')
  if source not in corpus.SOURCES or (source == 'default') != (not rest):
    raise UserError(f'--corpus {spec!r}: expected default, text:GLOB[,GLOB], '
                    'jsonl:GLOB[,GLOB] or tfds:NAME')
  fields = corpus.source_config(source)
  if max_documents < 0:
    raise UserError(f'--corpus_max_documents must be >= 0, got {max_documents}')
  fields.update(heldout_fraction=scale.heldout_fraction, text_field=text_field,
                max_documents=max_documents)
  if source in ('text', 'jsonl'):
    fields['paths'] = rest
  elif source == 'tfds':
    fields['tfds_name'] = rest
  return fields


def evaluation(scale):
  """--eval and its flags over the scale's evaluation."""
  from common.data import glue  # pylint: disable=g-import-not-at-top
  from common.errors import UserError  # pylint: disable=g-import-not-at-top
  spec = scale.evaluation
  kind = _EVAL.value or spec.kind
  if kind.startswith('glue:'):
    directory = os.path.abspath(kind[len('glue:'):])
    if not os.path.isdir(directory):
      raise UserError(f'--eval glue directory {directory} does not exist')
    tasks = tuple(glue.get_task(t) for t in (_EVAL_TASKS.value or GLUE_TASKS))
    missing = [t.glue_dir for t in tasks
               if not os.path.isdir(os.path.join(directory, t.glue_dir))]
    if missing:
      raise UserError(f'--eval glue directory {directory} has no {", ".join(missing)} '
                      '(GLUE\'s layout: glue_data/<TASK>/; --eval_tasks picks fewer)')
    spec = dataclasses.replace(spec, kind='glue', glue_dir=directory,
                               tasks=tuple(t.name for t in tasks))
  elif kind == 'probes':
    if _EVAL_TASKS.value is not None:
      spec = dataclasses.replace(spec, tasks=tuple(_EVAL_TASKS.value))
  else:
    raise UserError(f"--eval must be 'probes' or 'glue:DIR', got {kind!r}")
  for flag, field in ((_EVAL_SEEDS, 'seeds'), (_EVAL_EPOCHS, 'epochs'),
                      (_EVAL_LR, 'learning_rate')):
    if flag.value is not None:
      spec = dataclasses.replace(spec, **{field: flag.value})
  if spec.seeds < 1 or spec.epochs <= 0 or spec.learning_rate <= 0:
    raise UserError('--eval_seeds must be at least 1, --eval_epochs and '
                    '--eval_learning_rate positive')
  return spec


def fractions() -> tuple[float, ...]:
  from common.errors import UserError  # pylint: disable=g-import-not-at-top
  try:
    values = tuple(sorted({float(f) for f in _FRACTIONS.value}))
  except ValueError:
    values = ()
  if not values or not all(0 < f <= 1 for f in values):
    raise UserError(f'--fractions must be numbers in (0, 1], got '
                    f'{",".join(_FRACTIONS.value)}')
  return values


def plan_command() -> tuple:
  """(scale, plan, configs) from the flags and the workdir's recorded plan; nothing
  is written."""
  from common.train import comparison  # pylint: disable=g-import-not-at-top
  from common.train import comparison_runs  # pylint: disable=g-import-not-at-top
  from common.train import pretraining  # pylint: disable=g-import-not-at-top
  from common.train import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  scale = comparison.get_scale(_SCALE.value)
  recipes = list(_RECIPES.value) if _RECIPES.value is not None else list(scale.recipes)
  comparison.check_recipes(recipes)
  budget = scale.budget_flops if _BUDGET.value is None else _BUDGET.value
  corpus = corpus_fields(_CORPUS.value, scale, _TEXT_FIELD.value, _MAX_DOCUMENTS.value,
                         required=not _DRY_RUN.value)
  plan, configs = comparison.make_plan(recipes, scale, budget, corpus, evaluation(scale),
                                       fractions())
  for config in configs.values():
    pretraining.check_config(config)
  workdir = os.path.abspath(_WORKDIR.value)
  workdir_lib.check_writable(workdir)
  old = comparison_runs.read_plan(workdir)
  if old is not None:
    plan = comparison.merge_plans(old, plan, os.path.join(workdir, comparison_runs.PLAN))
  return scale, plan, configs


def describe(plan: dict, recipes) -> str:
  lines = [f'{plan["scale"]}: {plan["budget_flops"]:.3g} training FLOPs per recipe']
  for recipe in recipes:
    e = plan['recipes'][recipe]
    lines.append(f'  {recipe:15s} {e["size"]:22s} {e["flops_per_token"]:10.4g} FLOPs/token '
                 f'x {e["tokens_per_step"]} tokens x {e["steps"]} steps = '
                 f'{e["flops"]:.4g} ({e["budget_error"]:+.2%}); evaluated at '
                 f'{", ".join(map(str, e["points"]))}')
  return '\n'.join(lines)


def compare(scale, plan: dict, configs: dict, workdir: str) -> dict:
  """Runs (or continues) the comparison; returns the report."""
  from common.train import comparison  # pylint: disable=g-import-not-at-top
  from common.train import comparison_report  # pylint: disable=g-import-not-at-top
  from common.train import comparison_runs as runs  # pylint: disable=g-import-not-at-top
  from common.train import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  from experiments import glue  # pylint: disable=g-import-not-at-top

  start = time.time()
  workdir = os.path.abspath(workdir)
  any_config = next(iter(configs.values()))
  with workdir_lib.guard(workdir):
    os.makedirs(workdir, exist_ok=True)
    tokenizer = runs.shared_tokenizer(workdir, any_config, plan)
    tasks = runs.task_dirs(workdir, plan['evaluation'], any_config.data, any_config.seed)
    runs.write_plan(workdir, plan)
    workdir_lib.commit(workdir)
  for config in configs.values():
    config.tokenizer.path = tokenizer
  reference = comparison.recipe_config('bert', scale, plan['corpus'],
                                       tokenizer_path=tokenizer)
  report = {
      'scale': scale.name, 'budget_flops': plan['budget_flops'],
      'corpus': plan['corpus']['source'] + (
          f':{plan["corpus"]["paths"] or plan["corpus"]["tfds_name"]}'
          if plan['corpus']['source'] != 'default' else ''),
      'vocab_size': plan['tokenizer']['vocab_size'],
      'max_seq_length': plan['max_seq_length'], 'batch_size': plan['batch_size'],
      'evaluation': plan['evaluation'], 'tasks': list(tasks),
      'majority': {t: spec['majority'] for t, spec in tasks.items()},
      'random_size': comparison.size_label('bert', scale), 'random': {}, 'rows': [],
      'notes': [],
      'paper': [vars(p) for p in scale.paper], 'plan': plan['recipes'],
  }
  out = lambda *parts: os.path.join(workdir, 'evaluation', *parts)
  runs.say('fine-tuning the random-init control')
  report['random'] = runs.evaluate_start(
      glue.get_config, plan['evaluation'], tasks, out(runs.RANDOM), init_from='random',
      pretraining_config=reference, tokenizer=tokenizer)
  report['timing'] = runs.add_time(workdir, 'setup and random evaluation',
                                   time.time() - start)
  for recipe, config in configs.items():
    entry = plan['recipes'][recipe]
    began = time.time()
    exported = runs.pretrain_points(workdir, recipe, config, entry['points'])
    pretrained = time.time()
    runs.add_time(workdir, f'{recipe} pretraining', pretrained - began)
    missing = sorted(set(entry['points']) - set(exported))
    if missing:
      report['notes'].append(f'{recipe}: no checkpoint of step(s) {missing}')
    for step, model in sorted(exported.items()):
      runs.say(f'{recipe}: fine-tuning the checkpoint of step {step}')
      scores = runs.evaluate_start(glue.get_config, plan['evaluation'], tasks,
                                   out(recipe, f'step_{step}'), init_from=model,
                                   pretraining_config=config)
      report['rows'].append(runs.point_row(recipe, step, entry, scores))
    report['timing'] = runs.add_time(workdir, f'{recipe} evaluation',
                                     time.time() - pretrained)
    comparison_report.write(workdir, report)  # The table so far, after each recipe.
  report['session_sec'] = time.time() - start
  comparison_report.write(workdir, report)
  return report


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    fail(f'unexpected arguments: {" ".join(argv[1:])}')
  if not _WORKDIR.value:
    fail('--workdir is required: the directory of the whole comparison')
  logging.set_verbosity(logging.WARNING)
  from common.train import distributed  # pylint: disable=g-import-not-at-top

  def body():
    scale, plan, configs = plan_command()
    print(describe(plan, configs))
    if _DRY_RUN.value:
      return None
    distributed.initialize()
    return compare(scale, plan, configs, _WORKDIR.value)

  report = run_main(body, _WORKDIR.value)
  if report is None:
    return
  from common.train import comparison_report  # pylint: disable=g-import-not-at-top
  for row in report['rows']:
    print(f'{row["recipe"]} step {row["step"]} ({row["flops"]:.3g} FLOPs): mean '
          f'{comparison_report.mean_score(row["scores"]):.3f}')
  print(f'random init: mean {comparison_report.mean_score(report["random"]):.3f}; '
        f'{report["session_sec"]:.0f}s this session, '
        f'{sum(report["timing"].values()):.0f}s in all; table: '
        f'{_WORKDIR.value}/comparison.md')


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
