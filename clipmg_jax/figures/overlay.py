"""Drawing on video frames with PIL, cheap enough for every frame of a video: the skeleton, a side panel of text with
the top classes as bars, and the cursor on a timeline strip.

Colours: joints by confidence on clip_views.CONFIDENCE_CMAP (as in the figures of one clip), bones white; the most
probable class's bar orange, the others blue.
"""

import functools
from typing import Sequence

import numpy as np
from PIL import Image
from PIL import ImageDraw
from PIL import ImageFont

from clipmg_jax.figures import clip_views

BACKGROUND = (24, 24, 28)
TEXT = (235, 235, 235)
MUTED = (160, 160, 168)
TOP1 = (255, 160, 40)
OTHER = (70, 130, 200)
TRACK = (58, 58, 66)
CURSOR = (230, 40, 40)
MARGIN = 16


@functools.lru_cache(maxsize=8)
def font(size: int) -> ImageFont.ImageFont:
  """DejaVu Sans (matplotlib's own font, always installed with it) at `size` pixels; PIL's default font if absent."""
  from matplotlib import font_manager  # pylint: disable=import-outside-toplevel
  try:
    return ImageFont.truetype(font_manager.findfont("DejaVu Sans", fallback_to_default=False), size)
  except (OSError, ValueError):
    return ImageFont.load_default(size)


@functools.lru_cache(maxsize=1)
def _confidence_colours() -> np.ndarray:
  import matplotlib  # pylint: disable=import-outside-toplevel
  return (matplotlib.colormaps[clip_views.CONFIDENCE_CMAP](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)


def draw_skeleton(image: Image.Image, points: np.ndarray, *, threshold: float = 0.1, width: int = 3,
                  radius: int = 5) -> None:
  """Draws one pose (18, 3), x and y in pixels of `image`, onto it: bones between confident joints in white,
  joints filled with their confidence's colour."""
  draw = ImageDraw.Draw(image)
  ok = points[:, 2] >= max(threshold, 1e-6)
  for a, b in clip_views.BONES:
    if ok[a] and ok[b]:
      draw.line([tuple(points[a, :2]), tuple(points[b, :2])], fill=(255, 255, 255), width=width)
  colours = _confidence_colours()
  for j in np.flatnonzero(ok):
    x, y, c = points[j]
    colour = tuple(int(v) for v in colours[int(np.clip(c, 0, 1) * 255)])
    draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=colour, outline=(0, 0, 0))


def _fit(draw: ImageDraw.ImageDraw, text: str, face, width: int) -> str:
  """`text`, cut with an ellipsis to fit `width` pixels."""
  if draw.textlength(text, font=face) <= width:
    return text
  while text and draw.textlength(text + "…", font=face) > width:
    text = text[:-1]
  return text + "…"


def panel(size: tuple[int, int], header: Sequence[str], bars: Sequence[tuple[str, float]] | None,
          footer: Sequence[str] = (), *, bars_title: str = "", empty: str = "") -> Image.Image:
  """A side panel of `size` (width, height): `header` lines (the first larger), then `bars` (name, probability)
  as horizontal bars with their value (or the line `empty` when bars is None), then `footer` lines."""
  image = Image.new("RGB", size, BACKGROUND)
  draw = ImageDraw.Draw(image)
  width = size[0] - 2 * MARGIN
  y = MARGIN
  for i, line in enumerate(header):
    face = font(22 if i == 0 else 17)
    draw.text((MARGIN, y), _fit(draw, line, face, width), font=face, fill=TEXT if i == 0 else MUTED)
    y += 30 if i == 0 else 24
  y += 12
  if bars_title:
    draw.text((MARGIN, y), bars_title, font=font(17), fill=TEXT)
    y += 28
  if bars is None:
    draw.text((MARGIN, y), _fit(draw, empty, font(17), width), font=font(17), fill=MUTED)
    y += 28
  for rank, (name, probability) in enumerate(bars or ()):
    draw.text((MARGIN, y), _fit(draw, f"{rank + 1}. {name}", font(17), width), font=font(17), fill=TEXT)
    y += 24
    track = width - 64
    draw.rectangle([MARGIN, y, MARGIN + track, y + 16], fill=TRACK)
    filled = int(round(track * float(np.clip(probability, 0, 1))))
    if filled:
      draw.rectangle([MARGIN, y, MARGIN + filled, y + 16], fill=TOP1 if rank == 0 else OTHER)
    draw.text((MARGIN + track + 8, y - 2), f"{probability:.2f}", font=font(16), fill=TEXT)
    y += 30
  y += 8
  for line in footer:
    draw.text((MARGIN, y), _fit(draw, line, font(17), width), font=font(17), fill=TEXT)
    y += 24
  return image


def draw_cursor(image: Image.Image, x: float, top: int, bottom: int, width: int = 3) -> None:
  """A vertical line at `x` from `top` to `bottom` (pixels of `image`): the current frame on a timeline."""
  ImageDraw.Draw(image).line([(x, top), (x, bottom)], fill=CURSOR, width=width)
