"""Figures of one clip as the model sees it, shared by `python -m clipmg_jax.inspect_clip` and notebooks/.

Every function returns a matplotlib Figure made with pyplot (so a notebook shows it inline); a script that only
writes files selects the Agg backend first (canvas.files_only) and closes the figures it saved (canvas.save).
Inputs are the numpy arrays of clipmg_jax.prediction.inspection.look_inside (one clip, no batch axis): frames uint8
(T, S, S, 3), keypoints (T_p, 18, 3) in pixels of the S x S frames, maps (T, rows, cols) over the ViT's patches.
"""

from typing import Sequence

import numpy as np

from clipmg_jax.data import keypoints as kp
from clipmg_jax.figures import canvas
from clipmg_jax.training import metrics

# COCO-18 bones (pairs of joint indexes), the OpenPose drawing of the upper body, legs and face.
BONES = ((1, 0), (1, 2), (2, 3), (3, 4), (1, 5), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12),
         (12, 13), (0, 14), (14, 16), (0, 15), (15, 17))
CONFIDENCE_CMAP = "viridis"
MAP_CMAP = "magma"


def window_centre(num_rgb: int, num_pose: int) -> np.ndarray:
  """The pose frame lined up with each RGB frame: the middle of its window of num_pose / num_rgb pose frames."""
  k = num_pose // num_rgb
  return np.arange(num_rgb) * k + k // 2


def draw_skeleton(ax, points: np.ndarray, *, threshold: float = 0.1, size: float = 12, lw: float = 1.5):
  """Draws one pose (18, 3) on `ax`: bones between confident joints in white, joints coloured by confidence.
  Returns the scatter (for a colour bar)."""
  ok = points[:, 2] >= max(threshold, 1e-6)
  for a, b in BONES:
    if ok[a] and ok[b]:
      ax.plot(points[[a, b], 0], points[[a, b], 1], color="white", lw=lw, alpha=0.8)
  return ax.scatter(points[ok, 0], points[ok, 1], c=points[ok, 2], cmap=CONFIDENCE_CMAP, vmin=0, vmax=1, s=size,
                    edgecolors="black", linewidths=0.4, zorder=3)


def _strip(num: int, title: str, *, rows: int = 1, width: float = 1.9, extra: float = 1.0):
  plt = canvas.pyplot()
  cols = -(-num // rows)
  fig, axes = plt.subplots(rows, cols, figsize=(width * cols + extra, width * rows + 0.8), squeeze=False)
  for ax in axes.flat:
    ax.set_xticks([])
    ax.set_yticks([])
  for ax in axes.flat[num:]:
    ax.axis("off")
  fig.suptitle(title, fontsize=10)
  return fig, axes.flat[:num]


def skeleton_overlay(frames: np.ndarray, keypoints: np.ndarray, *, title: str = "", threshold: float = 0.1):
  """The T frames with the pose frame at the centre of each one's window drawn on it; a colour bar for confidence."""
  centre = window_centre(len(frames), len(keypoints))
  fig, axes = _strip(len(frames), title or "RGB frames with the COCO-18 skeleton (pose frame at each window's centre)")
  scatter = None
  for t, ax in enumerate(axes):
    ax.imshow(frames[t])
    scatter = draw_skeleton(ax, keypoints[centre[t]], threshold=threshold)
    ax.set_xlim(-0.5, frames.shape[2] - 0.5)
    ax.set_ylim(frames.shape[1] - 0.5, -0.5)
    ax.set_title(f"frame {t} (pose {centre[t]})", fontsize=8)
  fig.colorbar(scatter, ax=list(axes), fraction=0.02, pad=0.01, label="joint confidence")
  return fig


def joint_confidence(keypoints: np.ndarray, *, title: str = ""):
  """Confidence of every joint over the pose frames (0 = missing), joint names on the rows."""
  plt = canvas.pyplot()
  fig, ax = plt.subplots(figsize=(8, 4.2))
  im = ax.imshow(keypoints[:, :, 2].T, aspect="auto", cmap=CONFIDENCE_CMAP, vmin=0, vmax=1, interpolation="nearest")
  ax.set_yticks(range(kp.NUM_JOINTS), kp.COCO18_NAMES, fontsize=7)
  ax.set_xlabel("pose frame")
  ax.set_title(title or "joint confidence per pose frame (0: not detected)", fontsize=10)
  fig.colorbar(im, ax=ax, label="confidence")
  fig.tight_layout()
  return fig


def _overlay(ax, frame: np.ndarray, values: np.ndarray, vmax: float, alpha: float = 0.6):
  """The frame, dimmed, under a (rows, cols) map stretched over it."""
  h, w = frame.shape[:2]
  ax.imshow(frame, alpha=0.9)
  return ax.imshow(values, cmap=MAP_CMAP, vmin=0, vmax=vmax, alpha=alpha, extent=(-0.5, w - 0.5, h - 0.5, -0.5),
                   interpolation="nearest")


def heatmaps(frames: np.ndarray, heat: np.ndarray, *, joint_frame: int = 0, title: str = ""):
  """Row 1: each frame under the maximum over joints of its window-centre pose frame's heatmaps, as the skeleton
  tower renders them. Row 2: the 18 joint heatmaps of pose frame `joint_frame` (an empty one: joint missing)."""
  plt = canvas.pyplot()
  t = len(frames)
  centre = window_centre(t, len(heat))
  cols = max(t, 9)
  fig, axes = plt.subplots(3, cols, figsize=(1.7 * cols + 1, 6.2), squeeze=False)
  for ax in axes.flat:
    ax.set_xticks([])
    ax.set_yticks([])
    ax.axis("off")
  vmax = max(float(heat.max()), 1e-6)
  im = None
  for i in range(t):
    ax = axes[0, i]
    ax.axis("on")
    im = _overlay(ax, frames[i], heat[centre[i]].max(axis=-1), vmax)
    ax.set_title(f"frame {i} (pose {centre[i]})", fontsize=8)
  for j in range(kp.NUM_JOINTS):
    ax = axes[1 + j // 9, j % 9]
    ax.axis("on")
    ax.imshow(heat[joint_frame, :, :, j], cmap=MAP_CMAP, vmin=0, vmax=vmax, interpolation="nearest")
    ax.set_title(kp.COCO18_NAMES[j], fontsize=7)
  fig.suptitle(title or f"joint heatmaps as the model renders them ({heat.shape[1]} x {heat.shape[2]} cells); "
               f"rows 2-3: pose frame {joint_frame}, joint by joint", fontsize=10)
  fig.colorbar(im, ax=list(axes.flat), fraction=0.015, pad=0.01, label="heat = confidence x Gaussian")
  return fig


def patch_map(frames: np.ndarray, maps: np.ndarray, *, title: str, label: str, per_frame: str = "sum"):
  """Each frame under its (rows, cols) patch map, one colour scale for all frames; the frame's title gives the
  map's sum (per_frame="sum", e.g. the share of attention on the frame) or maximum ("max")."""
  fig, axes = _strip(len(frames), title)
  vmax = max(float(maps.max()), 1e-12)
  im = None
  for t, ax in enumerate(axes):
    im = _overlay(ax, frames[t], maps[t], vmax)
    value = maps[t].sum() if per_frame == "sum" else maps[t].max()
    ax.set_title(f"frame {t}: {per_frame} {value:.3f}", fontsize=8)
  fig.colorbar(im, ax=list(axes), fraction=0.02, pad=0.01, label=label)
  return fig


def patch_weights(frames: np.ndarray, weights: np.ndarray, keypoints: np.ndarray | None = None):
  """The pose-guided patch weights w (T, rows, cols) over each frame (each frame's weights sum to 1)."""
  uniform = 1.0 / weights[0].size
  fig = patch_map(frames, weights, per_frame="max", label="patch weight w",
                  title=f"pose-guided patch weights (sum 1 per frame; uniform would be {uniform:.3f})")
  if keypoints is not None:
    centre = window_centre(len(frames), len(keypoints))
    for t, ax in enumerate(fig.axes[:len(frames)]):
      draw_skeleton(ax, keypoints[centre[t]], size=6, lw=0.8)
  return fig


def attention(frames: np.ndarray, weights: np.ndarray):
  """Cross-attention weights (H, T, rows, cols), averaged over heads, over each frame; titles: the frame's share."""
  mean = weights.mean(axis=0)
  return patch_map(frames, mean, per_frame="sum", label="attention weight (mean over heads)",
                   title=f"cross-attention of the clip query over the {mean.size} tokens (mean of "
                         f"{weights.shape[0]} heads; title: share of the frame)")


def gate(gate_values: np.ndarray | None, reliability: np.ndarray, *, title: str = ""):
  """Gate g and pose reliability r per RGB frame (both in [0, 1])."""
  plt = canvas.pyplot()
  t = np.arange(len(reliability))
  fig, ax = plt.subplots(figsize=(6, 3.2))
  ax.bar(t - 0.2, reliability, width=0.4, color="tab:gray", label="pose reliability r (mean joint confidence)")
  if gate_values is not None:
    ax.bar(t + 0.2, gate_values, width=0.4, color="tab:orange", label="gate g (1: pose-driven, 0: vision only)")
  ax.set_ylim(0, 1.3)  # room for the legend above the bars
  ax.set_yticks(np.linspace(0, 1, 6))
  ax.set_xticks(t)
  ax.set_xlabel("RGB frame (window of pose frames)")
  ax.set_ylabel("value")
  ax.set_title(title or ("gate per frame against pose reliability" if gate_values is not None
                         else "pose reliability per frame (this variant has no gate)"), fontsize=10)
  ax.legend(fontsize=7, loc="upper center", ncol=2)
  fig.tight_layout()
  return fig


def top_classes(probabilities: np.ndarray, class_names: Sequence[str], *, label: int | None = None, k: int = 5,
                title: str = ""):
  """Horizontal bars of the k most probable classes; the true class (if given) in green, others in blue."""
  plt = canvas.pyplot()
  order = metrics.ranked(probabilities, k)
  fig, ax = plt.subplots(figsize=(6, 0.35 * k + 1.2))
  colours = ["tab:green" if i == label else "tab:blue" for i in order]
  ax.barh(range(k), probabilities[order], color=colours)
  ax.set_yticks(range(k), [f"{class_names[i]} ({i})" for i in order], fontsize=8)
  ax.invert_yaxis()
  ax.set_xlim(0, 1)
  ax.set_xlabel("probability")
  true = "" if label is None else f"true: {class_names[label]} ({label}, green)"
  ax.set_title(title or f"top-{k} classes; {true}", fontsize=9)
  fig.tight_layout()
  return fig


def frame_strip(frames: np.ndarray, title: str, *, keypoints: np.ndarray | None = None):
  """The frames of one clip in a row (with the skeleton when keypoints are given)."""
  fig, axes = _strip(len(frames), title, width=1.3, extra=0.2)
  centre = window_centre(len(frames), len(keypoints)) if keypoints is not None else None
  for t, ax in enumerate(axes):
    ax.imshow(frames[t])
    if keypoints is not None:
      draw_skeleton(ax, keypoints[centre[t]], size=5, lw=0.8)
      ax.set_xlim(-0.5, frames.shape[2] - 0.5)
      ax.set_ylim(frames.shape[1] - 0.5, -0.5)
  return fig
