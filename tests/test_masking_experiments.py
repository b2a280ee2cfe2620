"""The masking-strategy recipes: every size loads, and a tiny run of each trains.

BERT-wwm, SpanBERT, MacBERT, ERNIE 1.0 (experiments/<recipe>.py).
"""

import importlib
import os

import pytest

from common import pipeline
from common.errors import UserError
from tests.conftest import tiny_config

RECIPES = {'bert_wwm': ('demo', 'base', 'large'), 'spanbert': ('demo', 'base', 'large'),
           'macbert': ('demo', 'base', 'large'), 'ernie': ('demo', 'base')}
STRATEGY = {'bert_wwm': 'whole_word', 'spanbert': 'span', 'macbert': 'macbert',
            'ernie': 'ernie'}
OBJECTIVE = {'bert_wwm': 'mlm_nsp', 'spanbert': 'mlm_sbo', 'macbert': 'mlm_sop',
             'ernie': 'mlm_nsp'}


def get_config(recipe, size):
  return importlib.import_module(f'experiments.{recipe}').get_config(size)


@pytest.mark.parametrize('recipe, size', [(r, s) for r, sizes in RECIPES.items()
                                          for s in sizes])
def test_every_size_loads_and_is_consistent(recipe, size):
  config = get_config(recipe, size)
  assert config.name.endswith(size)
  assert config.masking.strategy == STRATEGY[recipe]
  assert config.objective.name == OBJECTIVE[recipe]
  assert config.tokenizer.vocab_size == config.model.vocab_size
  assert config.masking.max_predictions_per_seq <= config.data.max_seq_length
  assert config.data.max_seq_length <= config.model.max_position_embeddings


def test_unknown_size_is_refused():
  with pytest.raises(UserError, match="unknown size 'large'"):
    get_config('ernie', 'large')


def test_paper_settings():
  span = get_config('spanbert', 'large')
  assert (span.masking.span_p, span.masking.span_max) == (0.2, 10)
  assert span.data.packing == 'doc_sentences' and span.objective.sbo_weight == 1.0
  mac = get_config('macbert', 'base')
  assert mac.masking.mask_token_prob == 0.0 and mac.data.pair_task == 'sop'
  assert get_config('ernie', 'base').model.hidden_act == 'relu'


@pytest.mark.parametrize('recipe', ['macbert', 'ernie'])
def test_tables_are_built_once_and_reused(recipe, tmp_path):
  config = tiny_config(recipe)
  data = pipeline.build_data(config, str(tmp_path))
  name = {'macbert': 'similar_words.json', 'ernie': 'phrases.json'}[recipe]
  path = tmp_path / name
  assert path.is_file()
  before = path.read_bytes(), os.path.getmtime(path)
  again = pipeline.build_data(config, str(tmp_path))
  assert (path.read_bytes(), os.path.getmtime(path)) == before
  for key, value in data.train[3].items():
    assert (value == again.train[3][key]).all(), key
  batch = data.train[0]
  if recipe == 'macbert':
    assert not (batch['input_ids'] == data.tokenizer.mask_id).any()
