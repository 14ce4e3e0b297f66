"""Pose monitoring in evaluation: the gate g, the patch weights' entropy and the windows without a valid joint.

The paper asks to watch the gate values and where the pose-guided query looks. ClipMG sows the values its forward
pass used (collection "intermediates": reliability r, patch_weights w, gate_values g); the eval step reduces them to
per-window numbers on the device (`per_window`), evaluation.predict gathers them per clip, and `summarize` turns
them into the "pose_monitoring" entry of eval.json. How to read them: docs/training.md.
"""

from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

HISTOGRAM_BINS = 20  # of the gate over [0, 1]


def per_window(intermediates: Mapping) -> dict[str, jax.Array]:
  """Sown ClipMG values -> float32 (B, T) arrays: "reliability" r, "gate" g, "patch_entropy" = entropy of the
  patch weights divided by log P (1 = uniform over the P patches, 0 = all weight on one patch). Each is present
  only when the model sowed its source (variants with both towers; gate and patch weights where they exist)."""
  out = {}
  if "reliability" in intermediates:
    out["reliability"] = intermediates["reliability"][0].astype(jnp.float32)
  if "gate_values" in intermediates:
    out["gate"] = intermediates["gate_values"][0].astype(jnp.float32)
  if "patch_weights" in intermediates:
    w = intermediates["patch_weights"][0].astype(jnp.float32)  # (B, T, P), sums to 1 over P
    entropy = -jnp.sum(jnp.where(w > 0, w * jnp.log(jnp.maximum(w, 1e-30)), 0.0), axis=-1)
    out["patch_entropy"] = entropy / jnp.log(jnp.float32(w.shape[-1]))
  return out


def _mean(x: np.ndarray) -> float | None:
  return float(np.mean(x)) if x.size else None


def summarize(predictions: Mapping[str, np.ndarray], class_names: Sequence[str]) -> dict | None:
  """The "pose_monitoring" entry of eval.json from evaluation.predict's output, or None without sown values.

  predictions: label int (N,) and the (N, T) arrays of `per_window` for the N evaluated clips.
  Returns a JSON-ready dict: windows (N T), no_valid_joint_fraction (windows whose pose frames hold no joint
  above the confidence threshold), reliability_mean, and where present
    gate: mean, std, min, max, mean_by_frame (T,), mean_no_valid_joint / mean_with_valid_joint, per_class
      {name: mean gate over its clips' windows, None if absent}, histogram {edges (21,), counts (20,)};
    patch_entropy: mean, mean_with_valid_joint (windows without a valid joint have uniform weights, entropy 1).
  """
  if "reliability" not in predictions:
    return None
  reliability = np.asarray(predictions["reliability"], np.float64)
  no_valid = reliability <= 0
  out = {"windows": int(reliability.size), "no_valid_joint_fraction": _mean(no_valid.astype(np.float64)),
         "reliability_mean": _mean(reliability)}
  if "gate" in predictions:
    gate = np.asarray(predictions["gate"], np.float64)
    labels = np.asarray(predictions["label"])
    counts, edges = np.histogram(gate, bins=HISTOGRAM_BINS, range=(0.0, 1.0))
    out["gate"] = {
        "mean": _mean(gate), "std": float(np.std(gate)) if gate.size else None,
        "min": float(gate.min()) if gate.size else None, "max": float(gate.max()) if gate.size else None,
        "mean_by_frame": gate.mean(axis=0).tolist() if gate.size else [],
        "mean_no_valid_joint": _mean(gate[no_valid]), "mean_with_valid_joint": _mean(gate[~no_valid]),
        "per_class": {name: _mean(gate[labels == i]) for i, name in enumerate(class_names)},
        "histogram": {"edges": edges.tolist(), "counts": counts.tolist()},
    }
  if "patch_entropy" in predictions:
    entropy = np.asarray(predictions["patch_entropy"], np.float64)
    out["patch_entropy"] = {"mean": _mean(entropy), "mean_with_valid_joint": _mean(entropy[~no_valid])}
  return out


def scalars(summary: Mapping | None) -> dict[str, float]:
  """The few numbers logged to metrics.jsonl / TensorBoard beside accuracy: gate_mean, patch_entropy,
  no_valid_joint_fraction (those that exist)."""
  if not summary:
    return {}
  out = {"no_valid_joint_fraction": summary["no_valid_joint_fraction"]}
  if summary.get("gate") and summary["gate"]["mean"] is not None:
    out["gate_mean"] = summary["gate"]["mean"]
  if summary.get("patch_entropy") and summary["patch_entropy"]["mean"] is not None:
    out["patch_entropy"] = summary["patch_entropy"]["mean"]
  return {k: v for k, v in out.items() if v is not None}
