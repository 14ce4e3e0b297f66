"""Temporal sampling: which frames of a clip are stored at conversion, and which are fed to the model.

Segment rule (TSN-style): a sequence of `length` items is cut into `n` equal segments, segment s covering
[floor(s * length / n), floor((s + 1) * length / n)). Training draws one item uniformly at random in each segment;
evaluation takes the centre, floor((s + 0.5) * length / n). When length < n some segments are empty and take the
item at their start (clamped to length - 1): items repeat, in order, so short clips are stretched, never padded.

Both the RGB frames and the pose frames cover the whole clip, cut into the same 8 time segments: RGB frame s is drawn
from the stored frames of segment s (stored frames are uniformly pre-sampled, see `presample_indices`), and pose
frames 4s..4s+3 from the 4 quarters of segment s, so each RGB frame lines up with its window of 4 pose frames.
"""

import numpy as np


def segment_indices(length: int, n: int, rng: np.random.Generator | None = None) -> np.ndarray:
  """n indices into a sequence of `length` items by the segment rule: int64 (n,), non-decreasing.

  rng=None: segment centres (deterministic, evaluation); else one uniform draw per segment (training).
  """
  if length < 1:
    raise ValueError(f"cannot sample {n} items from an empty sequence")
  s = np.arange(n)
  if rng is None:
    return np.minimum(((2 * s + 1) * length) // (2 * n), length - 1).astype(np.int64)
  lo = (s * length) // n
  hi = np.maximum(((s + 1) * length) // n, lo + 1)  # Empty segment: its start.
  return np.minimum(lo + np.floor(rng.random(n) * (hi - lo)).astype(np.int64), length - 1)


def presample_indices(num_frames: int, max_stored: int) -> np.ndarray:
  """Clip frames (0..T-1) to store as JPEG at conversion: the centres of min(T, max_stored) equal segments.

  int64 (K,), strictly increasing.
  """
  return segment_indices(num_frames, min(num_frames, max_stored))


def sample_clip(num_stored: int, num_frames: int, *, num_rgb: int = 8, num_pose: int = 32,
                rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Chooses the frames of one clip for the model.

  Args:
    num_stored: K, JPEG frames stored in the record (0 for skeleton-only records).
    num_frames: T, frames of the clip (keypoints are stored for each).
    num_rgb: RGB frames to produce (8).
    num_pose: pose frames to produce (32); a multiple of num_rgb so each RGB frame gets num_pose // num_rgb.
    rng: None for evaluation (segment centres), a Generator for training (random within segments).
  Returns:
    (rgb, pose): int64 (num_rgb,) indices into the stored frames (zeros when K = 0) and int64 (num_pose,) clip
    frame indices into the keypoints.
  """
  if num_pose % num_rgb:
    raise ValueError(f"num_pose ({num_pose}) must be a multiple of num_rgb ({num_rgb})")
  rgb = segment_indices(num_stored, num_rgb, rng) if num_stored > 0 else np.zeros((num_rgb,), np.int64)
  pose = segment_indices(num_frames, num_pose, rng)
  return rgb, pose
