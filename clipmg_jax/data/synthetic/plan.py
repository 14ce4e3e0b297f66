"""The dataset plan: sizes, subjects and their split, class counts, and which clip goes where in which video.

Everything is drawn from numpy generators seeded by (seed, purpose[, index]), so a video's content does not depend
on how many worker processes write the dataset or in which order.
"""

import dataclasses

import ml_collections
import numpy as np

from clipmg_jax.data.raw import imigue
from clipmg_jax.data.synthetic import render


@dataclasses.dataclass(frozen=True)
class SizeConfig:
  """Size knobs of a synthetic dataset.

  tail_power: class counts follow iMiGUE's counts raised to this power (1 = as long-tailed as iMiGUE, 0 = balanced).
  min_clips_per_class: floor on every class. cue_scale: size of the render-only cues that separate classes sharing a
  pose program (render.py); 1 draws them true to the frame's proportions, too small to survive the downscaling to
  ~112 px for training.
  """
  num_subjects: int = 10  # people, split train/test in iMiGUE's 37:35 proportion
  videos_per_subject: int = 2  # press conferences each
  num_clips: int = 320  # labelled clips in all (before the per-class minimum)
  width: int = 320  # frame size in pixels (even)
  height: int = 240
  fps: int = 25  # frames per second of videos and labels
  clip_frames: tuple = (16, 32, 64)  # (min, median, max) clip length in frames at 25 fps
  gap_frames: tuple = (6, 24)  # (min, max) idle frames before each clip, at 25 fps
  tail_power: float = 0.5
  min_clips_per_class: int = 2
  cue_scale: float = render.DEFAULT_CUE_SCALE


def size_overrides_config() -> ml_collections.ConfigDict:
  """A config block with every SizeConfig field, unset (None = the preset's value) and typed, so that each can be
  given on the command line (e.g. --config.data.synthetic.size.num_subjects=30)."""
  return ml_collections.ConfigDict({f.name: ml_collections.FieldReference(None, field_type=f.type)
                                    for f in dataclasses.fields(SizeConfig)})


def size_overrides(block) -> dict:
  """The fields set in a size_overrides_config() block (or a plain dict), for generate(..., **overrides)."""
  return {k: v for k, v in dict(block or {}).items() if v is not None}


PRESETS = {
    # Unit tests: a few seconds.
    "tiny": SizeConfig(num_subjects=4, videos_per_subject=1, num_clips=64, width=160, height=120,
                       clip_frames=(12, 20, 32), gap_frames=(4, 10), min_clips_per_class=2),
    # The default: every code path, well under a minute.
    "small": SizeConfig(),
    # The end-to-end demonstration: enough clips for a small model to learn the classes in minutes.
    "demo": SizeConfig(num_subjects=24, videos_per_subject=2, num_clips=1800, min_clips_per_class=8),
}


def rng_for(seed: int, *purpose: int) -> np.random.Generator:
  return np.random.default_rng(np.random.SeedSequence([seed, *purpose]))


# Purposes of the generators (first entry after the seed).
PLAN, SUBJECT, VIDEO = 0, 1, 2


def class_counts(size: SizeConfig) -> tuple[np.ndarray, np.ndarray]:
  """(train, test) clips per class (32,), shaped like iMiGUE's counts under `tail_power`.

  Each class keeps iMiGUE's test share (clipped to [0.2, 0.5]); a class absent from iMiGUE's test split (C19) stays
  absent from the synthetic one.
  """
  train = np.array(imigue.TRAIN_CLIPS_PER_CLASS, np.float64)
  test = np.array(imigue.TEST_CLIPS_PER_CLASS, np.float64)
  weights = (train + test) ** size.tail_power
  total = np.maximum(np.round(size.num_clips * weights / weights.sum()), size.min_clips_per_class).astype(int)
  share = np.where(test > 0, np.clip(test / (train + test), 0.2, 0.5), 0.0)
  n_test = np.minimum(np.round(total * share).astype(int), total - 1)
  return total - n_test, n_test


@dataclasses.dataclass(frozen=True)
class PlannedClip:
  label_id: int  # 1-based within the video.
  label: int  # 0-based class.
  start_frame: int  # 0-based, inclusive.
  end_frame: int


@dataclasses.dataclass(frozen=True)
class PlannedVideo:
  video_id: int
  subject_id: int
  win: bool
  num_frames: int
  clips: tuple


def plan_dataset(seed: int, size: SizeConfig):
  """(videos, train_subjects, test_subjects) for a dataset of `size`."""
  if size.num_subjects < 2:
    raise ValueError(f"num_subjects must be >= 2 for a cross-subject split, got {size.num_subjects}")
  if size.width % 2 or size.height % 2:
    raise ValueError(f"width and height must be even (H.264 yuv420p), got {size.width}x{size.height}")
  rng = rng_for(seed, PLAN)
  n_train = min(max(int(round(size.num_subjects * len(imigue.TRAIN_SUBJECTS) / imigue.NUM_SUBJECTS)), 1),
                size.num_subjects - 1)
  order = rng.permutation(np.arange(1, size.num_subjects + 1))
  train_subjects, test_subjects = sorted(order[:n_train].tolist()), sorted(order[n_train:].tolist())
  train_counts, test_counts = class_counts(size)
  frame_scale = size.fps / 25.0
  videos = []
  for subjects, counts in ((train_subjects, train_counts), (test_subjects, test_counts)):
    labels = np.repeat(np.arange(imigue.NUM_CLASSES), counts)
    rng.shuffle(labels)
    slots = [(s, v) for s in subjects for v in range(size.videos_per_subject)]
    # Uneven videos: each clip goes to a slot drawn with random weights (some conferences are longer).
    weights = rng.uniform(0.5, 1.5, len(slots))
    assignment = rng.choice(len(slots), size=len(labels), p=weights / weights.sum())
    for k, (subject, _) in enumerate(slots):
      video_labels = labels[assignment == k]
      if not len(video_labels):
        continue  # No conference without a clip.
      frame = 0
      clips = []
      for label_id, label in enumerate(video_labels, start=1):
        frame += int(round(rng.integers(size.gap_frames[0], size.gap_frames[1] + 1) * frame_scale))
        lo, median, hi = size.clip_frames
        length = int(np.clip(np.round(median * np.exp(rng.normal(0.0, 0.35))), lo, hi) * frame_scale)
        length = max(length, 2)
        clips.append(PlannedClip(label_id=label_id, label=int(label), start_frame=frame,
                                 end_frame=frame + length - 1))
        frame += length
      frame += int(round(rng.integers(size.gap_frames[0], size.gap_frames[1] + 1) * frame_scale))
      videos.append(dict(subject_id=int(subject), win=bool(rng.random() < 0.7), num_frames=frame,
                         clips=tuple(clips)))
  videos.sort(key=lambda v: v["subject_id"])
  planned = tuple(PlannedVideo(video_id=i, **v) for i, v in enumerate(videos, start=1))
  return planned, tuple(train_subjects), tuple(test_subjects)
