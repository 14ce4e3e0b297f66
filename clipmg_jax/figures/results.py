"""Figures of an evaluation: the confusion matrix, accuracy per class or subject, and the gate (its histogram over
a split's windows, and against pose reliability); `write_evaluation_plots` saves the PNGs beside eval.json.

Drawn for every eval.json by the commands that write one (`python -m clipmg_jax.train` and `evaluate`, which hand
this function to training/evaluation.py), and by notebooks/03_error_analysis.
Each function returns a pyplot Figure (canvas.py).
"""

import pathlib
from typing import Sequence

import numpy as np

from clipmg_jax.figures import canvas
from clipmg_jax.run.folder import RunFolder


def gate_vs_reliability(gate_values: np.ndarray, reliability: np.ndarray, *, title: str = ""):
  """Every window (clip x frame) of a split: gate against reliability, with the binned mean."""
  plt = canvas.pyplot()
  fig, ax = plt.subplots(figsize=(5, 4))
  g, r = gate_values.reshape(-1), reliability.reshape(-1)
  ax.scatter(r, g, s=4, alpha=0.3, color="tab:orange", label="windows")
  edges = np.linspace(0, 1, 11)
  which = np.clip(np.digitize(r, edges) - 1, 0, 9)
  means = [g[which == i].mean() if np.any(which == i) else np.nan for i in range(10)]
  ax.plot((edges[:-1] + edges[1:]) / 2, means, "o-", color="black", label="mean per reliability bin")
  ax.set_xlim(0, 1)
  ax.set_ylim(0, 1)
  ax.set_xlabel("pose reliability r of the window")
  ax.set_ylabel("gate g")
  ax.set_title(title or f"gate against pose reliability ({len(g)} windows)", fontsize=10)
  ax.legend(fontsize=7)
  fig.tight_layout()
  return fig


def confusion(matrix: np.ndarray, class_names: Sequence[str], *, title: str = ""):
  """Row-normalised confusion matrix (each row: where the clips of a true class go), counts in the cells."""
  plt = canvas.pyplot()
  cm = np.asarray(matrix, np.float64)
  rows = cm.sum(axis=1, keepdims=True)
  norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
  n = len(class_names)
  size = max(6.0, 0.3 * n + 2)
  fig, ax = plt.subplots(figsize=(size + 1.5, size))
  im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
  ax.set_xticks(range(n), range(n), fontsize=6)
  ax.set_yticks(range(n), [f"{name[:26]} ({i})" for i, name in enumerate(class_names)], fontsize=6)
  for i, j in zip(*np.nonzero(cm)):
    ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=5, color="white" if norm[i, j] > 0.5 else "black")
  ax.set_xlabel("predicted class index")
  ax.set_ylabel("true class")
  ax.set_title(title or "confusion matrix (colour: row-normalised; numbers: clips)", fontsize=10)
  fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of the true class")
  fig.tight_layout()
  return fig


def accuracy_bars(names: Sequence[str], accuracy: Sequence[float], counts: Sequence[int], *, title: str,
                  xlabel: str, mean: float | None = None, mean_label: str = "mean"):
  """Bars of accuracy per group (class or subject), the group's clip count under each bar; NaN = no clips; a
  dashed line at `mean` (labelled `mean_label` and its value)."""
  plt = canvas.pyplot()
  # Room under the axis for the rotated names (iMiGUE's run to 50 characters).
  fig, ax = plt.subplots(figsize=(max(6.0, 0.3 * len(names) + 2), 3.2 + 0.05 * max(map(len, names), default=0)))
  acc = np.nan_to_num(np.asarray(accuracy, np.float64))
  ax.bar(range(len(names)), acc, color="tab:blue")
  for i, c in enumerate(counts):
    ax.text(i, 0.01, str(c), ha="center", va="bottom", fontsize=6, rotation=90, color="white" if acc[i] > 0.12
            else "black")
  if mean is not None:
    ax.axhline(mean, color="tab:red", ls="--", lw=1, label=f"{mean_label} {mean:.3f}")
    ax.legend(fontsize=8, loc="upper right")
  ax.set_xticks(range(len(names)), names, rotation=90, fontsize=6)
  ax.set_ylim(0, 1.05)
  ax.set_ylabel("accuracy (number: clips)")
  ax.set_xlabel(xlabel)
  ax.set_title(title, fontsize=10)
  fig.tight_layout()
  return fig


def gate_histogram(gate: dict, *, title: str = ""):
  """Histogram of the gate g over a split's windows: `gate` is eval.json's pose_monitoring.gate (histogram edges
  and counts, mean, and the mean over windows without a valid joint, drawn as lines)."""
  plt = canvas.pyplot()
  edges = np.asarray(gate["histogram"]["edges"])
  counts = np.asarray(gate["histogram"]["counts"])
  total = max(int(counts.sum()), 1)
  fig, ax = plt.subplots(figsize=(6, 3.5))
  ax.bar(edges[:-1], counts / total, width=np.diff(edges), align="edge", color="tab:blue", edgecolor="white")
  ax.axvline(gate["mean"], color="tab:red", ls="--", lw=1, label=f"mean {gate['mean']:.3f}")
  if gate.get("mean_no_valid_joint") is not None:
    ax.axvline(gate["mean_no_valid_joint"], color="tab:gray", ls=":", lw=1,
               label=f"no valid joint {gate['mean_no_valid_joint']:.3f}")
  ax.set_xlim(0, 1)
  ax.set_xlabel("gate g (0: the frame is vision only, 1: fully pose-driven)")
  ax.set_ylabel("fraction of windows")
  ax.set_title(title or f"gate over {total} windows (clip x RGB frame)", fontsize=9)
  ax.legend(loc="upper left", fontsize=8)
  fig.tight_layout()
  return fig


def write_evaluation_plots(result: dict, folder: "str | pathlib.Path | RunFolder",
                           suffix: str = "") -> list[pathlib.Path]:
  """Saves the plots of an evaluation result (training.evaluation.compute_metrics) into a run's folder (or any
  folder): confusion<suffix>.png, per_class_accuracy<suffix>.png and, with the gate's statistics,
  gate_histogram<suffix>.png (RunFolder.figure_file). Returns the paths written."""
  canvas.files_only()
  names = result["class_names"]
  per_class = result["per_class"]
  figures = {
      "confusion": confusion(result["confusion"], names,
                             title=f"confusion (colour: row-normalised; numbers: clips), top-1 {result['top1']:.3f}, "
                                   f"mean class acc {result['mean_class_accuracy']:.3f}"),
      "per_class_accuracy": accuracy_bars(
          names, [np.nan if per_class[n]["accuracy"] is None else per_class[n]["accuracy"] for n in names],
          [per_class[n]["count"] for n in names], mean=result["mean_class_accuracy"],
          mean_label="mean class accuracy", xlabel="class",
          title="per-class accuracy on the evaluated split (number in the bar: test clips of the class)"),
  }
  gate = (result.get("pose_monitoring") or {}).get("gate")
  if gate:
    figures["gate_histogram"] = gate_histogram(gate)
  run = RunFolder.of(folder)
  run.path.mkdir(parents=True, exist_ok=True)
  paths = []
  for name, fig in figures.items():
    paths.append(run.figure_file(name, suffix))
    canvas.save(fig, paths[-1], dpi=120)
  return paths
