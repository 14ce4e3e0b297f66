"""Clips of one's own video as the converter's records and as the examples evaluation feeds the model.

Every clip, and every window of online recognition, is made by the converter's own code (clip_record.make_record, with
the conversion options of the checkpoint's dataset: the same stored frames, size, quality and keypoint scaling) and
read by the evaluation pipeline's decoder (Predictor.decoder), so its logits are those evaluation would give.
"""

import os
import pathlib
from typing import Iterator, Sequence

import numpy as np

from clipmg_jax.data import sampling
from clipmg_jax.data.loader import pipeline
from clipmg_jax.data.raw import video as video_io
from clipmg_jax.data.records import clip_record
from clipmg_jax.data.records import example_codec
from clipmg_jax.data.records import layouts


def clip_task(video: str | os.PathLike, skeleton_dir: str | os.PathLike, video_id: str, start: int,
              end: int) -> layouts.ClipTask:
  """The converter's description of frames start..end (inclusive) of a video with OpenPose JSON in
  <skeleton_dir>/<video_id>/; label and subject unknown (0, -1)."""
  return layouts.ClipTask(split="predict", video_id=video_id, label_id=0, clip_id=0, label=0, subject=-1,
                          start_frame=start, end_frame=end, layout="imigue", skeleton=str(skeleton_dir),
                          video=str(video))


class NothingToClassifyError(ValueError):
  """A clip the converter would skip: no skeleton folder or file, or no person, in any of its frames (a model that
  classifies without pose, `+robust`, answers for the last two from vision)."""


NO_POSE_HINT = ("a model trained with +robust (e.g. --config configs/synthetic.py:full+extras+robust) classifies "
                "such a clip from vision alone")


class FrameRangeError(ValueError):
  """A clip's frame range that is empty or passes the last frame that decodes."""


def check_range(video: str | os.PathLike, start: int, end: int, readable: int, declared: int) -> None:
  """Raises FrameRangeError unless 0 <= start <= end < readable (video_io.readable_frames' counts)."""
  if start < 0 or end < start:
    raise FrameRangeError(f"{video}: frame range {start}..{end} is empty or negative")
  if end >= readable:
    why = (f"only frames 0..{readable - 1} decode of the {declared} its header declares (damaged or cut short)"
           if readable < declared else f"its last frame is {readable - 1}")
    raise FrameRangeError(f"{video}: frames {start}..{end} asked for, but {why}")


def clip_example(decoder: pipeline.ClipDecoder, options: clip_record.ConvertOptions, video: str | os.PathLike,
                 skeleton_dir: str | os.PathLike, video_id: str, start: int, end: int, *,
                 no_pose_ok: bool = False) -> dict:
  """One clip as evaluation sees it: the converter's record (clip_record.make_record) read by the evaluation decoder.
  Raises NothingToClassifyError when the converter would skip the clip (no skeleton folder, or no skeleton file or
  no person in any frame); with no_pose_ok (a model that classifies without pose) only without the folder, and a
  clip without a person has every joint missed."""
  try:
    record, _ = clip_record.make_record(clip_task(video, skeleton_dir, video_id, start, end), options,
                                        no_pose_ok=no_pose_ok)
  except (layouts.SkipClip, FileNotFoundError) as e:  # FileNotFoundError: the video's skeleton folder is not there
    folder = pathlib.Path(skeleton_dir) / video_id
    where = "" if str(folder) in str(e) else f" (skeletons: {folder})"
    hint = f"; {NO_POSE_HINT}" if getattr(e, "kind", None) in clip_record.NO_POSE_SKIPS else ""
    raise NothingToClassifyError(f"{video} frames {start}..{end}: {e}{where}; nothing to classify{hint}") from None
  return decoder.decode(example_codec.encode(record), None)


def window_records(video: str | os.PathLike, skeleton_dir: str | os.PathLike, video_id: str, starts: Sequence[int],
                   length: int, options: clip_record.ConvertOptions, *, no_pose_ok: bool = False
                   ) -> Iterator[tuple[int, example_codec.ClipRecord | None]]:
  """(window index, record) of the windows of `length` frames at `starts`, each made as the converter makes a
  clip's record (its frames decoded once for all windows, clip_record.EncodedFrames); the record is None for a
  window the converter skips (no person in any of its frames), unless no_pose_ok (its joints are then all missed)."""
  frames = clip_record.decode_frames
  if not options.skeleton_only and len(starts):
    offsets = sampling.presample_indices(length, options.max_stored_frames)
    frames = clip_record.EncodedFrames(video, np.asarray(starts, np.int64)[:, None] + offsets[None], options)
  for i, start in enumerate(starts):
    try:
      record, _ = clip_record.make_record(clip_task(video, skeleton_dir, video_id, int(start), int(start) + length - 1),
                                          options, frames=frames, no_pose_ok=no_pose_ok)
    except layouts.SkipClip:
      record = None
    yield i, record


def count_video_frames(video: str | os.PathLike) -> int:
  """Frames of a video that decode (video_io.readable_frames: fewer than its header declares when the file is
  damaged or cut short). Raises video_io.UnreadableVideoError naming a file that is not a readable video."""
  return video_io.readable_frames(video)[1]
