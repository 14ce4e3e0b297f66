"""Motion programs: idle behaviour over a whole video, and one program per class applied inside a clip.

Every program works on a slice of a body.State (offsets in pixels) and scales its motion by the subject's
shoulder width `sw` and head radius `r`, so that the same class looks alike across body sizes. A program is an
envelope e(u) over the clip's normalised time u in [0, 1] (reach, hold, return) times a target pose, plus a class
oscillation. By design some classes share their pose program and differ only in what the renderer draws:
  C2 (bulging face) / C29 (pressing lips): same deep-breath shoulder rise; cheeks vs pressed lips.
  C23 (rubbing hands) / C24 (crossing fingers) / C26 (manipulating objects): same hands-together rubbing; plain
    hands vs interlaced fingers vs a bright pen.
while others are small pose motions that RGB barely shows (C31 shaking shoulders, C1 turtle neck, C28 head up).
"""

import numpy as np

from clipmg_jax.data.synthetic import body
from clipmg_jax.data.synthetic.subjects import Subject


def _smooth_noise(rng: np.random.Generator, num_frames: int, correlation_frames: float) -> np.ndarray:
  """Zero-mean, unit-scale noise smoothed over about `correlation_frames` frames. (num_frames,)."""
  width = max(int(correlation_frames), 1)
  raw = rng.standard_normal(num_frames + 2 * width)
  kernel = np.hanning(2 * width + 1)
  smooth = np.convolve(raw, kernel / kernel.sum(), mode="same")[width:width + num_frames]
  return smooth / (smooth.std() + 1e-6)


def idle(subject: Subject, num_frames: int, fps: float, rng: np.random.Generator) -> body.State:
  """A whole video of idle sitting: breathing, slow sway, small head and hand drift, blinks."""
  state = body.rest_state(subject, num_frames)
  sw, r = subject.shoulder_width, subject.head_radius
  t = np.arange(num_frames) / fps
  breath = np.sin(2 * np.pi * t / rng.uniform(3.0, 4.5) + rng.uniform(0, 2 * np.pi))
  state.shoulder_raise += (-0.012 * sw * breath)[:, None]
  state.torso[:, 1] += -0.005 * sw * breath
  state.torso[:, 0] += 0.015 * sw * _smooth_noise(rng, num_frames, 2 * fps)
  state.head += 0.04 * r * np.stack([_smooth_noise(rng, num_frames, fps), _smooth_noise(rng, num_frames, fps)], -1)
  state.pitch += 0.05 * _smooth_noise(rng, num_frames, fps)
  for side in range(2):
    for axis in range(2):
      state.wrist[:, side, axis] += 0.012 * sw * _smooth_noise(rng, num_frames, 1.5 * fps)
  state.wrist += state.torso[:, None] * 0.3
  blink_starts = np.cumsum(rng.uniform(2.5, 5.0, size=int(t[-1] / 2.5) + 2) * fps).astype(int)
  for start in blink_starts[blink_starts < num_frames]:
    state.eyes_closed[start:start + 3] = 1.0
  return state


class _Clip:
  """What a program needs: the clip's time base, envelope, subject geometry and current (idle) positions."""

  def __init__(self, subject: Subject, state: body.State, rng: np.random.Generator):
    self.subject, self.state, self.rng = subject, state, rng
    self.t = state.num_frames
    self.u = np.linspace(0.0, 1.0, self.t)
    ramp = rng.uniform(0.15, 0.3)
    rise = np.clip(self.u / ramp, 0, 1)
    fall = np.clip((1 - self.u) / ramp, 0, 1)
    self.e = (rise * rise * (3 - 2 * rise)) * (fall * fall * (3 - 2 * fall))  # smoothstep in and out.
    self.sw, self.r = subject.shoulder_width, subject.head_radius
    self.head = body.head_centre(subject, state)  # (T, 2)
    rest = body.rest_points(subject)
    self.neck = rest["neck"] + state.torso
    self.rest_shoulders = rest["shoulders"]
    dominant = 0 if subject.right_handed else 1
    self.side = dominant if rng.random() < 0.85 else 1 - dominant
    self.m = -1.0 if self.side == 0 else 1.0  # outward x direction of the acting hand.
    self.scale = rng.uniform(0.75, 1.25)  # amplitude of this performance.

  def jitter(self, size: float) -> np.ndarray:
    return self.rng.normal(0.0, size, 2)

  def osc(self, cycles: float, phase: float | None = None) -> np.ndarray:
    cycles *= self.rng.uniform(0.8, 1.2)
    phase = self.rng.uniform(0, 2 * np.pi) if phase is None else phase
    return np.sin(2 * np.pi * cycles * self.u + phase)

  def reach(self, side: int, target: np.ndarray, wobble: np.ndarray | None = None) -> None:
    """Moves one wrist from its idle position to `target` ((2,) or (T, 2)) and back, plus a wobble (T, 2)."""
    target = np.broadcast_to(target, (self.t, 2))
    if wobble is not None:
      target = target + wobble * self.scale
    w = self.state.wrist[:, side]
    self.state.wrist[:, side] = w + self.e[:, None] * (target - w)


def _one_hand(target_fn, wobble_fn=None):
  def program(c: _Clip):
    target = target_fn(c) + c.jitter(0.08 * c.r)
    c.reach(c.side, target, None if wobble_fn is None else wobble_fn(c))
  return program


def _two_hands(target_fn, wobble_fn=None):
  def program(c: _Clip):
    for side, m in ((0, -1.0), (1, 1.0)):
      target = target_fn(c, m) + c.jitter(0.06 * c.r)
      c.reach(side, target, None if wobble_fn is None else wobble_fn(c, m))
  return program


def _xy(x, y):
  return np.stack(np.broadcast_arrays(np.asarray(x, float), np.asarray(y, float)), -1)


def _breath_program(c: _Clip):
  """Deep breath: both shoulders and the torso rise slowly; shared by C2 and C29."""
  lift = c.e * np.sin(np.pi * c.u) * c.scale
  c.state.shoulder_raise += (-0.07 * c.sw * lift)[:, None]
  c.state.torso[:, 1] += -0.02 * c.sw * lift
  c.state.head[:, 1] += -0.02 * c.sw * lift


def _hands_together_program(c: _Clip):
  """Both hands meet on the desk in front of the body and rub; shared by C23, C24 and C26."""
  s = c.subject
  phase = c.rng.uniform(0, 2 * np.pi)
  for side, m in ((0, -1.0), (1, 1.0)):
    target = _xy(s.centre_x + m * 0.07 * c.sw, s.desk_y + 0.0 * c.sw) + c.jitter(0.05 * c.r)
    rub = _xy(m * 0.04 * c.sw * c.osc(3.0, phase), 0.015 * c.sw * c.osc(3.0, phase + np.pi / 2))
    c.reach(side, target, rub)


def _turtle_neck(c: _Clip):
  c.state.head[:, 1] += 0.35 * c.r * c.e * c.scale
  c.state.shoulder_raise += (-0.06 * c.sw * c.e * c.scale)[:, None]


def _covering_face(c: _Clip):
  _two_hands(lambda c, m: c.head + _xy(m * 0.3 * c.r, 0.9 * c.r))(c)


def _scratch_back(c: _Clip):
  sho = c.rest_shoulders[c.side] + c.state.torso
  _one_hand(lambda c: sho + _xy(-c.m * 0.05 * c.sw, -0.3 * c.sw),
            lambda c: _xy(0 * c.u, 0.05 * c.sw * c.osc(4.0)))(c)
  c.state.behind[:, c.side] |= c.e > 0.5


def _folding_arms(c: _Clip):
  for side, m in ((0, -1.0), (1, 1.0)):
    target = c.neck + _xy(-m * 0.28 * c.sw, (0.62 if side == 0 else 0.7) * c.sw) + c.jitter(0.05 * c.r)
    c.reach(side, target)


def _arms_behind(c: _Clip):
  for side, m in ((0, -1.0), (1, 1.0)):
    c.reach(side, c.neck + _xy(m * 0.42 * c.sw, 0.75 * c.sw) + c.jitter(0.05 * c.r))
    c.state.behind[:, side] |= c.e > 0.5


def _moving_torso(c: _Clip):
  sway = c.e * c.scale * c.osc(1.0, phase=0.0 if c.rng.random() < 0.5 else np.pi)
  c.state.torso[:, 0] += 0.09 * c.sw * sway
  c.state.head[:, 0] += 0.03 * c.sw * sway
  c.state.wrist[..., 0] += (0.03 * c.sw * sway)[:, None]


def _sitting_straight(c: _Clip):
  lift = c.e * c.scale
  c.state.torso[:, 1] += -0.1 * c.sw * lift
  c.state.shoulder_raise += (0.02 * c.sw * lift)[:, None]  # shoulders drop back down relative to the raised neck.
  c.state.wrist[..., 1] += (-0.04 * c.sw * lift)[:, None]


def _scratch_arm(c: _Clip):
  other = 1 - c.side
  upper_arm = (c.rest_shoulders[other] + c.state.wrist[:, other]) / 2 + _xy(0.0, -0.1 * c.sw)
  _one_hand(lambda c: upper_arm, lambda c: _xy(0.03 * c.sw * c.osc(3.0), 0.06 * c.sw * c.osc(3.0)))(c)


def _minaret(c: _Clip):
  _two_hands(lambda c, m: c.neck + _xy(m * 0.05 * c.sw, 0.5 * c.sw))(c)


def _hold_back_arms(c: _Clip):
  s = c.subject
  _two_hands(lambda c, m: _xy(s.centre_x + m * 0.62 * c.sw, s.desk_y - 0.02 * c.sw))(c)
  c.state.shoulder_raise += (-0.03 * c.sw * c.e)[:, None]


def _head_up(c: _Clip):
  c.state.pitch += 0.8 * c.e * c.scale
  c.state.head[:, 1] += -0.08 * c.r * c.e


def _akimbo(c: _Clip):
  _two_hands(lambda c, m: c.neck + _xy(m * 0.52 * c.sw, 0.72 * c.sw))(c)


def _shaking_shoulders(c: _Clip):
  shake = c.e * c.scale * np.abs(c.osc(2.5))
  c.state.shoulder_raise += (-0.06 * c.sw * shake)[:, None]
  c.state.head[:, 1] += -0.02 * c.sw * shake


def _illustrative(c: _Clip):
  """Talking with the hands: both wrists trace smooth loops in front of the chest; the head nods."""
  for side, m in ((0, -1.0), (1, 1.0)):
    active = side == c.side or c.rng.random() < 0.6
    if not active:
      continue
    centre = c.neck + _xy(m * 0.2 * c.sw, 0.55 * c.sw) + c.jitter(0.1 * c.r)
    loop = _xy(0.15 * c.sw * c.osc(1.5), 0.12 * c.sw * c.osc(2.0))
    c.reach(side, centre, loop)
  c.state.head[:, 1] += 0.06 * c.r * c.osc(2.0) * c.e


def _head_point(dx, dy):
  """A target at (dx, dy) head radii from the head centre, dx mirrored to the acting hand's side."""
  return lambda c: c.head + _xy(c.m * dx * c.r, dy * c.r)


# Programs by 0-based class index (C1..C32).
PROGRAMS = {
    0: _turtle_neck,
    1: _breath_program,  # RGB: cheeks bulge.
    2: _one_hand(_head_point(0.3, -1.05), lambda c: _xy(0.06 * c.r * c.osc(1.0), 0 * c.u)),
    3: _one_hand(_head_point(0.7, -0.55), lambda c: _xy(0 * c.u, 0.15 * c.r * c.osc(5.0))),
    4: _one_hand(_head_point(0.1, -0.2), lambda c: _xy(0.25 * c.r * c.osc(2.5), 0 * c.u)),
    5: _covering_face,
    6: _one_hand(_head_point(0.38, 0.2), lambda c: _xy(0.1 * c.r * c.osc(3.0, 0.0), 0.1 * c.r * c.osc(3.0, 1.57))),
    7: _one_hand(_head_point(0.55, 0.75), lambda c: _xy(0 * c.u, 0.12 * c.r * c.osc(2.0))),
    8: _one_hand(_head_point(1.05, 0.35)),
    9: _one_hand(_head_point(0.1, 1.1), lambda c: _xy(0.05 * c.r * c.osc(7.0), 0.03 * c.r * c.osc(7.0))),
    10: _one_hand(_head_point(0.25, 1.5), lambda c: _xy(0.1 * c.r * c.osc(1.0), 0 * c.u)),
    11: _one_hand(lambda c: c.neck + _xy(c.m * 0.08 * c.sw, 0.05 * c.sw),
                  lambda c: _xy(0 * c.u, 0.05 * c.sw * c.osc(3.0))),
    12: _one_hand(_head_point(1.0, -0.2), lambda c: _xy(0.3 * c.r * c.osc(1.5), -0.15 * c.r * c.osc(1.5))),
    13: _two_hands(lambda c, m: c.neck + _xy(m * 0.08 * c.sw, 0.22 * c.sw),
                   lambda c, m: _xy(0 * c.u, 0.04 * c.sw * c.osc(2.0, 0.0))),
    14: _one_hand(lambda c: c.neck + _xy(0.0, 0.2 * c.sw)),
    15: _scratch_back,
    16: _folding_arms,
    17: _one_hand(lambda c: c.neck + _xy(-c.m * 0.1 * c.sw, 0.5 * c.sw),
                  lambda c: _xy(0.15 * c.sw * c.osc(3.0), 0 * c.u)),
    18: _arms_behind,
    19: _moving_torso,
    20: _sitting_straight,
    21: _scratch_arm,
    22: _hands_together_program,
    23: _hands_together_program,  # RGB: interlaced fingers.
    24: _minaret,
    25: _hands_together_program,  # RGB: a pen between the hands.
    26: _hold_back_arms,
    27: _head_up,
    28: _breath_program,  # RGB: lips pressed.
    29: _akimbo,
    30: _shaking_shoulders,
    31: _illustrative,
}
# Render-only channels set by a class (State field name), on top of its pose program.
RGB_CHANNELS = {1: "cheeks", 23: "crossed_fingers", 25: "object", 28: "lips_pressed"}


def apply_gesture(label: int, subject: Subject, state: body.State, start: int, end: int,
                  rng: np.random.Generator) -> None:
  """Performs class `label` (0-based) over frames start..end (inclusive) of `state`, in place."""
  piece = body.State(**{name: value[start:end + 1] for name, value in vars(state).items()})  # views.
  clip = _Clip(subject, piece, rng)
  PROGRAMS[label](clip)
  channel = RGB_CHANNELS.get(label)
  if channel is not None:
    getattr(piece, channel)[:] = np.maximum(getattr(piece, channel), np.clip(clip.e * 1.6, 0, 1))
