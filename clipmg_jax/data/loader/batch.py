"""The batch layout's padding and host-only leaves: the one definition of a masked-out example.

A batch is a dict of arrays with a leading example dimension (pipeline.py lists the keys). Padding examples have
mask False, zero frames and keypoints, label 0, subject -1 and clip_id -1 (SKIPPED_CLIP_ID when they stand in for a
record left out as unreadable); the loss and the metrics ignore them. String leaves (names) stay on the host.
"""

import numpy as np

from clipmg_jax.data import keypoints as kp

# clip_id of the masked-out example that stands in for a record skipped as unreadable (skip_corrupt=True), so that
# evaluation can count what it left out; other padding has clip_id -1.
SKIPPED_CLIP_ID = -2

# Values of the padding rows for the scalar keys; every other key is padded with zeros.
PADDING = {"label": 0, "subject": -1, "clip_id": -1, "mask": False}


def padding_example(num_frames: int, num_pose_frames: int, image_size: int, *, skipped: bool = False) -> dict:
  """A masked-out example of the batch layout; skipped=True marks it as a record left out as unreadable."""
  return {
      "frames": np.zeros((num_frames, image_size, image_size, 3), np.uint8),
      "keypoints": np.zeros((num_pose_frames, kp.NUM_JOINTS, 3), np.float32),
      "label": np.int32(PADDING["label"]), "subject": np.int32(PADDING["subject"]),
      "clip_id": np.int32(SKIPPED_CLIP_ID if skipped else PADDING["clip_id"]), "mask": np.bool_(PADDING["mask"]),
  }


def device_leaves(batch: dict) -> dict[str, np.ndarray]:
  """The leaves of a batch that go to the devices, as numpy arrays: all but strings (names stay on the host)."""
  out = {}
  for key, value in batch.items():
    value = np.asarray(value)
    if value.dtype.kind not in "OUS":
      out[key] = value
  return out


def pad_batch(batch: dict, size: int) -> dict[str, np.ndarray]:
  """The device leaves of a batch of at most `size` examples, padded to `size` rows with padding examples; mask
  (size,) float32 is 1 for real examples (rows that were real in the batch's own `mask`, if it has one, and not
  added here). ValueError when the batch has more than `size` examples."""
  n = len(batch["label"])
  if n > size:
    raise ValueError(f"eval batch has {n} examples, more than the eval batch size {size}")
  out = {}
  for key, value in device_leaves(batch).items():
    pad = np.full((size - n,) + value.shape[1:], PADDING.get(key, 0), value.dtype)
    out[key] = np.concatenate([value, pad]) if n < size else value
  mask = np.asarray(batch["mask"], bool) if "mask" in batch else np.ones(n, bool)
  out["mask"] = np.concatenate([mask, np.zeros(size - n, bool)]).astype(np.float32)
  return out
