"""Classification metrics for a long-tailed problem, computed on the host with NumPy; and the one softmax and top-k
of the project (predict, inspect_clip and the notebooks rank classes with them).

Conventions (stated because libraries differ):
  - mean_class_accuracy: the mean over classes that occur in the evaluated labels of per-class recall.
  - macro_f1: the mean of per-class F1 over the classes that occur in the labels or the predictions (a class that
    is predicted but never true contributes F1 = 0); the same as scikit-learn's f1_score(average="macro").
  - top5: the true class is among the 5 largest logits (ties broken by the lower class index).
"""

from typing import Sequence

import numpy as np


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
  """int64 (C, C): entry [t, p] counts examples of true class t predicted as p."""
  cm = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(cm, (np.asarray(labels), np.asarray(predictions)), 1)
  return cm


def softmax(logits: np.ndarray) -> np.ndarray:
  """float64 probabilities over the last axis of logits (..., C)."""
  z = np.asarray(logits, np.float64)
  z = np.exp(z - z.max(-1, keepdims=True))
  return z / z.sum(-1, keepdims=True)


def ranked(scores: np.ndarray, k: int) -> np.ndarray:
  """int (..., k): the indices of the k highest scores along the last axis, highest first (ties: lower index)."""
  return np.argsort(-np.asarray(scores), axis=-1, kind="stable")[..., :k]


def top_classes(probabilities: np.ndarray, class_names: Sequence[str], k: int = 5) -> list[dict]:
  """The k most probable classes of one example's probabilities (C,), JSON-ready: class, name, probability."""
  return [{"class": int(c), "name": class_names[c], "probability": float(probabilities[c])}
          for c in ranked(probabilities, k)]


def top_k_correct(logits: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
  """bool (N,): label among the k highest logits."""
  return np.any(ranked(logits, min(k, logits.shape[-1])) == labels[:, None], axis=-1)


def classification_metrics(logits: np.ndarray, labels: np.ndarray, subjects: np.ndarray | None = None,
                           class_names: Sequence[str] | None = None) -> dict:
  """All evaluation figures, JSON-ready.

  Args:
    logits: float (N, C).
    labels: int (N,) true class indices.
    subjects: int (N,) subject ids, or None.
    class_names: C names, or None for "class_<i>".

  Returns:
    dict with top1, top5, mean_class_accuracy, macro_f1, num_examples, majority_rate (the top-1 of always
    predicting the most frequent evaluated class), per_class {name: {index, count, accuracy, precision, f1}},
    per_subject {id: {count, accuracy}}, confusion (C x C list of lists, rows = true class), class_names.
  """
  logits = np.asarray(logits, np.float64)
  labels = np.asarray(labels, np.int64)
  n, num_classes = logits.shape
  if labels.shape != (n,):
    raise ValueError(f"labels shape {labels.shape} does not match logits {logits.shape}")
  names = list(class_names) if class_names is not None else [f"class_{i}" for i in range(num_classes)]
  if len(names) != num_classes:
    raise ValueError(f"{len(names)} class names for {num_classes} classes")
  predictions = np.argmax(logits, axis=-1)
  cm = confusion_matrix(labels, predictions, num_classes)
  true_counts = cm.sum(axis=1)
  pred_counts = cm.sum(axis=0)
  hits = np.diag(cm)
  recall = np.divide(hits, true_counts, out=np.zeros(num_classes), where=true_counts > 0)
  precision = np.divide(hits, pred_counts, out=np.zeros(num_classes), where=pred_counts > 0)
  denom = precision + recall
  f1 = np.divide(2 * precision * recall, denom, out=np.zeros(num_classes), where=denom > 0)
  present = true_counts > 0
  in_f1 = present | (pred_counts > 0)

  per_class = {}
  for c in range(num_classes):
    per_class[names[c]] = dict(index=c, count=int(true_counts[c]),
                               accuracy=float(recall[c]) if present[c] else None,
                               precision=float(precision[c]) if pred_counts[c] else None,
                               f1=float(f1[c]) if in_f1[c] else None)
  per_subject = {}
  if subjects is not None:
    subjects = np.asarray(subjects)
    correct = predictions == labels
    for s in np.unique(subjects):
      sel = subjects == s
      per_subject[str(int(s))] = dict(count=int(sel.sum()), accuracy=float(correct[sel].mean()))
  return dict(
      top1=float(np.mean(predictions == labels)) if n else 0.0,
      top5=float(np.mean(top_k_correct(logits, labels, 5))) if n else 0.0,
      mean_class_accuracy=float(recall[present].mean()) if present.any() else 0.0,
      macro_f1=float(f1[in_f1].mean()) if in_f1.any() else 0.0,
      num_examples=int(n),
      majority_rate=float(true_counts.max() / n) if n else 0.0,
      per_class=per_class,
      per_subject=per_subject,
      confusion=cm.tolist(),
      class_names=names,
  )
