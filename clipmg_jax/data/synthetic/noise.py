"""Pose-estimator noise: clean synthetic joints -> what OpenPose would have written for each frame.

Models the failure modes seen in real OpenPose output of iMiGUE (e.g. the sample of video 298): per-joint jitter
and rare outliers, confidences that vary by joint and frame, dropped joints (written as 0, 0, 0), hips barely found
behind the desk, hands that lose confidence near the face, bursts of frames with nobody detected, and occasional
extra detections (a fragment of the subject's arm, or a partial person at the frame edge).
"""

import dataclasses

import numpy as np

from clipmg_jax.data.synthetic import body
from clipmg_jax.data.synthetic.subjects import Subject


@dataclasses.dataclass
class Detections:
  """OpenPose output of T frames. Arrays hold (x, y, confidence), pixels; (0, 0, 0) = not detected.

  pose (T, 25, 3) BODY_25, face (T, 70, 3), hands (T, 2, 21, 3) [right, left]: the subject.
  no_person (T,) bool: nobody detected in that frame (the subject's arrays are then not written).
  extra_people: {frame: pose (25, 3)} a second detection in that frame, written after the subject.
  """
  pose: np.ndarray
  face: np.ndarray
  hands: np.ndarray
  no_person: np.ndarray
  extra_people: dict


def _confidence(rng, shape, low, high, frame_sd):
  """Per-joint base confidence (fixed over the video) plus per-frame variation, in [0.05, 0.99]."""
  base = rng.uniform(low, high, size=shape[1:])
  return np.clip(base + rng.normal(0.0, frame_sd, size=shape), 0.05, 0.99)


def _noisy(points, conf, rng, jitter, outlier_rate, outlier_size, drop_rate):
  """points (T, J, 2), conf (T, J) -> (T, J, 3) with jitter, outliers and dropped joints zeroed."""
  xy = points + rng.normal(0.0, jitter, size=points.shape)
  outliers = rng.random(points.shape[:2]) < outlier_rate
  xy = xy + outliers[..., None] * rng.normal(0.0, outlier_size, size=points.shape)
  out = np.concatenate([xy, conf[..., None]], -1)
  out[rng.random(points.shape[:2]) < drop_rate] = 0.0
  return out


def detect(subject: Subject, clean: dict, behind: np.ndarray, rng: np.random.Generator, *,
           no_person_bursts_per_1000: float = 0.6, extra_person_rate: float = 0.01) -> Detections:
  """Noisy detections of the clean pose `clean` (from body.pose); `behind` (T, 2) marks arms behind the body."""
  pose25, face, hands = clean["body25"], clean["face"], clean["hands"]
  t = pose25.shape[0]
  sw, r = subject.shoulder_width, subject.head_radius
  width, height = subject.width, subject.height

  conf = _confidence(rng, (t, 25), 0.55, 0.92, 0.07)
  # A hand near the face is partly occluded by it and occludes it: both lose confidence.
  near_face = np.stack([np.linalg.norm(pose25[:, w] - clean["head"], axis=-1) < 1.8 * r
                        for w in (body.RWRI, body.LWRI)], -1)  # (T, 2)
  for side, (elbow, wrist) in enumerate(((body.RELB, body.RWRI), (body.LELB, body.LWRI))):
    conf[:, wrist] *= np.where(near_face[:, side], 0.6, 1.0)
    hidden = behind[:, side]
    conf[:, wrist] *= np.where(hidden, 0.15, 1.0)
    conf[:, elbow] *= np.where(hidden, 0.6, 1.0)
  pose = _noisy(pose25, conf, rng, jitter=0.008 * sw, outlier_rate=0.004, outlier_size=0.08 * sw, drop_rate=0.02)
  for side, wrist in ((0, body.RWRI), (1, body.LWRI)):
    gone = (behind[:, side] & (rng.random(t) < 0.8)) | (near_face[:, side] & (rng.random(t) < 0.1))
    pose[gone, wrist] = 0.0
  # Hips behind the desk: mostly missed, weak when found; legs never seen.
  for joint in body.BEHIND_DESK_JOINTS:
    found = rng.random(t) < 0.3
    pose[:, joint, 2] = np.where(found, rng.uniform(0.05, 0.3, t), 0.0)
    pose[~found, joint] = 0.0
  pose[:, list(body.HIDDEN_JOINTS)] = 0.0

  face_conf = _confidence(rng, (t, 70), 0.35, 0.9, 0.08) * np.where(near_face.any(-1), 0.5, 1.0)[:, None]
  face_out = _noisy(face, face_conf, rng, jitter=0.012 * r, outlier_rate=0.002, outlier_size=0.3 * r, drop_rate=0.01)
  hand_conf = _confidence(rng, (t, 2 * 21), 0.1, 0.7, 0.1).reshape(t, 2, 21)
  hands_out = _noisy(hands.reshape(t, 42, 2), hand_conf.reshape(t, 42), rng, jitter=0.012 * sw, outlier_rate=0.01,
                     outlier_size=0.05 * sw, drop_rate=0.05).reshape(t, 2, 21, 3)
  hands_out[np.repeat(behind[:, :, None], 21, axis=2)] = 0.0

  # Confidence-zero points are written as (0, 0, 0) by OpenPose; points outside the frame are not detected.
  for arr in (pose, face_out, hands_out):
    outside = (arr[..., 0] < 0) | (arr[..., 0] >= width) | (arr[..., 1] < 0) | (arr[..., 1] >= height)
    arr[outside | (arr[..., 2] <= 0)] = 0.0

  no_person = np.zeros(t, bool)
  for _ in range(rng.poisson(no_person_bursts_per_1000 * t / 1000)):
    start = int(rng.integers(0, t))
    no_person[start:start + int(rng.integers(2, 9))] = True

  extra = {}
  for frame in np.flatnonzero(rng.random(t) < extra_person_rate):
    if no_person[frame]:
      continue
    other = np.zeros((25, 3))
    if rng.random() < 0.5:
      # A fragment of the subject's own arm, detected as a separate person (as in real OpenPose output).
      joints = [body.RSHO, body.RELB, body.RWRI] if rng.random() < 0.5 else [body.LSHO, body.LELB, body.LWRI]
      other[joints, :2] = pose25[frame, joints] + rng.normal(0, 0.01 * sw, (3, 2))
      other[joints, 2] = rng.uniform(0.1, 0.5, 3)
    else:
      # A partial person at the left or right frame edge (someone walking past the camera).
      x0 = rng.uniform(0, 0.1 * width) if rng.random() < 0.5 else rng.uniform(0.9 * width, width - 1)
      joints = rng.choice([0, 1, 2, 3, 5, 6, 15, 16, 17, 18], size=int(rng.integers(3, 8)), replace=False)
      other[joints, 0] = np.clip(x0 + rng.normal(0, 0.05 * width, len(joints)), 0, width - 1)
      other[joints, 1] = np.clip(rng.uniform(0.2, 0.8) * height + rng.normal(0, 0.1 * height, len(joints)),
                                 0, height - 1)
      other[joints, 2] = rng.uniform(0.1, 0.5, len(joints))
    extra[int(frame)] = other
  return Detections(pose=pose.astype(np.float32), face=face_out.astype(np.float32),
                    hands=hands_out.astype(np.float32), no_person=no_person, extra_people=extra)
