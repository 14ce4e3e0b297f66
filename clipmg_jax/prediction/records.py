"""Clips of one's own video as the converter's records and as the examples evaluation feeds the model.

Every clip, and every window of online recognition, is made by the converter's own code (clip_record.make_record, with
the conversion options of the checkpoint's dataset: the same stored frames, size, quality and keypoint scaling) and
read by the evaluation pipeline's decoder (Predictor.decoder), so its logits are those evaluation would give.
"""

import os
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


def clip_example(decoder: pipeline.ClipDecoder, options: clip_record.ConvertOptions, video: str | os.PathLike,
                 skeleton_dir: str | os.PathLike, video_id: str, start: int, end: int) -> dict:
  """One clip as evaluation sees it: the converter's record (clip_record.make_record) read by the evaluation decoder.
  Raises layouts.SkipClip when the converter would skip the clip (no skeleton file, or no person, in any frame)."""
  record, _ = clip_record.make_record(clip_task(video, skeleton_dir, video_id, start, end), options)
  return decoder.decode(example_codec.encode(record), None)


def window_records(video: str | os.PathLike, skeleton_dir: str | os.PathLike, video_id: str, starts: Sequence[int],
                   length: int, options: clip_record.ConvertOptions
                   ) -> Iterator[tuple[int, example_codec.ClipRecord | None]]:
  """(window index, record) of the windows of `length` frames at `starts`, each made as the converter makes a
  clip's record (its frames decoded once for all windows, clip_record.EncodedFrames); the record is None for a
  window the converter skips (no person in any of its frames)."""
  frames = clip_record.decode_frames
  if not options.skeleton_only and len(starts):
    offsets = sampling.presample_indices(length, options.max_stored_frames)
    frames = clip_record.EncodedFrames(video, np.asarray(starts, np.int64)[:, None] + offsets[None], options)
  for i, start in enumerate(starts):
    try:
      record, _ = clip_record.make_record(clip_task(video, skeleton_dir, video_id, int(start), int(start) + length - 1),
                                          options, frames=frames)
    except layouts.SkipClip:
      record = None
    yield i, record


def count_video_frames(video: str | os.PathLike) -> int:
  """Frames of a video: the container's count when it has one, else counted by decoding."""
  num = video_io.video_info(video)["num_frames"]
  if num > 0:
    return num
  return sum(1 for _ in video_io.iter_video_frames(video, 0))
