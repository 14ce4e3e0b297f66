"""Rendering: a press-conference shot drawn from the clean joint positions, with PIL.

Everything is drawn at the positions that body.pose computed (the same ones the OpenPose writer perturbs), so the
body is where the skeleton says it is. Draw order: backdrop, arms behind the body, torso, hair, head, desk, arms in
front. Shapes are plain PIL primitives: a 320x240 frame costs a fraction of a millisecond.

`cue_scale` sizes the four render-only cues (puffed cheeks, pressed lips, interlaced fingers, the pen) that tell
apart classes sharing one pose program: at 1 they are true to a 320x240 frame's proportions but only 2-3 pixels
wide once frames are scaled to 112-128 pixels for training; the default 2 keeps them a few pixels wide there.
"""

import numpy as np
from PIL import Image, ImageDraw

from clipmg_jax.data.synthetic import body
from clipmg_jax.data.synthetic.subjects import Subject

DEFAULT_CUE_SCALE = 2.0  # see the module docstring; also the SizeConfig default


def _shade(colour, factor):
  return tuple(min(max(int(c * factor), 0), 255) for c in colour)


def backdrop(subject: Subject) -> Image.Image:
  """The static wall behind the subject: a sponsor-tile pattern, with a vertical light gradient. RGB image."""
  w, h = subject.width, subject.height
  y = np.linspace(1.08, 0.9, h)[:, None, None]
  wall = np.broadcast_to(np.array(subject.backdrop, np.float32), (h, w, 3)) * y
  tile = subject.logo_size
  yy, xx = np.mgrid[0:h, 0:w]
  logos = (((yy // tile) + (xx // tile)) % 2 == 0) & ((yy % tile) > tile // 4) & ((yy % tile) < 3 * tile // 4) & (
      (xx % tile) > tile // 6) & ((xx % tile) < 5 * tile // 6)
  wall = np.where(logos[..., None], np.array(subject.backdrop_logo, np.float32) * y, wall)
  return Image.fromarray(np.clip(wall, 0, 255).astype(np.uint8))


def _ellipse(draw, centre, rx, ry, fill):
  x, y = float(centre[0]), float(centre[1])
  draw.ellipse((x - rx, y - ry, x + rx, y + ry), fill=fill)


def _line(draw, a, b, width, fill):
  draw.line((float(a[0]), float(a[1]), float(b[0]), float(b[1])), fill=fill, width=max(int(round(width)), 1))
  _ellipse(draw, b, width / 2, width / 2, fill)  # round joint.


def _arm(draw, subject, joints, side, channels, t, cue_scale):
  sw = subject.shoulder_width
  sho, elb, wri = ((body.RSHO, body.RELB, body.RWRI), (body.LSHO, body.LELB, body.LWRI))[side]
  sleeve = subject.jacket or subject.shirt
  _line(draw, joints[sho], joints[elb], 0.17 * sw, _shade(sleeve, 0.92))
  _line(draw, joints[elb], joints[wri], 0.14 * sw, _shade(sleeve, 0.85))
  direction = joints[wri] - joints[elb]
  direction = direction / max(np.linalg.norm(direction), 1e-6)
  palm = joints[wri] + direction * 0.08 * sw
  if channels["crossed_fingers"][t] > 0.5:
    # Interlaced fingers: a larger clasp with dark finger gaps across it.
    clasp = 0.075 * sw * max(0.75 * cue_scale, 1.0)
    _ellipse(draw, palm, clasp, clasp, subject.skin)
    normal = np.array([-direction[1], direction[0]])
    for j in (-1, 0, 1):
      centre = palm + normal * j * 0.03 * sw * cue_scale
      finger = direction * 0.06 * sw * cue_scale
      _line(draw, centre - finger, centre + finger, 0.015 * sw * cue_scale + 1, _shade(subject.skin, 0.45))
  else:
    _ellipse(draw, palm, 0.075 * sw, 0.075 * sw, subject.skin)


def _torso(draw, subject, joints):
  sw = subject.shoulder_width
  rs, ls, neck = joints[body.RSHO], joints[body.LSHO], joints[body.NECK]
  rh, lh = joints[body.RHIP], joints[body.LHIP]
  down = np.array([0.0, 0.3 * sw])
  outline = [rs + (-0.06 * sw, 0.0), ls + (0.06 * sw, 0.0), lh + (0.08 * sw, 0) + down, rh - (0.08 * sw, 0) + down]
  coat = subject.jacket or subject.shirt
  draw.polygon([tuple(map(float, p)) for p in outline], fill=coat)
  if subject.jacket is not None:
    v = [neck + (-0.12 * sw, -0.02 * sw), neck + (0.12 * sw, -0.02 * sw), neck + (0.0, 0.5 * sw)]
    draw.polygon([tuple(map(float, p)) for p in v], fill=subject.shirt)
  _line(draw, neck + (0.0, 0.05 * sw), neck - (0.0, 0.25 * sw), 0.2 * sw, _shade(subject.skin, 0.9))


def _head(draw, subject, joints, face, channels, t, cue_scale):
  r = subject.head_radius
  ears = joints[[body.REAR, body.LEAR]]
  centre = ears.mean(0) - (0.0, 0.02 * r)
  bulge = channels["cheeks"][t]
  if subject.hair_style == 1:  # long hair falls behind the head to the shoulders.
    draw.rectangle((float(centre[0] - 1.1 * r), float(centre[1] - 0.4 * r), float(centre[0] + 1.1 * r),
                    float(centre[1] + 1.6 * r)), fill=subject.hair)
  for ear in ears:
    _ellipse(draw, ear, 0.16 * r, 0.25 * r, _shade(subject.skin, 0.85))
  _ellipse(draw, centre, 0.92 * r * (1 + 0.22 * bulge), 1.15 * r, subject.skin)
  if bulge > 0.3:
    for cheek in face[[3, 13]]:  # jaw points under the eyes: puffed, flushed cheeks.
      _ellipse(draw, cheek + (0.0, -0.25 * r), 0.25 * r * cue_scale, 0.2 * r * cue_scale, (220, 90, 80))
  top = (float(centre[0] - 0.98 * r), float(centre[1] - 1.22 * r), float(centre[0] + 0.98 * r),
         float(centre[1] + 0.2 * r))
  if subject.hair_style in (0, 1):
    draw.chord(top, 180, 360, fill=subject.hair)
  elif subject.hair_style == 3:
    draw.chord(top, 180, 360, fill=subject.cap)
    draw.rectangle((float(centre[0] - 1.2 * r), float(centre[1] - 0.55 * r), float(centre[0] + 0.3 * r),
                    float(centre[1] - 0.4 * r)), fill=_shade(subject.cap, 0.7))
  eyes_closed = channels["eyes_closed"][t] > 0.5
  for eye in joints[[body.REYE, body.LEYE]]:
    if eyes_closed:
      _line(draw, eye - (0.14 * r, 0), eye + (0.14 * r, 0), 0.05 * r + 1, _shade(subject.skin, 0.5))
    else:
      _ellipse(draw, eye, 0.15 * r, 0.08 * r + 0.5, (245, 245, 245))
      _ellipse(draw, eye, 0.06 * r + 0.5, 0.06 * r + 0.5, (30, 30, 40))
  _ellipse(draw, joints[body.NOSE], 0.1 * r, 0.08 * r, _shade(subject.skin, 0.75))
  mouth = face[48:60].mean(0)
  if channels["lips_pressed"][t] > 0.5:  # a dark line where the red mouth was
    half = 0.22 * r * cue_scale
    _line(draw, mouth - (half, 0), mouth + (half, 0), 0.05 * r * cue_scale + 1, (60, 20, 20))
  else:
    _ellipse(draw, mouth, 0.28 * r, 0.1 * r + 0.5, (190, 70, 80))


def _desk(draw, subject):
  w, h = subject.width, subject.height
  y = float(subject.desk_y)
  draw.rectangle((0, y, w, h), fill=subject.desk)
  draw.rectangle((0, y, w, y + max(2, h // 60)), fill=_shade(subject.desk, 1.3))
  mic_x = subject.centre_x + 0.45 * subject.shoulder_width
  draw.rectangle((float(mic_x - 2), float(y - 0.25 * subject.shoulder_width), float(mic_x + 2), y), fill=(40, 40, 40))
  _ellipse(draw, (mic_x, y - 0.25 * subject.shoulder_width), 5, 6, (30, 30, 30))


def _pen(draw, subject, joints, cue_scale):
  """A bright pen held between the hands."""
  sw = subject.shoulder_width
  mid = (joints[body.RWRI] + joints[body.LWRI]) / 2 + (0.0, -0.02 * sw)
  half = np.array([0.2 * sw, 0.08 * sw]) * (1 + cue_scale) / 2
  _line(draw, mid - half, mid + half, 0.05 * sw * cue_scale + 1, (255, 200, 0))


def render_frame(background: Image.Image, subject: Subject, joints: np.ndarray, face: np.ndarray, behind,
                 channels: dict, t: int, cue_scale: float = DEFAULT_CUE_SCALE) -> np.ndarray:
  """One frame, uint8 (H, W, 3), from clean BODY_25 joints (25, 2) and face points (70, 2) in pixels."""
  image = background.copy()
  draw = ImageDraw.Draw(image)
  for side in (0, 1):
    if behind[side]:
      _arm(draw, subject, joints, side, channels, t, cue_scale)
  _torso(draw, subject, joints)
  _head(draw, subject, joints, face, channels, t, cue_scale)
  _desk(draw, subject)
  for side in (0, 1):
    if not behind[side]:
      _arm(draw, subject, joints, side, channels, t, cue_scale)
  if channels["object"][t] > 0.5:
    _pen(draw, subject, joints, cue_scale)
  return np.asarray(image)
