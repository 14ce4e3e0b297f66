"""The annotated video of `predict --render`: the clip (or, online, the whole video) with the skeleton drawn on each
frame, a side panel with the top classes as bars, and for online recognition a timeline of the segments (predicted,
and the true ones when known) with a cursor on the current frame.

Frames are decoded in order (video.iter_video_frames), scaled by FFmpeg to a height between 360 and 720 pixels,
drawn on with PIL (overlay.py) and written with PyAV as H.264, or MPEG-4 part 2 where this PyAV build has no libx264
(video.first_encoder; the log says which). The timeline is one matplotlib figure (timeline.segments), drawn once.
"""

import dataclasses
import logging
import os
from typing import Sequence

import numpy as np
from PIL import Image

from clipmg_jax.data.raw import video as video_io
from clipmg_jax.figures import canvas
from clipmg_jax.figures import overlay
from clipmg_jax.figures import timeline
from clipmg_jax.prediction import online
from clipmg_jax.training import metrics

PANEL_WIDTH = 440
MIN_HEIGHT, MAX_HEIGHT = 360, 720
STRIP_DPI = 100


@dataclasses.dataclass
class Annotations:
  """What is drawn over frames first..last (F of them) of a video.

  keypoints: float (F, 18, 3), x and y in pixels of the video's frames (OpenPose's), confidence; probabilities:
  float (F, C), the class probabilities that speak for each frame (a NaN row: not classified); predicted and truth:
  online segments over the whole video (predicted None: no timeline); header: lines at the top of the panel.
  """
  keypoints: np.ndarray
  probabilities: np.ndarray
  class_names: Sequence[str]
  header: Sequence[str] = ()
  predicted: Sequence[online.Segment] | None = None
  truth: Sequence[online.Segment] | None = None
  iou: float = 0.5
  top_k: int = 3


def _even(x: float) -> int:
  return max(2, int(round(x / 2)) * 2)


def _strip(notes: Annotations, num_frames: int, width: int, fps: float) -> tuple[np.ndarray, float, float]:
  """The timeline as an RGB array (h, width, 3) of even height, and the pixel columns of its first and last frame."""
  plt = canvas.files_only()
  lanes = 1 if notes.truth is None else 2
  title = "" if notes.truth is None else (f"class index in each box; predicted green = matches a true gesture "
                                          f"(same class, tIoU >= {notes.iou}), red = does not")
  fig = timeline.segments(num_frames, notes.predicted, notes.truth, fps=fps, iou=notes.iou, title=title,
                          figsize=(width / STRIP_DPI, 0.75 + 0.45 * lanes + 0.2 * bool(title)), dpi=STRIP_DPI,
                          fontsize=8)
  pixels = canvas.to_rgb(fig)
  box = fig.axes[0].get_window_extent()
  plt.close(fig)
  pixels = pixels[:, :width]
  if pixels.shape[1] < width or pixels.shape[0] % 2:
    padded = np.full((_even(pixels.shape[0] + 1), width, 3), 255, np.uint8)
    padded[:pixels.shape[0], :pixels.shape[1]] = pixels
    pixels = padded
  return pixels, box.x0, box.x1


def _at(segments: Sequence[online.Segment] | None, frame: int) -> online.Segment | None:
  return next((s for s in segments or () if s.start <= frame <= s.end), None)


def _footer(notes: Annotations, frame: int) -> list[str]:
  if notes.predicted is None:
    return []
  lines = []
  for name, segments in (("predicted", notes.predicted), ("true", notes.truth)):
    if segments is None:
      continue
    s = _at(segments, frame)
    text = "none (background)" if s is None else f"{s.label} {notes.class_names[s.label]}"
    score = "" if s is None or name == "true" else f" ({s.score:.2f})"
    lines.append(f"{name} segment: {text}{score}")
  return lines


def _panel(notes: Annotations, frame: int, t: int, fps: float, height: int) -> Image.Image:
  probs = notes.probabilities[t]
  bars = None
  if np.isfinite(probs).all():
    bars = [(f"{notes.class_names[c]} ({c})", float(probs[c])) for c in metrics.ranked(probs, notes.top_k)]
  header = [*notes.header[:1], f"frame {frame}   {frame / fps:6.2f} s", *notes.header[1:]]
  title = f"top-{notes.top_k} classes" + (" (the window at this frame)" if notes.predicted is not None else "")
  return overlay.panel((PANEL_WIDTH, height), header, bars, _footer(notes, frame), bars_title=title,
                       empty="no person in this window: not classified")


def render(out: str | os.PathLike, video: str | os.PathLike, first: int, last: int, notes: Annotations, *,
           codec: str | None = None) -> dict:
  """Writes frames first..last of `video`, annotated with `notes`, to the mp4 `out`.

  codec: the encoder (default: video.first_encoder, H.264 when available). Returns {"path", "frames", "codec",
  "width", "height", "fps"}.
  """
  info = video_io.video_info(video)
  fps = info["fps"] or 25.0
  height = _even(np.clip(info["height"], MIN_HEIGHT, MAX_HEIGHT))
  width = _even(info["width"] * height / info["height"])
  scale = np.array([width / info["width"], height / info["height"], 1.0], np.float32)
  strip, x0, x1 = (None, 0.0, 0.0)
  if notes.predicted is not None:
    strip, x0, x1 = _strip(notes, last + 1, width + PANEL_WIDTH, fps)
  size = (width + PANEL_WIDTH, height + (0 if strip is None else strip.shape[0]))
  base = Image.new("RGB", size, overlay.BACKGROUND)
  if strip is not None:
    base.paste(Image.fromarray(strip), (0, height))
  codec = codec or video_io.first_encoder()
  if codec != video_io.ENCODERS[0]:
    logging.warning("%s is not in this PyAV build: writing %s with %s instead", video_io.ENCODERS[0], out, codec)
  logging.info("rendering frames %d..%d of %s to %s (%dx%d, %s)", first, last, video, out, *size, codec)

  def frames():
    for frame, decoded in video_io.iter_video_frames(video, first, last):
      t = frame - first
      picture = decoded.to_image(width=width, height=height)
      overlay.draw_skeleton(picture, notes.keypoints[t] * scale)
      composed = base.copy()
      composed.paste(picture, (0, 0))
      composed.paste(_panel(notes, frame, t, fps, height), (width, 0))
      if strip is not None:
        cursor = x0 + (frame + 0.5) / (last + 1) * (x1 - x0)
        overlay.draw_cursor(composed, cursor, height, size[1] - 1)
      yield np.asarray(composed)

  count = video_io.write_video(out, frames(), fps=fps, codec=codec, gop_size=max(1, int(round(fps))))
  return {"path": str(out), "frames": count, "codec": codec, "width": size[0], "height": size[1], "fps": fps}
