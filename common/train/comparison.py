"""Recipes compared at equal pretraining compute: scales, budget -> steps, the plan.

`launch.compare` pretrains several recipes on one corpus and one tokenizer, each for
the number of steps that spends the same training FLOPs (the project's own count,
`Objective.flops_per_token` x batch x sequence length x steps, generator included for
ELECTRA), and fine-tunes checkpoints along the way. This module decides what to run:

- `SCALES`: where a comparison runs (`cpu`, `gpu-small`, `paper`): each recipe's size
  there, the shared sequence length, batch and vocabulary, the default budget and
  evaluation, the expected wall time and the paper's numbers to read ours against.
- `RECIPES`: the recipes that pretrain from scratch, by name (where their experiment
  file's `get_config` lives; common/ imports no experiment file, STYLE.md 18).
- `make_plan`: for each recipe its config at the scale and the steps that match the
  budget within `TOLERANCE`, and the steps of the checkpoints to evaluate.
- `merge_plans`: a comparison started again on its workdir continues the recorded
  plan; a change that makes results incomparable (scale, corpus, tokenizer,
  evaluation, a recipe's config) is refused, added recipes and a larger budget are
  not.

Executing a plan is common/train/comparison_runs.py; the table and the plot,
common/train/comparison_report.py.
"""

import copy
import dataclasses
import hashlib
import json
from typing import Any

import ml_collections

from common import registry
from common.errors import UserError
from common.train import objectives

FORMAT = 1
# Every recipe's training FLOPs must be this close to the budget (relative).
TOLERANCE = 0.05
# Checkpoints evaluated along the way, as fractions of each recipe's steps.
FRACTIONS = (0.25, 0.5, 1.0)

# Recipe name -> the module of its experiment file (`get_config(size)`, `SIZES`).
# Distillation recipes (distilbert, tinybert) need a teacher: not a from-scratch
# comparison.
RECIPES: dict[str, str] = {
    'bert': 'experiments.bert',
    'roberta': 'experiments.roberta',
    'electra': 'experiments.electra',
    'albert': 'experiments.albert',
    'spanbert': 'experiments.spanbert',
    'bert_wwm': 'experiments.bert_wwm',
    'macbert': 'experiments.macbert',
    'ernie': 'experiments.ernie',
    # ELECTRA's Table 5 ablations (electra_jax/ablations.py).
    'electra_15': 'experiments.electra_15',
    'replace_mlm': 'experiments.replace_mlm',
    'all_tokens_mlm': 'experiments.all_tokens_mlm',
}

# The corpus fields of `config.data` (common/data/corpus.py `source_config`) that every
# recipe of a comparison shares.
CORPUS_FIELDS = ('source', 'paths', 'text_field', 'document_per', 'tfds_name',
                 'tfds_split', 'tfds_data_dir', 'heldout_split', 'heldout_fraction',
                 'max_documents', 'cache_dir')


@dataclasses.dataclass(frozen=True)
class Evaluation:
  """How every start is fine-tuned: the same tasks, recipe and seeds for all.

  Attributes:
    kind: 'probes' (common/data/probe_tasks.py, built from the held-out documents) or
      'glue' (the GLUE distribution's directories under `glue_dir`).
    tasks: probe or GLUE task names; () = every probe task the corpus gives.
    seeds: fine-tuning seeds per task and start.
    epochs: fine-tuning epochs.
    learning_rate: peak rate, the same for every start (no family defaults).
    layer_decay: layer-wise rate decay (1 = off), the same for every start.
    glue_dir: the glue_data directory (kind 'glue').
  """
  kind: str
  tasks: tuple[str, ...]
  seeds: int
  epochs: float
  learning_rate: float
  layer_decay: float = 1.0
  glue_dir: str = ''


@dataclasses.dataclass(frozen=True)
class PaperResult:
  """A number the paper reports for a recipe at a budget, to read ours against."""
  recipe: str
  score: float
  flops: float
  source: str


@dataclasses.dataclass(frozen=True)
class Scale:
  """Where a comparison runs and what it shares.

  Attributes:
    name: the `--scale` value.
    size: each recipe's size of this name; a recipe without one takes
      `fallback_size` with `fallback_model` over its model fields.
    fallback_size, fallback_model: see `size`.
    max_seq_length, batch_size, vocab_size: shared by every recipe (the tokenizer is
      trained once, at vocab_size, and given to all).
    heldout_fraction: documents held out (the probe suite is built from them).
    budget_flops: the default `--budget_flops`.
    recipes: the default `--recipes`.
    evaluation: the default evaluation.
    corpus_required: `--corpus` must be given (the default corpus is too small),
      except for a dry run.
    wall_time: expected wall time of the default comparison, and on what.
    paper: the paper's numbers at this scale.
    fallback_label: how the report names the fallback size ('' = its fields).
  """
  name: str
  size: str
  fallback_size: str
  fallback_model: dict[str, Any]
  max_seq_length: int
  batch_size: int
  vocab_size: int
  heldout_fraction: float
  budget_flops: float
  recipes: tuple[str, ...]
  evaluation: Evaluation
  corpus_required: bool
  wall_time: str
  paper: tuple[PaperResult, ...] = ()
  fallback_label: str = ''


# Clark et al. 2020, "ELECTRA: Pre-training Text Encoders as Discriminators Rather Than
# Generators" (arXiv:2003.10555). Table 1 (GLUE dev score, train FLOPs): ELECTRA-Small
# 79.9 and BERT-Small 75.1 at 1.4e18 (4 days on one V100 each); ELECTRA-Small after
# 50% / 25% / 12.5% of its training 79.0 / 77.7 / 76.0 at 7.1e17 / 3.6e17 / 1.8e17;
# ELECTRA-Base 85.1 and BERT-Base 82.2 at 6.4e19 (4 days on 16 TPUv3s). Table 5
# (base-sized models, section 3.2 "unless stated otherwise ... the same model size and
# training data as BERT-Base"): ELECTRA 85.0, All-Tokens MLM 84.3, Replace MLM 82.4,
# ELECTRA 15% 82.4, BERT 82.2.
_TABLE1 = 'ELECTRA paper (arXiv:2003.10555) Table 1'
_TABLE5 = 'ELECTRA paper (arXiv:2003.10555) Table 5'
PAPER_SMALL = (
    PaperResult('electra', 79.9, 1.4e18, _TABLE1),
    PaperResult('electra', 79.0, 7.1e17, f'{_TABLE1}, 50% trained'),
    PaperResult('electra', 77.7, 3.6e17, f'{_TABLE1}, 25% trained'),
    PaperResult('electra', 76.0, 1.8e17, f'{_TABLE1}, 12.5% trained'),
    PaperResult('bert', 75.1, 1.4e18, _TABLE1),
)
PAPER_BASE = (
    PaperResult('electra', 85.1, 6.4e19, _TABLE1),
    PaperResult('bert', 82.2, 6.4e19, _TABLE1),
    PaperResult('electra', 85.0, float('nan'), _TABLE5),
    PaperResult('all_tokens_mlm', 84.3, float('nan'), _TABLE5),
    PaperResult('replace_mlm', 82.4, float('nan'), _TABLE5),
    PaperResult('electra_15', 82.4, float('nan'), _TABLE5),
    PaperResult('bert', 82.2, float('nan'), _TABLE5),
)

# ELECTRA-Small's encoder (paper section 3.3 and Table 6: L12, H256, 4 heads, FFN 1024,
# embeddings 128), the BERT-Small of Table 1, for recipes without a 'small' size.
SMALL_MODEL = dict(num_layers=12, hidden_size=256, num_heads=4, intermediate_size=1024,
                   embedding_size=128)

SCALES: dict[str, Scale] = {
    # The CPU demos (experiments/base.py DEMO: 4 x 128 encoders, 64 tokens, batch 32),
    # at the compute of the 800-step BERT demo, measured on 2 CPU cores; evaluated on
    # the topic probe only (the one that moves at this scale, README "The probe
    # suite"), at launch.evaluate's measured CPU settings.
    'cpu': Scale(
        name='cpu', size='demo', fallback_size='demo', fallback_model={},
        max_seq_length=64, batch_size=32, vocab_size=4000, heldout_fraction=0.15,
        budget_flops=9.2e12, recipes=('bert', 'roberta', 'electra', 'albert'),
        evaluation=Evaluation('probes', ('topic',), seeds=3, epochs=10.0,
                              learning_rate=1e-3),
        corpus_required=False,
        wall_time='70 minutes measured for the 4 default recipes (27 minutes of CPU '
                  'time) on 2 CPU cores shared with 3 other jobs; README "Comparing '
                  'recipes at equal compute"'),
    # ELECTRA-Small vs BERT-Small (Table 1's setting: L12 H256, seq 128, batch 128,
    # the same hyperparameters for both) at 1/8 of Table 1's budget, the point where
    # the paper's ELECTRA-Small already scores 76.0, above fully trained BERT-Small.
    # Fine-tuning as the paper's ELECTRA-Small (Appendix B: lr 3e-4, layer-wise decay
    # 0.8, 3 epochs); 3 seeds (the paper: median of 10).
    'gpu-small': Scale(
        name='gpu-small', size='small', fallback_size='base', fallback_model=SMALL_MODEL,
        max_seq_length=128, batch_size=128, vocab_size=30522, heldout_fraction=0.02,
        budget_flops=1.8e17, recipes=('bert', 'electra'),
        evaluation=Evaluation('probes', (), seeds=3, epochs=3.0, learning_rate=3e-4,
                              layer_decay=0.8),
        corpus_required=True,
        wall_time='not measured here (no GPU on this machine); the paper trained the '
                  'full 1.4e18 in 4 days on one V100, so 1/8 of it is about 12 hours '
                  'there per recipe',
        paper=PAPER_SMALL, fallback_label='ELECTRA-Small encoder'),
    # Table 1's base-size budget written out (ELECTRA-Base's 766k steps of 256 x 512;
    # BERT-Base with the same hyperparameters) and Table 5's ablations at base size.
    'paper': Scale(
        name='paper', size='base', fallback_size='base', fallback_model={},
        max_seq_length=512, batch_size=256, vocab_size=30522, heldout_fraction=0.02,
        budget_flops=6.4e19,
        recipes=('bert', 'electra', 'electra_15', 'replace_mlm', 'all_tokens_mlm'),
        evaluation=Evaluation('probes', (), seeds=3, epochs=3.0, learning_rate=1e-4,
                              layer_decay=0.8),
        corpus_required=True,
        wall_time='the paper: 4 days on 16 TPUv3 chips per recipe (Table 1)',
        paper=PAPER_BASE),
}


# ----------------------------------------------------------------- recipe configs


def check_recipes(recipes: list[str]) -> None:
  """UserError naming an unknown or repeated recipe."""
  if not recipes:
    raise UserError('--recipes is empty; known recipes: ' + ', '.join(RECIPES))
  for name in recipes:
    if name not in RECIPES:
      raise UserError(f'unknown recipe {name!r}; known recipes: {", ".join(RECIPES)}')
  if len(set(recipes)) != len(recipes):
    raise UserError(f'--recipes names a recipe twice: {",".join(recipes)}')


def get_scale(name: str) -> Scale:
  if name not in SCALES:
    raise UserError(f'unknown --scale {name!r}; known scales: {", ".join(SCALES)}')
  return SCALES[name]


def _set(config, path: str, value) -> None:
  """config.<path> = value, refusing a field the config does not have."""
  *sections, field = path.split('.')
  node = config
  for section in sections:
    node = node[section]
  if field not in node:
    raise KeyError(f'config.{path} is not a field of experiments/base.py')
  node[field] = value


def max_predictions(masking, seq_len: int) -> int:
  """`masking.max_predictions_per_seq` at another sequence length: the ELECTRA
  reference's int((p + 0.005) L) for its budget (experiments/electra.py), else BERT's
  round(p L) + 1 (20 at 128, 78 at 512; google-research/bert uses 20 and 76-80)."""
  p = masking.mask_prob
  if masking.budget == 'electra':
    return max(1, int((p + 0.005) * seq_len))
  return max(1, round(p * seq_len) + 1)


def recipe_size(recipe: str, scale: Scale) -> tuple[str, bool]:
  """(the recipe's size at the scale, whether the recipe has a size of that name)."""
  own = scale.size in registry.resolve(f'{RECIPES[recipe]}:SIZES')
  return (scale.size if own else scale.fallback_size), own


def size_label(recipe: str, scale: Scale) -> str:
  """The size as the report names it: 'small', or 'base + fallback model'."""
  size, own = recipe_size(recipe, scale)
  if own or not scale.fallback_model:
    return size
  return f'{size}, ' + (scale.fallback_label or ' '.join(
      f'{k}={v}' for k, v in scale.fallback_model.items()))


def recipe_config(recipe: str, scale: Scale, corpus: dict[str, Any], *,
                  tokenizer_path: str = '') -> ml_collections.ConfigDict:
  """The recipe's experiment config at the scale, with what the comparison shares.

  Its own size of the scale's name (or the fallback size with the fallback model), the
  shared corpus fields, sequence length, batch size, vocabulary size and tokenizer
  file. Everything else (objective, masking, packing, optimizer) is the recipe's.
  Steps and warmup are set by `make_plan`.
  """
  size, own = recipe_size(recipe, scale)
  config = registry.resolve(f'{RECIPES[recipe]}:get_config')(size)
  if not own:
    for field, value in scale.fallback_model.items():
      _set(config, f'model.{field}', value)
  for field, value in corpus.items():
    _set(config, f'data.{field}', value)
  if config.data.max_seq_length != scale.max_seq_length:
    config.data.max_seq_length = scale.max_seq_length
    config.masking.max_predictions_per_seq = max_predictions(config.masking,
                                                             scale.max_seq_length)
  config.train.batch_size = scale.batch_size
  config.model.vocab_size = scale.vocab_size
  config.tokenizer.update(path=tokenizer_path, vocab_size=scale.vocab_size,
                          model_type='unigram')
  config.name = f'{recipe}-{scale.name}'
  return config


def fingerprint(config) -> str:
  """sha256 of the config without what the budget sets (steps, warmup) and the
  tokenizer's path: two runs with the same fingerprint train the same recipe."""
  record = config.to_dict()
  record['train'] = {k: v for k, v in record['train'].items() if k != 'steps'}
  record['optimizer'] = {k: v for k, v in record['optimizer'].items()
                         if k != 'warmup_steps'}
  record['tokenizer'] = {k: v for k, v in record['tokenizer'].items() if k != 'path'}
  text = json.dumps(record, sort_keys=True, default=str)
  return hashlib.sha256(text.encode()).hexdigest()


# ----------------------------------------------------------------- the plan


def steps_for_budget(recipe: str, flops_per_step: float, budget: float) -> int:
  """round(budget / flops_per_step), refused when that misses the budget by more than
  `TOLERANCE` (fewer than ~10 steps) or is no step at all."""
  steps = round(budget / flops_per_step)
  if steps < 1:
    raise UserError(f'--budget_flops {budget:.3g} is too small for one step of {recipe} '
                    f'({flops_per_step:.3g} FLOPs per step)')
  error = steps * flops_per_step / budget - 1
  if abs(error) > TOLERANCE:
    raise UserError(
        f'--budget_flops {budget:.3g} gives {recipe} {steps} step(s), {error:+.1%} off '
        f'the budget (more than {TOLERANCE:.0%}); use at least '
        f'{flops_per_step / (2 * TOLERANCE):.3g} FLOPs')
  return steps


def points(steps: int, fractions=FRACTIONS) -> list[int]:
  """The steps of the checkpoints to evaluate: each fraction of `steps`, rounded."""
  return sorted({max(1, round(f * steps)) for f in fractions})


def recipe_plan(recipe: str, config, budget: float, fractions=FRACTIONS, *,
                size: str = '') -> dict:
  """One recipe's entry of the plan; sets `config.train.steps` and the warmup."""
  objective = objectives.get_objective(config)
  tokens_per_step = config.train.batch_size * config.data.max_seq_length
  flops_per_step = objective.flops_per_token * tokens_per_step
  steps = steps_for_budget(recipe, flops_per_step, budget)
  config.train.steps = steps
  # The recipe's warmup, at most a tenth of the steps, so a short budget still decays.
  config.optimizer.warmup_steps = min(config.optimizer.warmup_steps, max(1, steps // 10))
  return {
      'size': size or config.name,
      'objective': config.objective.name,
      'flops_per_token': objective.flops_per_token,
      'tokens_per_step': tokens_per_step,
      'steps': steps,
      'warmup_steps': config.optimizer.warmup_steps,
      'flops': steps * flops_per_step,
      'budget_error': steps * flops_per_step / budget - 1,
      'points': points(steps, fractions),
      'fingerprint': fingerprint(config),
  }


def make_plan(recipes: list[str], scale: Scale, budget: float, corpus: dict[str, Any],
              evaluation: Evaluation, fractions=FRACTIONS
              ) -> tuple[dict, dict[str, ml_collections.ConfigDict]]:
  """The plan record and each recipe's config (steps set), from the arguments alone.

  Raises:
    UserError: unknown recipes, a budget too small, a config that cannot run.
  """
  check_recipes(recipes)
  if not budget > 0:
    raise UserError(f'--budget_flops must be positive, got {budget}')
  configs, entries = {}, {}
  for recipe in recipes:
    config = recipe_config(recipe, scale, corpus)
    entries[recipe] = recipe_plan(recipe, config, budget, fractions,
                                  size=size_label(recipe, scale))
    configs[recipe] = config
  plan = {
      'format': FORMAT,
      'scale': scale.name,
      'budget_flops': budget,
      'fractions': list(fractions),
      'corpus': dict(corpus),
      'tokenizer': {'vocab_size': scale.vocab_size, 'model_type': 'unigram'},
      'max_seq_length': scale.max_seq_length,
      'batch_size': scale.batch_size,
      'evaluation': dataclasses.asdict(evaluation),
      'recipes': entries,
  }
  return json.loads(json.dumps(plan)), configs


# What must not change between the runs of one comparison workdir.
_FIXED = ('format', 'scale', 'corpus', 'tokenizer', 'max_seq_length', 'batch_size',
          'evaluation')


def merge_plans(old: dict, new: dict, where: str) -> dict:
  """The plan a comparison continues with: `old` (recorded in `where`) extended by
  `new`. Added recipes and a larger budget are allowed; finished points stay on the
  curves.

  Raises:
    UserError: a change that makes the results incomparable.
  """
  for key in _FIXED:
    old_value, new_value = old.get(key), new.get(key)
    if key == 'tokenizer':  # The file's checksum is recorded once it is trained.
      old_value = {k: v for k, v in (old_value or {}).items() if k != 'sha256'}
    if old_value != new_value:
      raise UserError(
          f'{where} was planned with {key} {json.dumps(old_value)}, this command asks '
          f'for {json.dumps(new_value)}: the results would not be comparable; use a new '
          '--workdir')
  if new['budget_flops'] < old['budget_flops']:
    raise UserError(f'{where} was planned for --budget_flops {old["budget_flops"]:.3g}; '
                    f'a smaller budget ({new["budget_flops"]:.3g}) needs a new --workdir')
  merged = copy.deepcopy(old)
  merged['budget_flops'] = new['budget_flops']
  merged['fractions'] = new['fractions']
  for recipe, entry in new['recipes'].items():
    before = old['recipes'].get(recipe)
    if before is not None and before['fingerprint'] != entry['fingerprint']:
      raise UserError(
          f'the {recipe} config differs from the one {where} was planned with (its '
          'experiment file changed?): the results would not be comparable; use a new '
          '--workdir')
    entry = dict(entry)
    if before is not None:  # Points evaluated before an extension stay on the curve.
      entry['points'] = sorted(set(before['points']) | set(entry['points']))
    merged['recipes'][recipe] = entry
  return merged
