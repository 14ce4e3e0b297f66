"""One clip's record (example_codec.ClipRecord) from its ClipTask: keypoints, frames, resize, JPEG.

Frames: min(T, max_stored_frames) frames at the centres of equal segments of the clip (sampling.presample_indices)
are resized so that their short side is `short_side` (never enlarged) and stored as JPEG. Keypoints, read by the
clip's layout (layouts.py), are scaled to the stored frame size. Skeleton-only records store no frames; their frame
size is what the video's frames would have had (`skeleton_frame_size`, iMiGUE's 1280x720 by default), so keypoints
are in the same units either way.
"""

import dataclasses
import io
import os
from typing import Callable, Sequence

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


class EncodedFrames:
  """The stored frames (exactly as decode_frames makes them) of every frame at `frame_indices` of one video, decoded
  in one pass (video.iter_frames_at: one opening, a seek only across long gaps) and each resized and encoded once:
  the clips of one video share them instead of each opening the video and decoding from the keyframe before it.
  A `frames` function for make_record. A clip with a frame the pass did not get (past the end of the video, or a
  video that cannot be read) is decoded by decode_frames, so it fails as it would alone, with the reader's error."""

  def __init__(self, video: str | os.PathLike, frame_indices: np.ndarray, options: ConvertOptions):
    wanted = np.asarray(frame_indices, np.int64).reshape(-1)
    self.jpegs, self.src_hw, self.dst_hw = {}, None, None
    if not wanted.size or wanted.min() < 0:
      return
    try:
      for index, frame in video_io.iter_frames_at(video, wanted):
        raw = frame.to_ndarray(format="rgb24")
        self.src_hw = tuple(raw.shape[:2])
        self.dst_hw = stored_size(*self.src_hw, options.short_side)
        self.jpegs[index] = encode_frames(raw[None], self.dst_hw, options.jpeg_quality)[0]
    except (OSError, ValueError, IndexError):  # An unreadable video: each clip's own read reports it.
      self.jpegs.clear()

  def __call__(self, task: layouts.ClipTask, frame_indices: np.ndarray, options: ConvertOptions):
    if any(int(i) not in self.jpegs for i in frame_indices):
      return decode_frames(task, frame_indices, options)
    return self.src_hw, self.dst_hw, [self.jpegs[int(i)] for i in frame_indices]


class FramesByVideo:
  """A `frames` function for make_record over many clips (a shard's, or one video's): when a clip of a video asks
  first, the stored frames of all `clips` of that video are decoded together (EncodedFrames) and the previous
  video's are let go. The records are those of decode_frames, byte for byte."""

  def __init__(self, clips: Sequence[layouts.ClipTask], options: ConvertOptions):
    self._wanted: dict[str, list[np.ndarray]] = {}
    if not options.skeleton_only:
      for clip in clips:
        if clip.video:
          self._wanted.setdefault(clip.video, []).append(
              clip.start_frame + sampling.presample_indices(clip.num_frames, options.max_stored_frames))
    self._video, self._frames = None, None

  def __call__(self, task: layouts.ClipTask, frame_indices: np.ndarray, options: ConvertOptions):
    if task.video not in self._wanted:
      return decode_frames(task, frame_indices, options)
    if task.video != self._video:
      self._video, self._frames = task.video, None  # Release the previous video's frames first.
      self._frames = EncodedFrames(task.video, np.concatenate(self._wanted[task.video]), options)
    return self._frames(task, frame_indices, options)


NO_POSE_SKIPS = (layouts.SKIP_NO_PERSON, layouts.SKIP_NO_SKELETON_FRAMES)


def make_record(task: layouts.ClipTask, options: ConvertOptions, cache: dict | None = None,
                frames: Callable = decode_frames, *, no_pose_ok: bool = False) -> tuple[example_codec.ClipRecord, dict]:
  """Reads one clip's raw data and builds its record; `cache` (optional) lets consecutive clips share raw reads;
  `frames` gives the stored frames (signature and result of decode_frames; overlapping windows of one video share
  encoded frames through it, prediction/records.py).

  Returns (record, skeleton report counts). Raises layouts.SkipClip (or any reader error) to skip the clip.
  no_pose_ok (prediction with a model that classifies without pose, never conversion): a clip without a person in
  any frame, or without skeleton files, keeps its frames with every joint missed (all zeros), and its counts say
  "no_pose": 1.
  """
  try:
    keypoints, counts = layouts.get(task.layout).read_keypoints(task, {} if cache is None else cache)
  except layouts.SkipClip as e:
    if not (no_pose_ok and e.kind in NO_POSE_SKIPS):
      raise
    keypoints, counts = np.zeros((task.num_frames, keypoints_lib.NUM_JOINTS, 3), np.float32), {"no_pose": 1}
  jpegs, indices = [], np.zeros((0,), np.int64)
  if options.skeleton_only or not task.video:
    src_hw = tuple(options.skeleton_frame_size)
    dst_hw = stored_size(*src_hw, options.short_side)
  else:
    indices = sampling.presample_indices(task.num_frames, options.max_stored_frames)
    src_hw, dst_hw, jpegs = frames(task, task.start_frame + indices, options)
  keypoints, off_frame = keypoints_lib.drop_off_frame(keypoints, src_hw)
  if off_frame:  # counted into the conversion's skeleton report, beside the other dropped joints
    counts = {**counts, "off_frame_joints": counts.get("off_frame_joints", 0) + off_frame}
  record = example_codec.ClipRecord(
      video_id=task.video_id, clip_id=task.clip_id, label_id=task.label_id, label=task.label, subject=task.subject,
      start_frame=task.start_frame, frame_height=dst_hw[0], frame_width=dst_hw[1], video_height=src_hw[0],
      video_width=src_hw[1], keypoints=scale_keypoints(keypoints, src_hw, dst_hw), frames=jpegs,
      frame_indices=indices)
  return record, counts
