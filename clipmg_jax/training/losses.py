"""Classification losses for a long-tailed label distribution.

Options (the `loss` config block):
  class_weighting: "none" | "sqrt_inverse" — per-class weights w_c ∝ 1/sqrt(n_c) over the training counts n_c,
    normalised so that the average weight over the training examples is 1; the batch loss is then the weighted
    mean sum_i w_{y_i} l_i / sum_i w_{y_i}.
  logit_adjustment_tau: tau >= 0 — logit-adjusted loss (Menon et al., "Long-tail learning via logit adjustment",
    ICLR 2021): the loss sees logits + tau * log(prior_c); prediction uses the raw logits, which removes the bias
    towards frequent classes.
  label_smoothing: epsilon in [0, 1).
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np


def class_weights(counts: np.ndarray, kind: str) -> np.ndarray:
  """Per-class loss weights, float32 (C,), from training counts (C,).

  "sqrt_inverse": w_c = s / sqrt(n_c) with s chosen so that sum_c n_c w_c = sum_c n_c (mean weight 1 per
  training example). Classes with no training example get weight 0 (they never appear as a target).
  """
  counts = np.asarray(counts, np.float64)
  if kind == "none":
    return np.ones_like(counts, np.float32)
  if kind != "sqrt_inverse":
    raise ValueError(f"loss.class_weighting must be 'none' or 'sqrt_inverse', got {kind!r}")
  w = np.where(counts > 0, 1.0 / np.sqrt(np.maximum(counts, 1.0)), 0.0)
  w *= counts.sum() / max((counts * w).sum(), 1e-12)
  return w.astype(np.float32)


def log_prior(counts: np.ndarray) -> np.ndarray:
  """log of the training class frequencies, float32 (C,); empty classes get log(1/(N+1)) to stay finite."""
  counts = np.asarray(counts, np.float64)
  total = counts.sum()
  prior = np.where(counts > 0, counts, 1.0 / (total + 1.0)) / max(total, 1.0)
  return np.log(prior).astype(np.float32)


def classification_loss(logits: jax.Array, labels: jax.Array, *, weights: jax.Array | None,
                        logit_offset: jax.Array | None, label_smoothing: float,
                        example_mask: jax.Array | None = None) -> jax.Array:
  """Weighted (optionally logit-adjusted, label-smoothed) softmax cross-entropy, a float32 scalar.

  Args:
    logits: float (B, C).
    labels: int (B,) class indices.
    weights: float32 (C,) per-class weights or None (all ones).
    logit_offset: float32 (C,) added to the logits before the softmax (tau * log prior) or None.
    label_smoothing: epsilon; the target is (1 - eps) one_hot + eps / C.
    example_mask: float/bool (B,) 1 for real examples, 0 for padding; None = all real.
  """
  logits = logits.astype(jnp.float32)
  num_classes = logits.shape[-1]
  if logit_offset is not None:
    logits = logits + logit_offset[None, :]
  targets = jax.nn.one_hot(labels, num_classes)
  if label_smoothing:
    targets = targets * (1.0 - label_smoothing) + label_smoothing / num_classes
  per_example = -jnp.sum(targets * jax.nn.log_softmax(logits), axis=-1)
  w = jnp.ones_like(per_example) if weights is None else weights[labels]
  if example_mask is not None:
    w = w * example_mask.astype(jnp.float32)
  return jnp.sum(w * per_example) / jnp.maximum(jnp.sum(w), 1e-12)


def make_loss_constants(config: ml_collections.ConfigDict, counts: np.ndarray | None,
                        num_classes: int) -> tuple[np.ndarray | None, np.ndarray | None]:
  """(weights (C,) or None, logit_offset (C,) or None) for the `loss` config block and training counts (C,)."""
  needs_counts = config.class_weighting != "none" or config.logit_adjustment_tau > 0
  if needs_counts and counts is None:
    raise ValueError("class-balanced loss options need the training class counts (from the shard manifest)")
  if counts is not None and len(counts) != num_classes:
    raise ValueError(f"class counts have {len(counts)} entries but the model has {num_classes} classes")
  weights = None if config.class_weighting == "none" else class_weights(counts, config.class_weighting)
  offset = None
  if config.logit_adjustment_tau > 0:
    offset = (config.logit_adjustment_tau * log_prior(counts)).astype(np.float32)
  return weights, offset
