"""Experiment files: every size loads, and paper sizes have the papers' parameter counts."""

import importlib

import pytest

from common.errors import UserError
from tests.conftest import parameter_count

RECIPES = {'bert': ('demo', 'base', 'large'), 'roberta': ('demo', 'base', 'large')}


def get_config(recipe, size):
  return importlib.import_module(f'experiments.{recipe}').get_config(size)


@pytest.mark.parametrize('recipe, size', [(r, s) for r, sizes in RECIPES.items()
                                          for s in sizes])
def test_every_size_loads_and_is_consistent(recipe, size):
  config = get_config(recipe, size)
  assert config.tokenizer.vocab_size == config.model.vocab_size
  assert config.data.max_seq_length <= (config.model.max_position_embeddings
                                        - config.model.position_offset)
  assert config.data.seed == config.seed


def test_unknown_size_is_refused():
  with pytest.raises(UserError, match="unknown size 'huge'.*demo, base, large"):
    get_config('bert', 'huge')


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
