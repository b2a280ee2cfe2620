"""Fine-tuning task metrics, computed on the host as GLUE reports them.

GLUE (Wang et al. 2019, "GLUE: A Multi-Task Benchmark and Analysis Platform for
Natural Language Understanding", ICLR, arXiv:1804.07461) scores each task with one or
two of: accuracy (SST-2, MNLI, QNLI, RTE, WNLI; with F1 for MRPC and QQP), Matthews
correlation (CoLA) and Pearson/Spearman correlation (STS-B). These are numpy versions
of the scikit-learn / scipy functions the GLUE baselines call, with the same edge-case
values, so a score here is the number a GLUE table would show.

Labels and predictions are host arrays of one value per example: class ids for
classification (predictions already argmaxed), floats for regression.
"""

from collections.abc import Sequence

import numpy as np

from common.errors import UserError


def _pair(labels, predictions) -> tuple[np.ndarray, np.ndarray]:
  labels, predictions = np.ravel(labels), np.ravel(predictions)
  if labels.shape != predictions.shape:
    raise ValueError(f'{labels.size} labels but {predictions.size} predictions')
  return labels, predictions


def accuracy(labels, predictions) -> float:
  """Share of exact matches (nan for no examples)."""
  labels, predictions = _pair(labels, predictions)
  return float(np.mean(labels == predictions)) if labels.size else float('nan')


def f1(labels, predictions) -> float:
  """Binary F1 of the positive class 1 (MRPC, QQP); 0 when it is undefined
  (no positive label or prediction), as sklearn's `f1_score(zero_division=0)`."""
  labels, predictions = _pair(labels, predictions)
  tp = np.sum((labels == 1) & (predictions == 1))
  wrong = np.sum((labels == 1) != (predictions == 1))  # false positives + negatives
  return float(2 * tp / (2 * tp + wrong)) if tp + wrong else 0.0


def matthews_corrcoef(labels, predictions) -> float:
  """Matthews correlation (CoLA), multiclass as sklearn (Gorodkin's R_K); 0 when
  undefined (all labels or all predictions one class), as sklearn returns."""
  labels, predictions = _pair(labels, predictions)
  _, ids = np.unique(np.concatenate([labels, predictions]), return_inverse=True)
  k, n = int(ids.max(initial=-1)) + 1, labels.size
  confusion_KxK = np.zeros((k, k), np.float64)
  np.add.at(confusion_KxK, (ids[:n], ids[n:]), 1)
  true_K, pred_K = confusion_KxK.sum(1), confusion_KxK.sum(0)
  cov_tp = np.trace(confusion_KxK) * n - true_K @ pred_K
  cov_tt, cov_pp = n * n - true_K @ true_K, n * n - pred_K @ pred_K
  return float(cov_tp / np.sqrt(cov_tt * cov_pp)) if cov_tt * cov_pp else 0.0


def pearson(labels, predictions) -> float:
  """Pearson correlation (STS-B); nan when either side is constant, as scipy."""
  labels, predictions = _pair(labels, predictions)
  x = labels.astype(np.float64) - np.mean(labels)
  y = predictions.astype(np.float64) - np.mean(predictions)
  denominator = np.sqrt((x @ x) * (y @ y))
  return float(np.clip(x @ y / denominator, -1.0, 1.0)) if denominator else float('nan')


def _average_ranks(x: np.ndarray) -> np.ndarray:
  """1-based ranks, ties sharing the mean of their ranks (scipy's 'average')."""
  _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
  last = np.cumsum(counts)
  return (last - (counts - 1) / 2)[inverse]


def spearman(labels, predictions) -> float:
  """Spearman rank correlation (STS-B): Pearson of average ranks, as scipy."""
  labels, predictions = _pair(labels, predictions)
  return pearson(_average_ranks(labels), _average_ranks(predictions))


# The names tasks list their metrics by (common/data/glue.py METRICS).
METRICS = {'accuracy': accuracy, 'f1': f1, 'matthews': matthews_corrcoef,
           'pearson': pearson, 'spearman': spearman}


def compute(metric_names: Sequence[str], labels, predictions,
            weights=None) -> dict[str, float]:
  """The named metrics over the rows whose weight is not 0.

  Args:
    metric_names: keys of `METRICS`, e.g. MRPC's ['accuracy', 'f1'], CoLA's
      ['matthews'].
    labels, predictions: one value per row.
    weights: optional per-row weights; rows of weight 0 (padding of the last eval
      batch) are dropped first, every other row counts once.

  Returns:
    {name: value} for each name.

  Raises:
    UserError: an unknown metric name.
  """
  unknown = [m for m in metric_names if m not in METRICS]
  if unknown:
    raise UserError(f'unknown metric {unknown[0]!r}; valid: {", ".join(METRICS)}')
  labels, predictions = _pair(labels, predictions)
  if weights is not None:
    keep = np.ravel(weights) != 0
    if keep.shape != labels.shape:
      raise ValueError(f'{keep.size} weights for {labels.size} rows')
    labels, predictions = labels[keep], predictions[keep]
  return {m: METRICS[m](labels, predictions) for m in metric_names}
