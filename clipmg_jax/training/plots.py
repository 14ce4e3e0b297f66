"""PNG plots of an evaluation: the row-normalised confusion matrix, per-class accuracy and the gate histogram."""

import pathlib

import numpy as np


def _pyplot():
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")  # files only; never open a window
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  return plt


def plot_confusion(result: dict, path: str | pathlib.Path) -> None:
  """Confusion matrix of `classification_metrics(...)` output, rows normalised to recall, written to `path`."""
  plt = _pyplot()
  cm = np.asarray(result["confusion"], np.float64)
  rows = cm.sum(axis=1, keepdims=True)
  norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
  names = result["class_names"]
  size = max(6.0, 0.28 * len(names) + 2)
  fig, ax = plt.subplots(figsize=(size + 1.5, size))
  im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
  ax.set_xticks(range(len(names)), names, rotation=90, fontsize=6)
  ax.set_yticks(range(len(names)), names, fontsize=6)
  ax.set_xlabel("predicted class")
  ax.set_ylabel("true class")
  ax.set_title(f"confusion (row-normalised), top-1 {result['top1']:.3f}, "
               f"mean class acc {result['mean_class_accuracy']:.3f}")
  fig.colorbar(im, ax=ax, fraction=0.046)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def plot_per_class_accuracy(result: dict, path: str | pathlib.Path) -> None:
  """Bar chart of per-class accuracy (classes absent from the evaluated split are left empty), with counts."""
  plt = _pyplot()
  names = result["class_names"]
  per_class = result["per_class"]
  acc = [per_class[n]["accuracy"] if per_class[n]["accuracy"] is not None else np.nan for n in names]
  counts = [per_class[n]["count"] for n in names]
  fig, ax = plt.subplots(figsize=(max(8.0, 0.32 * len(names) + 2), 4.5))
  ax.bar(range(len(names)), np.nan_to_num(acc), color="tab:blue")
  for i, c in enumerate(counts):
    ax.text(i, 0.01, str(c), ha="center", va="bottom", fontsize=6, rotation=90, color="white" if acc[i] and
            acc[i] > 0.1 else "black")
  ax.axhline(result["mean_class_accuracy"], color="tab:red", ls="--", lw=1, label="mean class accuracy")
  ax.set_xticks(range(len(names)), names, rotation=90, fontsize=6)
  ax.set_ylim(0, 1)
  ax.set_ylabel("accuracy (recall)")
  ax.set_title("per-class accuracy on the evaluated split (number in the bar: test clips of the class)", fontsize=9)
  ax.legend(loc="upper right", fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def plot_gate_histogram(result: dict, path: str | pathlib.Path) -> None:
  """Histogram of the gate g over all evaluated windows (result["pose_monitoring"]["gate"]), with its mean and
  the mean over windows without a valid joint, written to `path`."""
  plt = _pyplot()
  gate = result["pose_monitoring"]["gate"]
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
  ax.set_title(f"gate over {total} windows (clip x RGB frame)", fontsize=9)
  ax.legend(loc="upper left", fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
