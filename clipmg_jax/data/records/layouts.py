"""The raw dataset layouts the converter reads: one Layout per layout name in LAYOUTS, the one place that tells
them apart.

A Layout says how a dataset in that layout is planned (which clips go to which split, which are skipped before any
heavy reading, and what the manifest records about the source), which raw files a clip is read from (a resumed
conversion redoes the shards whose raw files changed) and how a clip's keypoints are read. A new layout is a new
entry of LAYOUTS with its three functions.

  imigue: the public release, <root>/Label/labels_20200831.csv + <root>/Data/skeleton/raw/<video>/<video>_<frame:012d>
          _keypoints.json, or the flat layout of the synthetic dataset, <root>/labels.csv + <root>/skeleton/<video>/...
          (imigue.find_raw_layout; the one found is logged and recorded in the manifest), both with
          <root>/videos/<video>.mp4 and optional split.json / classes.json. Labels, skeleton and video folders can
          also be given apart (e.g. the shared real sample's labels_20200831.csv and skeleton_sample/).
  miga:   <root>/<split>/<sample>/<sample>_light_hand.csv + <sample>_label.csv (skeleton-only; see miga.py).

Clips are skipped (listed in the manifest with the reason, never dropped silently) when their subject is in no split,
their video has no skeleton folder, none of their frames has a skeleton file, no frame's file holds a person,
their video file is missing (unless skeleton-only), or reading them fails (the error message, naming the file, is
the reason). Clips with some skeleton frames missing are kept (those frames get confidence 0) and counted in the
skeleton report, as are frames with NaN/Inf/null keypoint values (those joints are zeroed: nonfinite_frames,
clips_with_nonfinite_keypoints).
"""

import dataclasses
import logging
import os
import pathlib
from typing import Callable, Sequence

import numpy as np

from clipmg_jax.data.raw import imigue
from clipmg_jax.data.raw import miga
from clipmg_jax.data.raw import openpose


@dataclasses.dataclass(frozen=True)
class ClipTask:
  """One clip to convert: identity, split, and where its raw data lives."""
  split: str
  video_id: str
  label_id: int
  clip_id: int
  label: int
  subject: int
  start_frame: int
  end_frame: int
  layout: str  # A name in LAYOUTS.
  skeleton: str  # imigue: skeleton root folder; miga: the sample folder.
  video: str = ""  # imigue: the video file ("" when skeleton-only).

  @property
  def num_frames(self) -> int:
    return self.end_frame - self.start_frame + 1


# Kinds of skipped clips (the manifest counts them; each entry also has a detailed reason).
SKIP_NO_SPLIT = "subject_in_no_split"
SKIP_NO_SKELETON_FOLDER = "no_skeleton_folder"
SKIP_NO_SKELETON_FRAMES = "no_skeleton_frames"
SKIP_NO_VIDEO = "no_video_file"
SKIP_NO_LABELS = "no_label_file"
SKIP_READ_ERROR = "read_error"
SKIP_NO_PERSON = "no_person_in_any_frame"


class SkipClip(Exception):
  """A clip that cannot be converted: `kind` (one of SKIP_*) and the message as the detailed reason."""

  def __init__(self, kind: str, reason: str):
    super().__init__(reason)
    self.kind = kind


def skip_entry(task: ClipTask, kind: str, reason: str) -> dict:
  """The manifest's entry for a clip skipped while converting its shard."""
  return dict(split=task.split, video_id=task.video_id, label_id=task.label_id, clip_id=task.clip_id, kind=kind,
              reason=reason)


@dataclasses.dataclass(frozen=True)
class Plan:
  """A planned dataset: the clips of each split, the clips skipped before reading, and what the manifest records."""
  tasks: dict[str, list[ClipTask]]
  skipped: list[dict]
  classes: Sequence[imigue.ClassInfo]
  source: dict  # Where the raw data was found (the manifest adds the layout name).
  split: dict | None  # Subjects per split as the dataset's split.json chose them; None when the layout has none.
  skeleton_only: bool  # Whether the records hold no frames (asked for, no videos folder, or a layout without video).


@dataclasses.dataclass(frozen=True)
class Layout:
  """What the converter does differently per layout (see the module docstring)."""
  # (root or None, *, labels_csv, skeleton_dir, videos_dir, skeleton_only) -> Plan; the paths may be None.
  plan: Callable[..., Plan]
  # ClipTask -> the raw files it is read from, in a fixed order.
  raw_files: Callable[[ClipTask], list[str]]
  # (ClipTask, cache dict kept across the clips of a shard) -> (keypoints float32 (T, 18, 3) in source-video pixels,
  # skeleton report counts); raises SkipClip.
  read_keypoints: Callable[[ClipTask, dict], tuple[np.ndarray, dict]]


# ---------------------------------------------------------------------------------------------------------------
# iMiGUE: a labels table and per-frame OpenPose files, optionally videos.


def _frames_on_disk(folder: pathlib.Path, video_id: str) -> np.ndarray:
  """Sorted 0-based frame numbers that have an OpenPose file in `folder`."""
  prefix, suffix = f"{video_id}_", "_keypoints.json"
  numbers = []
  for name in os.listdir(folder):
    if name.startswith(prefix) and name.endswith(suffix):
      try:
        numbers.append(int(name[len(prefix):-len(suffix)]))
      except ValueError:
        continue
  return np.array(sorted(numbers), np.int64)


def plan_imigue(labels_csv: str | os.PathLike, skeleton_dir: str | os.PathLike, videos_dir: str | os.PathLike | None,
                splits: dict[str, Sequence[int]], *, skeleton_only: bool) -> tuple[dict[str, list[ClipTask]], list]:
  """Reads the labels table and assigns clips to splits. Returns ({split: [ClipTask]}, [skipped entries])."""
  clips = imigue.read_labels(labels_csv)
  subject_split = {}
  for split, subjects in splits.items():
    for s in subjects:
      subject_split[int(s)] = split
  skeleton_dir = pathlib.Path(skeleton_dir)
  frames_cache: dict[str, np.ndarray | None] = {}
  tasks: dict[str, list[ClipTask]] = {split: [] for split in splits}
  skipped = []
  for clip in clips:
    ids = dict(video_id=clip.video_id, label_id=clip.label_id, clip_id=clip.clip_id)
    split = subject_split.get(clip.subject)
    if split is None:
      skipped.append(dict(ids, split=None, kind=SKIP_NO_SPLIT, reason=f"subject {clip.subject} is in no split"))
      continue
    ids["split"] = split
    if clip.video_id not in frames_cache:
      folder = skeleton_dir / clip.video_id
      frames_cache[clip.video_id] = _frames_on_disk(folder, clip.video_id) if folder.is_dir() else None
    on_disk = frames_cache[clip.video_id]
    if on_disk is None:
      skipped.append(dict(ids, kind=SKIP_NO_SKELETON_FOLDER, reason=f"no folder {skeleton_dir / clip.video_id}"))
      continue
    first = np.searchsorted(on_disk, clip.start_frame)
    if first >= len(on_disk) or on_disk[first] > clip.end_frame:
      skipped.append(dict(ids, kind=SKIP_NO_SKELETON_FRAMES,
                          reason=f"no skeleton file for frames {clip.start_frame}..{clip.end_frame}"))
      continue
    video = ""
    if not skeleton_only:
      path = pathlib.Path(videos_dir) / f"{clip.video_id}.mp4"
      if not path.is_file():
        skipped.append(dict(ids, kind=SKIP_NO_VIDEO, reason=f"no video file {path}"))
        continue
      video = str(path)
    tasks[split].append(ClipTask(split=split, video_id=clip.video_id, label_id=clip.label_id, clip_id=clip.clip_id,
                                 label=clip.label, subject=clip.subject, start_frame=clip.start_frame,
                                 end_frame=clip.end_frame, layout="imigue", skeleton=str(skeleton_dir), video=video))
  return tasks, skipped


def _imigue_paths(root: pathlib.Path | None, labels_csv, skeleton_dir) -> tuple[pathlib.Path, pathlib.Path, str]:
  """(labels table, skeleton root, layout name): the flags when both are given, else the layout found under root
  (imigue.find_raw_layout) with either flag replacing its part."""
  if labels_csv and skeleton_dir:
    layout = "given by --labels_csv and --skeleton_dir"
    labels_csv, skeleton_dir = pathlib.Path(labels_csv), pathlib.Path(skeleton_dir)
  else:
    if root is None:
      raise ValueError("no raw_root: pass both labels_csv and skeleton_dir")
    found = imigue.find_raw_layout(root)
    layout = found.name
    labels_csv = pathlib.Path(labels_csv) if labels_csv else found.labels_csv
    skeleton_dir = pathlib.Path(skeleton_dir) if skeleton_dir else found.skeleton_dir
  logging.info("raw layout: %s (labels %s, skeleton %s)", layout, labels_csv, skeleton_dir)
  if not skeleton_dir.is_dir():
    raise FileNotFoundError(f"skeleton folder {skeleton_dir} does not exist (raw layout: {layout})")
  return labels_csv, skeleton_dir, layout


def _plan_imigue_dataset(root: pathlib.Path | None, *, labels_csv, skeleton_dir, videos_dir,
                         skeleton_only: bool) -> Plan:
  """The labels table's clips under the dataset's subject split (split.json, else iMiGUE's), skeleton-only when
  there is no videos folder."""
  labels_csv, skeleton_dir, raw_layout = _imigue_paths(root, labels_csv, skeleton_dir)
  videos_dir = pathlib.Path(videos_dir) if videos_dir else (root / "videos" if root is not None else None)
  if not skeleton_only and (videos_dir is None or not videos_dir.is_dir()):
    logging.warning("no videos folder %s: converting skeleton-only", videos_dir)
    skeleton_only = True
  config_root = root if root is not None else labels_csv.parent
  train, test = imigue.load_split(config_root)
  validation = imigue.load_validation_subjects(config_root)
  split = {"train_subjects": sorted(train), "test_subjects": sorted(test)}
  if validation is not None:
    split["validation_subjects"] = list(validation)
  classes = imigue.load_classes(config_root)
  tasks, skipped = plan_imigue(labels_csv, skeleton_dir, videos_dir, {"train": train, "test": test},
                               skeleton_only=skeleton_only)
  source = {"raw_layout": raw_layout, "labels_csv": str(labels_csv), "skeleton_dir": str(skeleton_dir),
            "videos_dir": None if skeleton_only else str(videos_dir)}
  return Plan(tasks=tasks, skipped=skipped, classes=classes, source=source, split=split, skeleton_only=skeleton_only)


def _imigue_raw_files(task: ClipTask) -> list[str]:
  """The clip's OpenPose file of every frame (present or not), then its video."""
  folder = os.path.join(task.skeleton, task.video_id)
  files = [os.path.join(folder, openpose.frame_filename(task.video_id, frame))
           for frame in range(task.start_frame, task.end_frame + 1)]
  return files + ([task.video] if task.video else [])


def _read_imigue_keypoints(task: ClipTask, cache: dict) -> tuple[np.ndarray, dict]:
  """The clip's OpenPose files; SkipClip when none exists or none holds a person."""
  del cache  # Every clip reads its own frames' files.
  keypoints, report = imigue.read_openpose_clip(task.skeleton, task.video_id, task.start_frame, task.end_frame)
  counts = {"missing_frames": len(report.missing_frames), "no_person_frames": len(report.no_person_frames),
            "multi_person_frames": len(report.multi_person_frames),
            "nonfinite_frames": len(report.nonfinite_frames)}
  if counts["missing_frames"] == task.num_frames:
    raise SkipClip(SKIP_NO_SKELETON_FRAMES, f"no skeleton file for frames {task.start_frame}..{task.end_frame}")
  if counts["missing_frames"] + counts["no_person_frames"] == task.num_frames:
    raise SkipClip(SKIP_NO_PERSON, f"no person in any skeleton file of frames {task.start_frame}.."
                   f"{task.end_frame} ({pathlib.Path(task.skeleton) / task.video_id})")
  return keypoints, counts


# ---------------------------------------------------------------------------------------------------------------
# MiGA: one keypoint table and one segment table per sample, no video.


def plan_miga(root: str | os.PathLike) -> tuple[dict[str, list[ClipTask]], list]:
  """MiGA layout: every subfolder of `root` is a split holding sample folders. Samples are numbered by sorted name
  (video_id = the name if it is an integer, else its 1-based position); subject is unknown (-1); clip label_id is
  the 1-based row of the segment in <sample>_label.csv."""
  root = pathlib.Path(root)
  tasks, skipped = {}, []
  split_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
  for split_dir in split_dirs:
    samples = sorted(p for p in split_dir.iterdir() if (p / f"{p.name}_light_hand.csv").is_file())
    if not samples:
      continue
    tasks[split_dir.name] = []
    for position, sample in enumerate(samples, 1):
      video_id = sample.name if sample.name.isdigit() else str(position)
      label_path = sample / f"{sample.name}_label.csv"
      if not label_path.is_file():
        skipped.append(dict(split=split_dir.name, video_id=video_id, label_id=None, clip_id=None,
                            kind=SKIP_NO_LABELS, reason=f"no label file {label_path}"))
        continue
      for label_id, segment in enumerate(miga.read_miga_labels(label_path), 1):
        tasks[split_dir.name].append(ClipTask(
            split=split_dir.name, video_id=video_id, label_id=label_id, clip_id=imigue.clip_id(video_id, label_id),
            label=segment.label, subject=-1, start_frame=segment.start, end_frame=segment.end, layout="miga",
            skeleton=str(sample)))
  if not tasks:
    raise FileNotFoundError(f"{root}: no <split>/<sample>/<sample>_light_hand.csv found (MiGA layout)")
  return tasks, skipped


def _plan_miga_dataset(root: pathlib.Path | None, *, labels_csv, skeleton_dir, videos_dir,
                       skeleton_only: bool) -> Plan:
  """Every sample's segments, skeleton-only, with iMiGUE's classes and no subject split."""
  del labels_csv, skeleton_dir, videos_dir, skeleton_only  # The layout fixes them.
  tasks, skipped = plan_miga(root)
  return Plan(tasks=tasks, skipped=skipped, classes=imigue.CLASSES, source={"root": str(root)}, split=None,
              skeleton_only=True)


def _miga_raw_files(task: ClipTask) -> list[str]:
  """The sample's keypoint and segment tables."""
  name = os.path.basename(task.skeleton)
  return [os.path.join(task.skeleton, name + suffix) for suffix in ("_light_hand.csv", "_label.csv")]


def _read_miga_keypoints(task: ClipTask, cache: dict) -> tuple[np.ndarray, dict]:
  """The clip's rows of its sample's keypoint table; `cache` keeps the last sample read (a shard's clips of one
  sample are contiguous)."""
  if task.skeleton not in cache:
    cache.clear()
    frames, keypoints, _ = miga.read_miga_sample(task.skeleton)
    cache[task.skeleton] = (frames, keypoints)
  frames, keypoints = cache[task.skeleton]
  segment = miga.MigaSegment(label=task.label, start=task.start_frame, end=task.end_frame)
  clip, missing = miga.segment_keypoints(frames, keypoints, segment)
  if missing == task.num_frames:
    raise SkipClip(SKIP_NO_SKELETON_FRAMES, f"no skeleton row for frames {task.start_frame}..{task.end_frame}")
  return clip, {"missing_frames": missing, "no_person_frames": 0, "multi_person_frames": 0}


# ---------------------------------------------------------------------------------------------------------------

LAYOUTS = {
    "imigue": Layout(plan=_plan_imigue_dataset, raw_files=_imigue_raw_files, read_keypoints=_read_imigue_keypoints),
    "miga": Layout(plan=_plan_miga_dataset, raw_files=_miga_raw_files, read_keypoints=_read_miga_keypoints),
}


def get(name: str) -> Layout:
  """The Layout called `name`; ValueError naming the known ones otherwise."""
  if name not in LAYOUTS:
    raise ValueError(f"unknown layout {name!r}: expected {' or '.join(map(repr, LAYOUTS))}")
  return LAYOUTS[name]
