"""Experiment files: every recipe has the base's fields, every size loads, every
documented override works, and paper sizes have the papers' parameter counts."""

import ast
import dataclasses
import importlib
import os
import re

from absl import flags
from ml_collections import config_flags
import pytest

from common.errors import UserError
from common.model import encoder
from electra_jax import model as electra_model
from electra_jax import objective as electra_objective
from experiments import base
from tests.conftest import REPO
from tests.conftest import parameter_count

# Fine-tuning configs: the base's fields plus their own (init_from, data_dir, task, ...).
FINETUNING = {'glue': ('cola', 'sst2', 'mrpc', 'qqp', 'stsb', 'mnli', 'qnli', 'rte', 'wnli',
                       'generic')}
# Every pretraining recipe: each experiments/*.py but the base, the package file and
# the fine-tuning configs.
RECIPES = sorted(name[:-3] for name in os.listdir(os.path.join(REPO, 'experiments'))
                 if name.endswith('.py') and name not in ('base.py', '__init__.py')
                 and name[:-3] not in FINETUNING)


def get_config(recipe, size):
  return importlib.import_module(f'experiments.{recipe}').get_config(size)


def sizes(recipe):
  return list(importlib.import_module(f'experiments.{recipe}').SIZES)


RECIPE_SIZES = [(r, s) for r in RECIPES for s in sizes(r)]
FINETUNING_TASKS = [(f, task) for f, tasks in FINETUNING.items() for task in tasks]


def test_every_recipe_is_found():
  assert {'bert', 'roberta', 'albert', 'electra', 'bert_wwm', 'spanbert', 'macbert',
          'ernie'} <= set(RECIPES)


@pytest.mark.parametrize('recipe, size', RECIPE_SIZES)
def test_every_size_loads_and_is_consistent(recipe, size):
  config = get_config(recipe, size)
  assert config.name.endswith(f'-{size}'), config.name
  assert config.tokenizer.vocab_size == config.model.vocab_size
  assert config.data.max_seq_length <= (config.model.max_position_embeddings
                                        - config.model.position_offset)
  assert config.masking.max_predictions_per_seq <= config.data.max_seq_length
  assert config.data.seed == config.seed
  encoder.EncoderSpec.from_config(config.model)  # Raises UserError if invalid.


def key_tree(config):
  """{key: subtree or None}: the config's fields, nested sections recursively."""
  return {key: key_tree(value) if hasattr(value, 'items') else None
          for key, value in config.items()}


@pytest.mark.parametrize('recipe, size', RECIPE_SIZES)
def test_every_recipe_has_exactly_the_base_fields(recipe, size):
  """A field a recipe reads must be declared in experiments/base.py, so that every
  recipe has it (and `--config.<field>=` works everywhere); no recipe adds its own."""
  assert key_tree(get_config(recipe, size)) == key_tree(base.get_config())


def test_base_model_defaults_are_the_encoders():
  """config.model is EncoderSpec's fields at its defaults (0 = no factorized table),
  and the named encoder sizes agree with it."""
  model = base.get_config().model
  spec_fields = [f.name for f in dataclasses.fields(encoder.EncoderSpec)]
  assert set(spec_fields) <= set(model)
  assert encoder.EncoderSpec.from_config(model) == encoder.EncoderSpec(
      vocab_size=model.vocab_size)
  assert model.embedding_size == 0
  assert {k: model[k] for k in base.BERT_BASE} == base.BERT_BASE


def test_base_defaults_of_one_recipes_fields_are_the_codes_defaults():
  """Fields only ELECTRA reads are at the values its code takes when they are absent,
  so declaring them for every recipe changes nothing."""
  config = base.get_config()
  assert (config.model.generator_hidden_fraction
          == electra_model.DEFAULT_GENERATOR_HIDDEN_FRACTION)
  assert (config.objective.generator_weight, config.objective.discriminator_weight,
          config.objective.temperature) == (
              electra_objective.GENERATOR_WEIGHT, electra_objective.DISCRIMINATOR_WEIGHT,
              electra_objective.TEMPERATURE)


def test_a_size_setting_an_unknown_field_is_refused():
  with pytest.raises(KeyError, match='config.masking.span_length'):
    base.apply(base.get_config(), dict(masking=dict(span_length=3)))


# --config.<dotted.key>=<value> as written in the docs; a value such as `N`, `...` or
# `{dst}` stands for one the reader fills in.
OVERRIDE = re.compile(r'--config\.([A-Za-z_][\w.]*)=([^\s`\'"\\]+)')
PLACEHOLDER = re.compile(r'\.\.\.|[A-Z][A-Z0-9_]*|\{.*\}|<.*>')


def documented_overrides() -> list[tuple[str, str]]:
  """(key, value) of every override in README.md and the docstrings of experiments/
  and launch/ files."""
  texts = [open(os.path.join(REPO, 'README.md'), encoding='utf-8').read()]
  for folder in ('experiments', 'launch'):
    for name in sorted(os.listdir(os.path.join(REPO, folder))):
      if name.endswith('.py'):
        with open(os.path.join(REPO, folder, name), encoding='utf-8') as f:
          tree = ast.parse(f.read())
        texts += [ast.get_docstring(node) or '' for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                       ast.AsyncFunctionDef))]
  found = {(key, value.rstrip(',;:)'))
           for text in texts for key, value in OVERRIDE.findall(text)}
  return sorted(found)


def test_documented_overrides_are_found():
  keys = {key for key, _ in documented_overrides()}
  assert {'train.steps', 'mesh.dcn_data', 'train.peak_flops_per_device',
          'model.generator_hidden_fraction'} <= keys, keys


def load_with_override(recipe: str, size: str, override: str):
  """The config as `launch.train --config=experiments/<recipe>.py:<size> <override>`
  gets it: config_flags loads the file, locks it and applies the override."""
  path = os.path.join(REPO, 'experiments', f'{recipe}.py')
  argv = ['train', f'--config={path}:{size}', override]
  flag_values = flags.FlagValues()
  config_flags.DEFINE_config_file('config', None, flag_values=flag_values,
                                  lock_config=True, sys_argv=argv)
  flag_values(argv)
  return flag_values.config


def applies_to(key: str, recipe: str) -> bool:
  """A documented override of a base field applies to every config; one of a field
  only the fine-tuning configs have (init_from, data_dir, task...) applies to those."""
  if recipe in FINETUNING:
    return True
  node = base.get_config()
  for part in key.split('.'):  # The whole path: base.teacher has no intermediate_epochs.
    if part not in node:
      return False
    node = node[part]
  return True


# config_flags loads experiment files with the deprecated importlib load_module().
@pytest.mark.filterwarnings('ignore:the load_module:DeprecationWarning')
@pytest.mark.parametrize('recipe, size', RECIPE_SIZES + FINETUNING_TASKS)
def test_every_documented_override_works_for_every_recipe(recipe, size):
  default = get_config(recipe, size)
  failures = []
  for key, value in documented_overrides():
    if not applies_to(key, recipe):
      continue
    old = default
    try:
      for part in key.split('.'):
        old = old[part]
    except KeyError:
      failures.append(f'--config.{key}: no such field')
      continue
    if PLACEHOLDER.fullmatch(value):
      value = str(old)  # Stands for a value of the field's type.
    try:
      config = load_with_override(recipe, size, f'--config.{key}={value}')
    except Exception as e:  # pylint: disable=broad-except
      failures.append(f'--config.{key}={value}: {type(e).__name__}: {e}')
      continue
    new = config
    for part in key.split('.'):
      new = new[part]
    expected = (value.lower() in ('true', '1') if isinstance(old, bool)
                else type(old)(value))
    if new != expected:
      failures.append(f'--config.{key}={value} gave {new!r}')
  assert not failures, '\n'.join(failures)


def test_unknown_size_is_refused():
  with pytest.raises(UserError, match="unknown size 'huge'.*demo, base, large"):
    get_config('bert', 'huge')


@pytest.mark.parametrize('recipe', RECIPES)
def test_unknown_size_is_refused_with_the_recipes_sizes(recipe):
  with pytest.raises(UserError, match="unknown size 'huge'; known sizes: "
                     + re.escape(', '.join(sizes(recipe)))):
    get_config(recipe, 'huge')


# (recipe, size): (paper's count, tolerance, exact count of the same model in HF).
# BERT (Devlin et al. 2019, section 3): base 110M, large 340M; BertForPreTraining
# (encoder + pooler + MLM + NSP). The released BERT-large has 336.2M with heads
# (HF BertModel alone 335,141,888): the paper's 340M is rounded, 1.1% high.
# RoBERTa (Liu et al. 2019, fairseq model cards): base 125M, large 355M;
# RobertaForMaskedLM (no pooler, no NSP).
PAPER_COUNTS = {
    ('bert', 'base'): (110e6, 0.01, 110_106_428),
    ('bert', 'large'): (340e6, 0.012, 336_226_108),
    ('roberta', 'base'): (125e6, 0.01, 124_697_433),
    ('roberta', 'large'): (355e6, 0.01, 355_412_057),
}


@pytest.mark.parametrize('recipe, size', sorted(PAPER_COUNTS))
def test_paper_sizes_have_the_papers_parameter_counts(recipe, size):
  paper, tolerance, exact = PAPER_COUNTS[recipe, size]
  count = parameter_count(get_config(recipe, size))
  assert count == exact
  assert abs(count - paper) / paper < tolerance, count


def test_macbert_trains_with_lamb():
  """MacBERT (Cui et al. 2020, section 4.1) uses LAMB, as ALBERT (tests/test_albert.py)."""
  for size in ('demo', 'base'):
    assert get_config('macbert', size).optimizer.name == 'lamb'
  assert get_config('macbert', 'base').optimizer.learning_rate == 1e-4


@pytest.mark.parametrize('config_file, task', FINETUNING_TASKS)
def test_finetuning_configs_extend_the_base(config_file, task):
  """A fine-tuning config has every base field (the model of a random start, the
  optimizer, the loop's settings) plus its own, and every family's defaults."""
  config = get_config(config_file, task)
  fields = key_tree(config)
  for section, subtree in key_tree(base.get_config()).items():
    if subtree is None:
      assert section in fields
    else:
      assert set(subtree) <= set(fields[section]), section
  assert config.task.name == task
  assert {f'{family}_{width}' for family in ('bert', 'roberta', 'albert', 'electra')
          for width in ('small', 'base', 'large')} == set(config.family_defaults)


def test_every_documented_fine_tuning_override_is_a_field():
  keys = {key for key, _ in documented_overrides() if not applies_to(key, 'bert')}
  assert {'init_from', 'data_dir'} <= keys, keys
