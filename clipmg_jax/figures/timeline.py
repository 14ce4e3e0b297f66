"""Online segments over time: true gestures above, predicted segments below, each box labelled with its class index.

A prediction is green when it matches a true gesture of its class (online.matched, the evaluation's matching) and
red otherwise; without true gestures there is one lane of predictions in orange. `predict --plot_video` saves it as
a PNG (save_segments); the rendered video draws the same figure as a strip under its frames (figures/video.py).
"""

import pathlib
from typing import Sequence

from clipmg_jax.figures import canvas
from clipmg_jax.prediction import online

UNSCORED = "tab:orange"


def segments(num_frames: int, predicted: Sequence[online.Segment], truth: Sequence[online.Segment] | None = None,
             *, fps: float = 25.0, iou: float = 0.5, title: str | None = None,
             figsize: tuple[float, float] | None = None, dpi: float = 110, fontsize: float = 7):
  """The lanes over the video's `num_frames` frames, x in seconds. `title` None: a title saying what the colours
  mean; "": none. figsize (inches) defaults to a width that grows with the video's length."""
  plt = canvas.pyplot()
  seconds = num_frames / fps
  lanes = [(0, predicted, None)]
  if truth is not None:
    lanes = [(1, truth, "tab:blue"), (0, predicted, online.matched(predicted, truth, iou))]
  height = 1.2 + 0.7 * len(lanes)
  fig, ax = plt.subplots(figsize=figsize or (max(10.0, min(28.0, seconds / 4)), height), dpi=dpi)
  for lane, boxes, colours in lanes:
    for i, s in enumerate(boxes):
      colour = (colours if isinstance(colours, str) else UNSCORED if colours is None
                else "tab:green" if colours[i] else "tab:red")
      ax.broken_barh([(s.start / fps, s.num_frames / fps)], (lane - 0.35, 0.7), facecolors=colour,
                     edgecolor="black", linewidth=0.4)
      ax.text((s.start + s.num_frames / 2) / fps, lane, str(s.label), ha="center", va="center", fontsize=fontsize)
  names = ["predicted", "true"][:len(lanes)]
  ax.set_yticks(range(len(lanes)), names, fontsize=fontsize + 1)
  ax.tick_params(axis="x", labelsize=fontsize)
  ax.set_xlim(0, seconds)
  ax.set_ylim(-0.6, len(lanes) - 0.4)
  ax.set_xlabel("time (s)", fontsize=fontsize + 1)
  if title is None:
    title = (f"gestures (class index): predicted green = matched (same class, tIoU >= {iou}), red = unmatched"
             if truth is not None else "predicted gestures (class index)")
  if title:
    ax.set_title(title, fontsize=fontsize + 2)
  fig.tight_layout(pad=0.3)
  return fig


def save_segments(path: str | pathlib.Path, video_id: str, num_frames: int, predicted: Sequence[online.Segment],
                  truth: Sequence[online.Segment], *, fps: float = 25.0, iou: float = 0.5) -> None:
  """The PNG of `predict --online --raw_root ... --plot_video`: both lanes of one video, titled with its id."""
  canvas.files_only()
  fig = segments(num_frames, predicted, truth, fps=fps, iou=iou,
                 title=f"video {video_id}: gestures (class index) — predicted green = matched (same class, tIoU >= "
                       f"{iou}), red = unmatched")
  canvas.save(fig, path, dpi=110)
