"""Evaluation metrics against values worked out by hand."""

import numpy as np
import pytest

from clipmg_jax.training import metrics


def _logits_for(predictions, num_classes, second=None):
  logits = np.zeros((len(predictions), num_classes))
  logits[np.arange(len(predictions)), predictions] = 2.0
  if second is not None:
    logits[np.arange(len(predictions)), second] = 1.0
  return logits


def test_metrics_hand_example():
  # 3 classes (class 2 never true), 6 examples.
  labels = np.array([0, 0, 0, 0, 1, 1])
  preds = np.array([0, 0, 1, 2, 1, 0])
  second = np.array([1, 1, 0, 0, 0, 1])
  result = metrics.classification_metrics(_logits_for(preds, 3, second), labels, np.array([7, 7, 7, 9, 9, 9]),
                                          ["a", "b", "c"])
  assert result["num_examples"] == 6
  assert result["top1"] == pytest.approx(3 / 6)
  # top-5 with 3 classes: always correct.
  assert result["top5"] == pytest.approx(1.0)
  # recall a = 2/4, b = 1/2 -> mean 0.5 (c absent from the labels: not averaged).
  assert result["mean_class_accuracy"] == pytest.approx(0.5)
  # precision a = 2/3, b = 1/2, c = 0/1; F1 a = 2*(2/3*1/2)/(2/3+1/2) = 4/7, b = 1/2, c = 0 (predicted, never true).
  assert result["macro_f1"] == pytest.approx((4 / 7 + 1 / 2 + 0) / 3)
  assert result["majority_rate"] == pytest.approx(4 / 6)
  assert result["per_class"]["a"]["accuracy"] == pytest.approx(0.5)
  assert result["per_class"]["c"]["accuracy"] is None and result["per_class"]["c"]["count"] == 0
  assert result["per_subject"]["7"] == {"count": 3, "accuracy": pytest.approx(2 / 3)}
  assert result["per_subject"]["9"] == {"count": 3, "accuracy": pytest.approx(1 / 3)}
  assert result["confusion"] == [[2, 1, 1], [1, 1, 0], [0, 0, 0]]


def test_top5_counts_rank():
  logits = np.array([[6, 5, 4, 3, 2, 1, 0.0], [6, 5, 4, 3, 2, 1, 0.0]])
  result = metrics.classification_metrics(logits, np.array([4, 5]))
  assert result["top5"] == pytest.approx(0.5)
  assert result["top1"] == 0.0


def test_shape_mismatch_is_an_error():
  with pytest.raises(ValueError, match="labels shape"):
    metrics.classification_metrics(np.zeros((3, 2)), np.zeros(4, int))
