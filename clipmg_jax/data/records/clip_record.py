"""One clip's record (example_codec.ClipRecord) from its ClipTask: keypoints, frames, resize, JPEG.

Frames: min(T, max_stored_frames) frames at the centres of equal segments of the clip (sampling.presample_indices)
are resized so that their short side is `short_side` (never enlarged) and stored as JPEG. Keypoints, read by the
clip's layout (layouts.py), are scaled to the stored frame size. Skeleton-only records store no frames; their frame
size is what the video's frames would have had (`skeleton_frame_size`, iMiGUE's 1280x720 by default), so keypoints
are in the same units either way.
"""

import dataclasses
import io
from typing import Callable

import numpy as np
from PIL import Image

from clipmg_jax.data import keypoints as keypoints_lib
from clipmg_jax.data import sampling
from clipmg_jax.data.raw import imigue
from clipmg_jax.data.raw import video as video_io
from clipmg_jax.data.records import example_codec
from clipmg_jax.data.records import layouts


@dataclasses.dataclass(frozen=True)
class ConvertOptions:
  """How records are made. Changing any of these makes a restarted conversion start over."""
  max_stored_frames: int = 16  # JPEG frames stored per clip (uniformly pre-sampled).
  short_side: int = 256  # Short side of the stored frames in pixels (frames are never enlarged).
  jpeg_quality: int = 90
  skeleton_only: bool = False  # Store no frames (datasets without video).
  skeleton_frame_size: tuple[int, int] = (imigue.VIDEO_SIZE[1], imigue.VIDEO_SIZE[0])  # (height, width) of the
  # source frames when no video is read (skeleton-only), pixels.
  clips_per_shard: int = 128


def stored_size(height: int, width: int, short_side: int) -> tuple[int, int]:
  """(height, width) of stored frames: short side scaled to `short_side`, never enlarged."""
  scale = min(1.0, short_side / min(height, width))
  return max(1, round(height * scale)), max(1, round(width * scale))


def scale_keypoints(keypoints: np.ndarray, src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> np.ndarray:
  """Keypoints (..., 18, 3) in pixels of a src_hw image -> pixels of the same image resized to dst_hw (pixel centres
  at integer coordinates, as PIL's resize maps them). Missing joints stay (0, 0, 0)."""
  return keypoints_lib.zero_missing(keypoints_lib.box_to_resized(keypoints, (0, 0, src_hw[1], src_hw[0]), dst_hw))


def encode_frames(frames: np.ndarray, size_hw: tuple[int, int], quality: int) -> list[bytes]:
  """uint8 (K, H, W, 3) -> K JPEGs resized to size_hw (antialiased bilinear)."""
  out = []
  for frame in frames:
    image = Image.fromarray(frame)
    if image.size != (size_hw[1], size_hw[0]):
      image = image.resize((size_hw[1], size_hw[0]), Image.BILINEAR)
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)
    out.append(buf.getvalue())
  return out


def decode_frames(task: layouts.ClipTask, frame_indices: np.ndarray, options: ConvertOptions
                  ) -> tuple[tuple[int, int], tuple[int, int], list[bytes]]:
  """(source (H, W), stored (H, W), JPEGs) of a clip's stored frames, the video's frames at 0-based `frame_indices`
  decoded from task.video, resized and encoded: what make_record stores by default."""
  raw = video_io.read_video_frames(task.video, frame_indices)
  src_hw = tuple(raw.shape[1:3])
  dst_hw = stored_size(*src_hw, options.short_side)
  return src_hw, dst_hw, encode_frames(raw, dst_hw, options.jpeg_quality)


def make_record(task: layouts.ClipTask, options: ConvertOptions, cache: dict | None = None,
                frames: Callable = decode_frames) -> tuple[example_codec.ClipRecord, dict]:
  """Reads one clip's raw data and builds its record; `cache` (optional) lets consecutive clips share raw reads;
  `frames` gives the stored frames (signature and result of decode_frames; overlapping windows of one video share
  encoded frames through it, prediction/records.py).

  Returns (record, skeleton report counts). Raises layouts.SkipClip (or any reader error) to skip the clip.
  """
  keypoints, counts = layouts.get(task.layout).read_keypoints(task, {} if cache is None else cache)
  jpegs, indices = [], np.zeros((0,), np.int64)
  if options.skeleton_only or not task.video:
    src_hw = tuple(options.skeleton_frame_size)
    dst_hw = stored_size(*src_hw, options.short_side)
  else:
    indices = sampling.presample_indices(task.num_frames, options.max_stored_frames)
    src_hw, dst_hw, jpegs = frames(task, task.start_frame + indices, options)
  record = example_codec.ClipRecord(
      video_id=task.video_id, clip_id=task.clip_id, label_id=task.label_id, label=task.label, subject=task.subject,
      start_frame=task.start_frame, frame_height=dst_hw[0], frame_width=dst_hw[1], video_height=src_hw[0],
      video_width=src_hw[1], keypoints=scale_keypoints(keypoints, src_hw, dst_hw), frames=jpegs,
      frame_indices=indices)
  return record, counts
