"""The masking-strategy recipes: every size loads, and a tiny run of each trains.

BERT-wwm, SpanBERT, MacBERT, ERNIE 1.0 (experiments/<recipe>.py).
"""

import importlib
import os

import pytest

from common.data import pipeline
from common.errors import UserError
from tests.conftest import parameter_count
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


def bert_model_count(vocab, hidden, layers, ffn, pooler=True, positions=512, types=2):
  """HF BertModel's exact parameter count (embeddings, layers, optional pooler)."""
  embeddings = (vocab + positions + types) * hidden + 2 * hidden
  layer = 4 * (hidden * hidden + hidden) + 2 * hidden * ffn + ffn + hidden + 4 * hidden
  return embeddings + layers * layer + (hidden * hidden + hidden if pooler else 0)


def mlm_head_count(vocab, hidden):
  """BERT's MLM head: dense H -> H, LayerNorm, tied decoder, output bias [V]."""
  return hidden * hidden + 3 * hidden + vocab


def span_boundary_head_count(vocab, hidden):
  """SpanBERT's SBO head (BertPairTargetPredictionHead): 200 x H relative positions,
  Linear 3H -> H and H -> H, each followed by a LayerNorm, output bias [V]."""
  return (200 * hidden + 3 * hidden * hidden + hidden + 2 * hidden
          + hidden * hidden + hidden + 2 * hidden + vocab)


# (recipe, size): exact count of the whole pretraining model, and the paper's count
# (None when the paper gives none). BERT-wwm is BERT with another masking (Google's
# wwm release notes): BertForPreTraining. SpanBERT (Joshi et al. 2020, section 4.1)
# uses BERT's architecture with the cased 28,996 vocabulary, no NSP and so no pooler,
# plus its SBO head; the paper reports no parameter count. MacBERT (Cui et al. 2020,
# "Revisiting Pre-trained Models for Chinese NLP", Table 2: base 102M, large 324M;
# BERT's Chinese vocabulary of 21,128) is BERT + an SOP head shaped like NSP's.
# ERNIE 1.0 (Sun et al. 2019) is BERT-base with an 18,000 vocabulary; no count given.
MASKING_RECIPE_COUNTS = {
    ('bert_wwm', 'base'): (bert_model_count(30522, 768, 12, 3072)
                           + mlm_head_count(30522, 768) + 2 * 768 + 2, 110e6),
    ('bert_wwm', 'large'): (bert_model_count(30522, 1024, 24, 4096)
                            + mlm_head_count(30522, 1024) + 2 * 1024 + 2, 340e6),
    ('spanbert', 'base'): (bert_model_count(28996, 768, 12, 3072, pooler=False)
                           + mlm_head_count(28996, 768)
                           + span_boundary_head_count(28996, 768), None),
    ('spanbert', 'large'): (bert_model_count(28996, 1024, 24, 4096, pooler=False)
                            + mlm_head_count(28996, 1024)
                            + span_boundary_head_count(28996, 1024), None),
    ('macbert', 'base'): (bert_model_count(21128, 768, 12, 3072)
                          + mlm_head_count(21128, 768) + 2 * 768 + 2, 102e6),
    ('macbert', 'large'): (bert_model_count(21128, 1024, 24, 4096)
                           + mlm_head_count(21128, 1024) + 2 * 1024 + 2, 324e6),
    ('ernie', 'base'): (bert_model_count(18000, 768, 12, 3072)
                        + mlm_head_count(18000, 768) + 2 * 768 + 2, None),
}


@pytest.mark.parametrize('recipe, size', sorted(MASKING_RECIPE_COUNTS))
def test_paper_sizes_have_the_reference_parameter_counts(recipe, size):
  exact, paper = MASKING_RECIPE_COUNTS[recipe, size]
  count = parameter_count(get_config(recipe, size))
  assert count == exact
  if paper:  # Papers round; BERT-large's 340M is 1.1% above the released model.
    assert abs(count - paper) / paper < 0.012, count
