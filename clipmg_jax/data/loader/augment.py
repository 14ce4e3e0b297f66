"""Spatial processing shared by frames and keypoints: crop boxes, JPEG decode + crop + resize, and the flip.

Coordinates: keypoints follow the OpenPose convention, pixel (i, j) has its centre at (x=i, y=j). A crop box
(x0, y0, w, h) is in continuous image coordinates (pixel i spans [i, i + 1)), floats allowed; resizing the box to
S x S maps a keypoint x to (x + 0.5 - x0) * S / w - 0.5, the exact map PIL's `resize(box=...)` applies to pixels.
A horizontal flip of an S-wide image maps x to S - 1 - x and swaps left/right joints.

Keypoints with confidence 0 (missing) are set to (0, 0, 0) after every transform. Keypoints that fall outside the
crop keep their (out-of-range) coordinates and confidence: the model's heatmaps simply place no mass inside the frame
for them, and keeping them lets a later stage decide.
"""

import io
import math

import numpy as np
from PIL import Image

from clipmg_jax.data import keypoints as kp

_FLIP = kp.flip_permutation()


def center_crop_box(height: int, width: int) -> tuple[float, float, float, float]:
  """The centred square of side min(height, width): resizing it to S x S equals "resize the short side to S, then
  centre-crop S x S" (the evaluation transform)."""
  side = min(height, width)
  return ((width - side) / 2.0, (height - side) / 2.0, float(side), float(side))


def random_resized_crop_box(height: int, width: int, rng: np.random.Generator, *,
                            scale: tuple[float, float] = (0.4, 1.0),
                            ratio: tuple[float, float] = (3 / 4, 4 / 3),
                            attempts: int = 10) -> tuple[float, float, float, float]:
  """A random crop box (x0, y0, w, h) covering a fraction in `scale` of the image area with aspect w/h in `ratio`
  (log-uniform), placed uniformly; after `attempts` failures, the centre crop. As in Inception / torchvision's
  RandomResizedCrop, but with a larger minimum scale: micro-gestures are small and must stay in view."""
  area = float(height * width)
  log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
  for _ in range(attempts):
    target = area * rng.uniform(scale[0], scale[1])
    aspect = math.exp(rng.uniform(*log_ratio))
    w = math.sqrt(target * aspect)
    h = math.sqrt(target / aspect)
    if w <= width and h <= height:
      return (float(rng.uniform(0, width - w)), float(rng.uniform(0, height - h)), w, h)
  return center_crop_box(height, width)


def crop_keypoints(keypoints: np.ndarray, box, size: int) -> np.ndarray:
  """Maps keypoints float32 (..., 18, 3) in pixels of the source image to pixels of the box resized to size x size."""
  return kp.box_to_resized(keypoints, box, (size, size))


def flip_keypoints(keypoints: np.ndarray, width: int) -> np.ndarray:
  """Horizontal flip of keypoints (..., 18, 3) of a `width`-pixel-wide image: mirrors x, swaps left/right joints."""
  out = np.array(keypoints[..., _FLIP, :], np.float32, copy=True)
  out[..., 0] = (width - 1) - out[..., 0]
  return out


def decode_crop_resize(jpeg: bytes, box, size: int, flip: bool = False) -> np.ndarray:
  """Decodes a JPEG and returns its crop `box` resized to size x size, mirrored if `flip`: uint8 (size, size, 3) RGB.

  When the box is at least twice as large as the output, the JPEG is decoded at 1/2, 1/4 or 1/8 scale (PIL draft
  mode: libjpeg scales in the DCT domain, far cheaper than full decode + resize) and the box is scaled to match.
  """
  image = Image.open(io.BytesIO(jpeg))
  full_w, full_h = image.size
  x0, y0, w, h = box
  reduce = 1
  while reduce < 8 and min(w, h) / (2 * reduce) >= size:
    reduce *= 2
  if reduce > 1:
    image.draft("RGB", (math.ceil(full_w / reduce), math.ceil(full_h / reduce)))
    fx, fy = image.size[0] / full_w, image.size[1] / full_h
    x0, y0, w, h = x0 * fx, y0 * fy, w * fx, h * fy
  if image.mode != "RGB":
    image = image.convert("RGB")
  out = image.resize((size, size), Image.BILINEAR, box=(x0, y0, x0 + w, y0 + h))
  if flip:  # On the PIL image: ~80x cheaper than copying a negatively strided numpy view.
    out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
  return np.asarray(out)
