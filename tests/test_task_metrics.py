"""Tests for common/train/task_metrics.py against scikit-learn and scipy."""

import math
import warnings

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from common.errors import UserError
from common.train import task_metrics


def _classification_cases():
  """(labels, predictions) pairs: random and the edge cases GLUE scores can hit."""
  rng = np.random.default_rng(0)
  cases = [(rng.integers(0, 2, n), rng.integers(0, 2, n)) for n in (1, 2, 7, 100, 1000)]
  cases += [(rng.integers(0, 3, 50), rng.integers(0, 3, 50))]  # multiclass (MNLI)
  y = rng.integers(0, 2, 40)
  cases += [
      (y, y),                          # perfect
      (y, 1 - y),                      # inverse
      (np.zeros(10, int), np.zeros(10, int)),   # all one class, all right
      (np.ones(10, int), np.ones(10, int)),
      (y, np.zeros(40, int)),          # predictions all one class
      (y, np.ones(40, int)),
      (np.zeros(10, int), rng.integers(0, 2, 10)),  # labels all one class
      (np.ones(10, int), rng.integers(0, 2, 10)),
      (np.array([0, 1]), np.array([1, 1])),
  ]
  return cases


@pytest.mark.parametrize('case', range(len(_classification_cases())))
def test_classification_metrics_match_sklearn(case):
  labels, predictions = _classification_cases()[case]
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')  # sklearn warns on the undefined cases.
    expected_mcc = skm.matthews_corrcoef(labels, predictions)
  assert task_metrics.matthews_corrcoef(labels, predictions) == pytest.approx(
      expected_mcc, abs=1e-12)
  assert task_metrics.accuracy(labels, predictions) == pytest.approx(
      skm.accuracy_score(labels, predictions), abs=1e-12)
  if max(labels.max(), predictions.max()) <= 1:
    expected_f1 = skm.f1_score(labels, predictions, zero_division=0)
    assert task_metrics.f1(labels, predictions) == pytest.approx(expected_f1, abs=1e-12)


def _regression_cases():
  rng = np.random.default_rng(1)
  x = rng.normal(size=200)
  cases = [(rng.normal(size=n), rng.normal(size=n)) for n in (3, 10, 500)]
  cases += [
      (x, 2 * x + 1),                                   # perfect
      (x, -x),                                          # inverse
      (x, x + rng.normal(scale=0.5, size=200)),         # correlated
      (np.round(x), np.round(x + rng.normal(size=200))),  # many ties (STS-B 0..5)
      (rng.integers(0, 6, 300).astype(float), rng.integers(0, 6, 300)),
      (np.array([1., 2., 2., 3.]), np.array([1., 1., 2., 2.])),
  ]
  return cases


@pytest.mark.parametrize('case', range(len(_regression_cases())))
def test_correlations_match_scipy(case):
  labels, predictions = _regression_cases()[case]
  assert task_metrics.pearson(labels, predictions) == pytest.approx(
      stats.pearsonr(labels, predictions)[0], abs=1e-10)
  assert task_metrics.spearman(labels, predictions) == pytest.approx(
      stats.spearmanr(labels, predictions)[0], abs=1e-10)


def test_correlation_of_a_constant_is_nan_as_scipy():
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    assert math.isnan(stats.pearsonr([1., 2., 3.], [2., 2., 2.])[0])
  assert math.isnan(task_metrics.pearson([1., 2., 3.], [2., 2., 2.]))
  assert math.isnan(task_metrics.spearman([2., 2., 2.], [1., 2., 3.]))


def test_average_ranks_match_scipy():
  x = np.array([3., 1., 4., 1., 5., 9., 2., 6., 5., 3., 5.])
  np.testing.assert_array_equal(task_metrics._average_ranks(x), stats.rankdata(x))


def test_compute_drops_padding_rows():
  labels = np.array([1, 0, 1, 1, 0, 0])
  predictions = np.array([1, 0, 0, 1, 1, 1])
  weights = np.array([1, 1, 1, 1, 0, 0])  # the last two rows are padding
  out = task_metrics.compute(['accuracy', 'f1', 'matthews'], labels,
                             predictions, weights)
  kept = slice(0, 4)
  assert out == pytest.approx({
      'accuracy': 0.75,
      'f1': skm.f1_score(labels[kept], predictions[kept]),
      'matthews': skm.matthews_corrcoef(labels[kept], predictions[kept]),
  })
  assert all(isinstance(v, float) for v in out.values())
  assert task_metrics.compute(['accuracy'], labels, predictions) == {
      'accuracy': pytest.approx(3 / 6)}


def test_compute_regression_and_bad_input():
  labels, predictions = _regression_cases()[5]
  out = task_metrics.compute(['pearson', 'spearman'], labels, predictions,
                             np.ones_like(labels))
  assert out['pearson'] == pytest.approx(stats.pearsonr(labels, predictions)[0])
  with pytest.raises(UserError, match='unknown metric'):
    task_metrics.compute(['acc'], labels, predictions)
  with pytest.raises(ValueError, match='predictions'):
    task_metrics.accuracy([0, 1], [0, 1, 1])
  with pytest.raises(ValueError, match='weights'):
    task_metrics.compute(['accuracy'], [0, 1], [0, 1], [1, 1, 0])


def test_metric_names_are_the_ones_tasks_use():
  from common.data import glue  # pylint: disable=g-import-not-at-top
  assert set(task_metrics.METRICS) == set(glue.METRICS)
