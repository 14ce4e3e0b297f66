"""Keypoint layouts: COCO-18 (what the model consumes), OpenPose BODY_25, and the maps between them.

All keypoint arrays in this project are float32 (..., 18, 3) = (x, y, confidence), x and y in pixels of the
image they belong to, confidence in [0, 1]; a joint that was not detected has confidence 0.
"""

import numpy as np

COCO18_NAMES = (
    "nose", "neck",
    "right_shoulder", "right_elbow", "right_wrist",
    "left_shoulder", "left_elbow", "left_wrist",
    "right_hip", "right_knee", "right_ankle",
    "left_hip", "left_knee", "left_ankle",
    "right_eye", "left_eye", "right_ear", "left_ear",
)
NUM_JOINTS = len(COCO18_NAMES)

# BODY_25 index of each COCO-18 joint (BODY_25 adds MidHip at 8 and six foot points at 19..24).
BODY25_TO_COCO18 = np.array([0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18])

# Left/right pairs in COCO-18: a horizontal flip swaps them.
COCO18_FLIP_PAIRS = ((2, 5), (3, 6), (4, 7), (8, 11), (9, 12), (10, 13), (14, 15), (16, 17))


def flip_permutation() -> np.ndarray:
  """Index array p such that keypoints[..., p, :] swaps every left joint with its right twin."""
  perm = np.arange(NUM_JOINTS)
  for a, b in COCO18_FLIP_PAIRS:
    perm[a], perm[b] = b, a
  return perm


def box_to_resized(keypoints: np.ndarray, box, out_hw: tuple[int, int]) -> np.ndarray:
  """Keypoints float32 (..., 18, 3) in pixels of a source image -> pixels of its box (x0, y0, w, h) resized to
  out_hw = (H, W): x -> (x + 0.5 - x0) * W / w - 0.5 (pixel centres at integer coordinates, the map PIL's resize
  applies to pixels), likewise y. A new array; confidences are kept."""
  x0, y0, w, h = box
  out = np.array(keypoints, np.float32, copy=True)
  out[..., 0] = (out[..., 0] + 0.5 - x0) * (out_hw[1] / w) - 0.5
  out[..., 1] = (out[..., 1] + 0.5 - y0) * (out_hw[0] / h) - 0.5
  return out


def drop_off_frame(keypoints: np.ndarray, frame_hw: tuple[int, int]) -> tuple[np.ndarray, int]:
  """(keypoints, how many were dropped): joints with a non-finite coordinate, or more than one frame height or width
  beyond the frame (a broken estimate: a joint just outside the frame is kept), become missed (confidence 0, in
  place). A new array when any was dropped."""
  h, w = frame_hw
  x, y = keypoints[..., 0], keypoints[..., 1]
  with np.errstate(invalid="ignore"):
    bad = (keypoints[..., 2] > 0) & ~((x >= -w) & (x <= 2 * w) & (y >= -h) & (y <= 2 * h))
  count = int(bad.sum())
  if count:
    keypoints = keypoints.copy()
    keypoints[bad] = 0.0
  return keypoints, count


def zero_missing(keypoints: np.ndarray) -> np.ndarray:
  """Sets x = y = 0 for joints with confidence 0 (in place) and returns the array."""
  keypoints[..., :2] *= (keypoints[..., 2:3] > 0)
  return keypoints
