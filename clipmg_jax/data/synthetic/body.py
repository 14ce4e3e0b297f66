"""The synthetic body: a per-frame control state -> OpenPose BODY_25, face (70) and hand (21) points, in pixels.

A motion program (motions.py) drives a few control signals; this module turns them into joint positions that
both the OpenPose writer and the renderer use, so the drawn body is exactly where the skeleton says it is.
"""

import dataclasses

import numpy as np

from clipmg_jax.data.synthetic.subjects import Subject

# BODY_25 indices used here.
NOSE, NECK, RSHO, RELB, RWRI, LSHO, LELB, LWRI, MIDHIP, RHIP, RKNEE, RANK, LHIP = range(13)
REYE, LEYE, REAR, LEAR = 15, 16, 17, 18
# Joints that a seated subject behind a desk never shows (knees, ankles, feet).
HIDDEN_JOINTS = (10, 11, 13, 14, 19, 20, 21, 22, 23, 24)
BEHIND_DESK_JOINTS = (MIDHIP, RHIP, LHIP)


@dataclasses.dataclass
class State:
  """Control signals of T frames. Offsets in pixels; index 0 = the subject's right side (image left).

  torso: (T, 2) shift of the whole upper body. shoulder_raise: (T, 2) dy of each shoulder (negative = up).
  head: (T, 2) shift of the head centre relative to the neck. pitch: (T,) head tilt, +1 = face turned up.
  wrist: (T, 2, 2) absolute wrist positions [right, left]. behind: (T, 2) bool, the arm is behind the torso.
  Render-only channels, each (T,) in [0, 1]: lips_pressed, cheeks (bulging), crossed_fingers, object (a held
  pen), eyes_closed.
  """
  torso: np.ndarray
  shoulder_raise: np.ndarray
  head: np.ndarray
  pitch: np.ndarray
  wrist: np.ndarray
  behind: np.ndarray
  lips_pressed: np.ndarray
  cheeks: np.ndarray
  crossed_fingers: np.ndarray
  object: np.ndarray
  eyes_closed: np.ndarray

  @property
  def num_frames(self) -> int:
    return len(self.pitch)

  @classmethod
  def concatenate(cls, states) -> "State":
    return cls(**{f.name: np.concatenate([getattr(s, f.name) for s in states])
                  for f in dataclasses.fields(cls)})


def rest_points(subject: Subject) -> dict:
  """Rest positions (pixels) of the neck, shoulders, head centre and the wrists resting on the desk."""
  cx, ny, sw = subject.centre_x, subject.neck_y, subject.shoulder_width
  return {
      "neck": np.array([cx, ny]),
      "shoulders": np.array([[cx - sw / 2, ny + 0.06 * sw], [cx + sw / 2, ny + 0.06 * sw]]),
      "head": np.array([cx, ny - subject.neck_length]),
      "wrists": np.array([[cx - 0.30 * sw, subject.desk_y + 0.05 * sw], [cx + 0.30 * sw, subject.desk_y + 0.05 * sw]]),
  }


def rest_state(subject: Subject, num_frames: int) -> State:
  """Motionless rest: wrists on the desk, head upright."""
  t = num_frames
  zeros = np.zeros(t, np.float32)
  wrists = np.broadcast_to(rest_points(subject)["wrists"], (t, 2, 2)).astype(np.float32)
  return State(torso=np.zeros((t, 2), np.float32), shoulder_raise=np.zeros((t, 2), np.float32),
               head=np.zeros((t, 2), np.float32), pitch=zeros.copy(), wrist=wrists.copy(),
               behind=np.zeros((t, 2), bool), lips_pressed=zeros.copy(), cheeks=zeros.copy(),
               crossed_fingers=zeros.copy(), object=zeros.copy(), eyes_closed=zeros.copy())


def _elbows(shoulder: np.ndarray, wrist: np.ndarray, upper: float, fore: float, outward: float):
  """Two-link inverse kinematics. shoulder, wrist (T, 2) -> (elbow (T, 2), reachable wrist (T, 2)).

  The elbow takes the solution further out to the side (`outward` = -1 for the right arm, +1 for the left) and,
  between equals, the lower one.
  """
  delta = wrist - shoulder
  dist = np.linalg.norm(delta, axis=-1, keepdims=True)
  direction = delta / np.maximum(dist, 1e-6)
  dist = np.clip(dist, abs(upper - fore) + 1.0, upper + fore - 1.0)
  wrist = shoulder + direction * dist
  cos_a = np.clip((upper ** 2 + dist ** 2 - fore ** 2) / (2 * upper * dist), -1.0, 1.0)
  sin_a = np.sqrt(1.0 - cos_a ** 2)
  candidates = []
  for sign in (1.0, -1.0):
    rotated = np.concatenate([direction[:, :1] * cos_a - sign * direction[:, 1:] * sin_a,
                              sign * direction[:, :1] * sin_a + direction[:, 1:] * cos_a], axis=-1)
    candidates.append(shoulder + upper * rotated)
  score = [outward * (c[:, 0] - shoulder[:, 0]) + 0.3 * (c[:, 1] - shoulder[:, 1]) for c in candidates]
  elbow = np.where((score[0] >= score[1])[:, None], candidates[0], candidates[1])
  return elbow, wrist


# Face template (70 points, OpenPose face order) in head-radius units around the head centre, before pitch.
def _face_template() -> tuple[np.ndarray, np.ndarray]:
  jaw_angles = np.linspace(np.pi, 0.0, 17)
  jaw = np.stack([-0.88 * np.cos(jaw_angles), 0.05 + 1.0 * np.sin(jaw_angles)], -1)
  brow_x = np.linspace(-0.7, -0.15, 5)
  brows = np.concatenate([np.stack([brow_x, -0.38 - 0.06 * np.sin(np.linspace(0, np.pi, 5))], -1),
                          np.stack([-brow_x[::-1], -0.38 - 0.06 * np.sin(np.linspace(0, np.pi, 5))], -1)])
  nose = np.concatenate([np.stack([np.zeros(4), np.linspace(-0.2, 0.2, 4)], -1),
                         np.stack([np.linspace(-0.18, 0.18, 5), np.full(5, 0.3)], -1)])
  eye_angles = np.linspace(0, 2 * np.pi, 6, endpoint=False)
  eye = np.stack([0.14 * np.cos(eye_angles), 0.06 * np.sin(eye_angles)], -1)
  eyes = np.concatenate([eye + (-0.38, -0.12), eye + (0.38, -0.12)])
  outer = np.linspace(np.pi, -np.pi, 12, endpoint=False)
  inner = np.linspace(np.pi, -np.pi, 8, endpoint=False)
  lips = np.concatenate([np.stack([0.3 * np.cos(outer), 0.55 + 0.1 * np.sin(outer)], -1),
                         np.stack([0.2 * np.cos(inner), 0.55 + 0.04 * np.sin(inner)], -1)])
  pupils = np.array([[-0.38, -0.12], [0.38, -0.12]])
  points = np.concatenate([jaw, brows, nose, eyes, lips, pupils]).astype(np.float32)
  # How much each point moves up per unit of pitch: interior features more than the jaw outline.
  lift = np.concatenate([np.full(17, 0.15), np.full(53, 0.4)]).astype(np.float32)
  return points, lift


FACE_TEMPLATE, FACE_PITCH_LIFT = _face_template()
MOUTH_Y = 0.55  # mouth centre below the head centre, in head radii.


def head_centre(subject: Subject, state: State) -> np.ndarray:
  """(T, 2) head centre in pixels."""
  rest = rest_points(subject)
  return rest["head"] + state.torso + state.head


def pose(subject: Subject, state: State) -> dict:
  """Clean joint positions of every frame, in pixels of the frame.

  Returns body25 (T, 25, 2) (hidden joints hold their would-be positions; the writer gives them confidence 0),
  face (T, 70, 2), hands (T, 2, 21, 2) [right, left], head (T, 2) head centre, head_radius (float).
  """
  t = state.num_frames
  rest = rest_points(subject)
  sw, r = subject.shoulder_width, subject.head_radius
  body = np.zeros((t, 25, 2), np.float32)
  neck = rest["neck"] + state.torso
  body[:, NECK] = neck
  shoulders = rest["shoulders"][None] + state.torso[:, None] + np.stack(
      [np.zeros_like(state.shoulder_raise), state.shoulder_raise], -1)
  body[:, RSHO], body[:, LSHO] = shoulders[:, 0], shoulders[:, 1]
  hc = head_centre(subject, state)
  pitch = state.pitch[:, None]
  body[:, NOSE] = hc + np.stack([np.zeros(t), (0.22 - 0.5 * state.pitch) * r], -1)
  body[:, REYE] = hc + np.stack([np.full(t, -0.38 * r), (-0.12 - 0.4 * state.pitch) * r], -1)
  body[:, LEYE] = hc + np.stack([np.full(t, 0.38 * r), (-0.12 - 0.4 * state.pitch) * r], -1)
  body[:, REAR] = hc + np.stack([np.full(t, -0.92 * r), (0.02 + 0.1 * state.pitch) * r], -1)
  body[:, LEAR] = hc + np.stack([np.full(t, 0.92 * r), (0.02 + 0.1 * state.pitch) * r], -1)
  hips_y = subject.neck_y + 1.2 * sw
  body[:, RHIP] = np.stack([subject.centre_x - 0.28 * sw + 0.5 * state.torso[:, 0], np.full(t, hips_y)], -1)
  body[:, LHIP] = np.stack([subject.centre_x + 0.28 * sw + 0.5 * state.torso[:, 0], np.full(t, hips_y)], -1)
  body[:, MIDHIP] = (body[:, RHIP] + body[:, LHIP]) / 2
  for joint in HIDDEN_JOINTS:  # Below the frame edge, as if the legs were there.
    body[:, joint] = (body[:, MIDHIP] + np.array([0.0, 0.6 * sw])).astype(np.float32)
  hands = np.zeros((t, 2, 21, 2), np.float32)
  for side, (sho, elb, wri, outward) in enumerate(((RSHO, RELB, RWRI, -1.0), (LSHO, LELB, LWRI, 1.0))):
    elbow, wrist = _elbows(body[:, sho].astype(np.float64), state.wrist[:, side].astype(np.float64),
                           subject.upper_arm, subject.forearm, outward)
    body[:, elb], body[:, wri] = elbow, wrist
    hands[:, side] = _hand_points(elbow, wrist, sw, outward)
  face = hc[:, None] + (FACE_TEMPLATE[None] - FACE_PITCH_LIFT[None, :, None] * np.array([0.0, 1.0]) * pitch[:, :, None]
                        ) * r
  return {"body25": body, "face": face.astype(np.float32), "hands": hands, "head": hc.astype(np.float32),
          "head_radius": float(r)}


def hand_direction(elbow: np.ndarray, wrist: np.ndarray) -> np.ndarray:
  """(T, 2) unit vector along the forearm, elbow -> wrist."""
  d = wrist - elbow
  return d / np.maximum(np.linalg.norm(d, axis=-1, keepdims=True), 1e-6)


def _hand_points(elbow, wrist, sw, outward) -> np.ndarray:
  """OpenPose hand layout (wrist, then 4 points per finger, thumb first) fanned along the forearm. (T, 21, 2)."""
  d = hand_direction(elbow, wrist)
  n = np.stack([-d[:, 1], d[:, 0]], -1) * -outward
  points = [wrist]
  for finger, spread in enumerate(np.linspace(-0.6, 0.5, 5)):
    for k in range(1, 5):
      along = (0.05 + 0.035 * k) * sw if finger else (0.03 + 0.025 * k) * sw
      points.append(wrist + along * (d * np.cos(spread) + n * np.sin(spread)))
  return np.stack(points, 1).astype(np.float32)
