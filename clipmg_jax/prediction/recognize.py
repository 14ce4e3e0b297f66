"""Class probabilities of one clip, of every sliding window of a video (cached on disk), and a video's online
segments (online.py turns window probabilities into segments)."""

import dataclasses
import json
import os
import pathlib

import numpy as np

from clipmg_jax.data.records import example_codec
from clipmg_jax.prediction import online
from clipmg_jax.prediction import predictor as predictor_lib
from clipmg_jax.prediction import records
from clipmg_jax.training import metrics


def clip_prediction(predictor: predictor_lib.Predictor, video: str | os.PathLike, skeleton_dir: str | os.PathLike,
                    video_id: str, start: int, end: int) -> tuple[np.ndarray, float]:
  """(float (C,) class probabilities, pose reliability in [0, 1]) of frames start..end (inclusive) of a video; the
  reliability is the model's r, averaged over the clip's windows (0: no usable joint)."""
  example = records.clip_example(predictor.decoder(), predictor.convert_options(), video, skeleton_dir, video_id,
                                 start, end, no_pose_ok=predictor.classifies_without_pose)
  out = predictor.outputs([example], progress=False)
  return metrics.softmax(out["logits"][0]), clip_reliability(out)[0]


def clip_reliability(outputs: dict[str, np.ndarray]) -> np.ndarray:
  """float (N,): each clip's pose reliability, the mean of the model's r over its windows (NaN for a model without
  a skeleton, which gives none)."""
  if "reliability" not in outputs:
    return np.full(len(outputs["logits"]), np.nan)
  return np.asarray(outputs["reliability"], np.float64).mean(axis=1)


def clip_probabilities(predictor: predictor_lib.Predictor, video: str | os.PathLike,
                       skeleton_dir: str | os.PathLike, video_id: str, start: int, end: int) -> np.ndarray:
  """float (C,) class probabilities of frames start..end (inclusive) of a video."""
  return clip_prediction(predictor, video, skeleton_dir, video_id, start, end)[0]


def window_probabilities(predictor: predictor_lib.Predictor, video: str | os.PathLike,
                         skeleton_dir: str | os.PathLike, video_id: str, *, length: int, stride: int,
                         progress: bool = True) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
  """(window starts int64 (N,), class probabilities float32 (N, C), number of frames, bool (N,) windows classified
  without a usable joint) of one video; a window the
  converter skips (no person in any of its frames) has a row of NaN, unless the model classifies without pose
  (predictor.classifies_without_pose: such a window is classified from vision, its joints all missed)."""
  num_frames = records.count_video_frames(video)
  starts = online.window_starts(num_frames, length, stride)
  made = np.zeros(len(starts), bool)
  without_pose = np.zeros(len(starts), bool)
  decoder = predictor.decoder()

  def examples():
    for i, record in records.window_records(video, skeleton_dir, video_id, starts, min(length, num_frames),
                                            predictor.convert_options(),
                                            no_pose_ok=predictor.classifies_without_pose):
      if record is not None:
        made[i] = True
        yield decoder.decode(example_codec.encode(record), None)

  out = predictor.outputs(examples(), progress=progress)  # consumes every window: `made` is complete after it
  probs = np.full((len(starts), len(predictor.class_names)), np.nan, np.float32)
  probs[made] = metrics.softmax(out["logits"])
  without_pose[made] = clip_reliability(out) == 0
  return starts, probs, num_frames, without_pose


def cached_window_probabilities(predictor: predictor_lib.Predictor, video: str | os.PathLike,
                                skeleton_dir: str | os.PathLike, video_id: str, cache_dir: str | os.PathLike, *,
                                length: int, stride: int, progress: bool = True
                                ) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
  """window_probabilities, kept in <cache_dir>/<video_id>.npz for this run, checkpoint, video and windows (so that
  another threshold is quick to try)."""
  cache = pathlib.Path(cache_dir) / f"{video_id}.npz"
  key = json.dumps({"step": predictor.step, "window": length, "stride": stride, "workdir": str(predictor.workdir),
                    "video": str(pathlib.Path(video).absolute()),
                    "without_pose": predictor.classifies_without_pose})
  if cache.is_file():
    with np.load(cache) as saved:
      if str(saved["key"]) == key and "without_pose" in saved:
        return saved["starts"], saved["probs"], int(saved["num_frames"]), saved["without_pose"]
  starts, probs, num_frames, without_pose = window_probabilities(predictor, video, skeleton_dir, video_id,
                                                                 length=length, stride=stride, progress=progress)
  cache.parent.mkdir(parents=True, exist_ok=True)
  np.savez(cache, starts=starts, probs=probs, num_frames=num_frames, key=key, without_pose=without_pose)
  return starts, probs, num_frames, without_pose


@dataclasses.dataclass
class OnlineVideo:
  """Online recognition of one video: its windows' starts (N,) and probabilities (N, C), frame count, segments, and
  which windows were classified without a usable joint (from vision alone; a `+robust` model only)."""
  video_id: str
  starts: np.ndarray
  probs: np.ndarray
  num_frames: int
  segments: list[online.Segment]
  without_pose: np.ndarray | None = None

  @property
  def classified_without_pose(self) -> int:
    """Windows with no usable joint that were classified from vision alone."""
    return 0 if self.without_pose is None else int(np.sum(self.without_pose))  # only classified windows are marked

  @property
  def unclassified(self) -> int:
    """Windows without a person in any frame (NaN probabilities)."""
    return int(np.isnan(self.probs).any(axis=1).sum())

  def frame_probabilities(self, settings: online.Settings) -> np.ndarray:
    """float (num_frames, C): the probabilities of the window that speaks for each frame (online.frame_windows)."""
    return self.probs[online.frame_windows(self.starts, settings.window, settings.stride, self.num_frames)]


def online_video(predictor: predictor_lib.Predictor, video: str | os.PathLike, skeleton_dir: str | os.PathLike,
                 video_id: str, settings: online.Settings, cache_dir: str | os.PathLike, *,
                 progress: bool = True) -> OnlineVideo:
  """A video's windows (cached in cache_dir) and its segments under `settings`."""
  starts, probs, num_frames, without_pose = cached_window_probabilities(
      predictor, video, skeleton_dir, video_id, cache_dir, length=settings.window, stride=settings.stride,
      progress=progress)
  return OnlineVideo(video_id, starts, probs, num_frames, settings.segments(starts, probs, num_frames), without_pose)
