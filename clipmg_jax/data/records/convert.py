"""Raw dataset -> sharded TFRecord files of clip records (example_codec), offset indexes, and manifest.json.

Layouts read:
  imigue: the public release, <root>/Label/labels_20200831.csv + <root>/Data/skeleton/raw/<video>/<video>_<frame:012d>
          _keypoints.json, or the flat layout of the synthetic dataset, <root>/labels.csv + <root>/skeleton/<video>/...
          (imigue.find_raw_layout; the one found is logged and recorded in the manifest), both with
          <root>/videos/<video>.mp4 and optional split.json / classes.json. Labels, skeleton and video folders can
          also be given apart (e.g. the shared real sample's labels_20200831.csv and skeleton_sample/).
  miga:   <root>/<split>/<sample>/<sample>_light_hand.csv + <sample>_label.csv (skeleton-only; see miga.py).

Output, in out_dir:
  <split>-<i:05d>-of-<n:05d>.tfrecord   clip records of one split (clips in label-file order, cut in chunks)
  <split>-....tfrecord.index            offset index of the shard (tfrecord.py)
  manifest.json                         counts per split and class, shards (with each record's subject and
                                        label), the subject split, every skipped clip with its reason, skeleton
                                        reading report, settings
  .progress/<shard>.json                completion record of each shard (what makes a restart resume)

Each shard is one task; tasks run in `num_workers` processes (0 = in this process) under a progress bar. A shard is
written to a temporary name and renamed when complete, then its completion record is written; a restarted
conversion with the same settings skips every shard that has one and whose raw files (sizes and modification times
of its skeleton files and videos) are unchanged, so a killed conversion only redoes the shards that were in flight,
and one re-run after repairing raw files redoes the shards made from them; it logs how many it reused and why the
others are converted.

Clips are skipped (listed in the manifest with the reason, never dropped silently) when their subject is in no split,
their video has no skeleton folder, none of their frames has a skeleton file, no frame's file holds a person,
their video file is missing (unless skeleton-only), or reading them fails (the error message, naming the file, is
the reason). Clips with some skeleton frames missing are kept (those frames get confidence 0) and counted in the
skeleton report, as are frames with NaN/Inf/null keypoint values (those joints are zeroed: nonfinite_frames,
clips_with_nonfinite_keypoints).

Frames: min(T, max_stored_frames) frames at the centres of equal segments of the clip (sampling.presample_indices)
are resized so that their short side is `short_side` (never enlarged) and stored as JPEG. Keypoints are scaled to
the stored frame size. Skeleton-only records store no frames; their frame size is what the video's frames would have
had (`skeleton_frame_size`, iMiGUE's 1280x720 by default), so keypoints are in the same units either way.
"""

import collections
import dataclasses
import hashlib
import io
import json
import logging
import multiprocessing
import os
import pathlib
from typing import Sequence

import numpy as np
from PIL import Image
import tqdm

from clipmg_jax.data import keypoints as keypoints_lib
from clipmg_jax.data import sampling
from clipmg_jax.data.raw import imigue
from clipmg_jax.data.raw import miga
from clipmg_jax.data.raw import openpose
from clipmg_jax.data.raw import video as video_io
from clipmg_jax.data.records import example_codec
from clipmg_jax.data.records import manifest as manifest_lib
from clipmg_jax.data.records import shard_writer

PROGRESS_DIR = ".progress"
MANIFEST_VERSION = 2  # 2: shard entries list their records' subjects and labels; "split"


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
  layout: str  # "imigue" | "miga"
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


def _skip_entry(task: ClipTask, kind: str, reason: str) -> dict:
  return dict(split=task.split, video_id=task.video_id, label_id=task.label_id, clip_id=task.clip_id, kind=kind,
              reason=reason)


# ---------------------------------------------------------------------------------------------------------------
# Planning: which clips go to which split, and which are skipped before any heavy reading.


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


# ---------------------------------------------------------------------------------------------------------------
# Making one record.


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


def _read_keypoints(task: ClipTask, cache: dict) -> tuple[np.ndarray, dict]:
  """(keypoints float32 (T, 18, 3) in source-video pixels, report counts) of one clip. `cache` keeps the last MiGA
  sample read (its clips are contiguous within a shard)."""
  if task.layout == "imigue":
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
  if task.layout == "miga":
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
  raise ValueError(f"unknown layout {task.layout!r}")


def make_record(task: ClipTask, options: ConvertOptions, cache: dict | None = None
                ) -> tuple[example_codec.ClipRecord, dict]:
  """Reads one clip's raw data and builds its record; `cache` (optional) lets consecutive clips share raw reads.

  Returns (record, skeleton report counts). Raises SkipClip (or any reader error) to skip the clip.
  """
  keypoints, counts = _read_keypoints(task, {} if cache is None else cache)
  frames, indices = [], np.zeros((0,), np.int64)
  if options.skeleton_only or not task.video:
    src_hw = tuple(options.skeleton_frame_size)
    dst_hw = stored_size(*src_hw, options.short_side)
  else:
    indices = sampling.presample_indices(task.num_frames, options.max_stored_frames)
    raw = video_io.read_video_frames(task.video, task.start_frame + indices)
    src_hw = raw.shape[1:3]
    dst_hw = stored_size(*src_hw, options.short_side)
    frames = encode_frames(raw, dst_hw, options.jpeg_quality)
  record = example_codec.ClipRecord(
      video_id=task.video_id, clip_id=task.clip_id, label_id=task.label_id, label=task.label, subject=task.subject,
      start_frame=task.start_frame, frame_height=dst_hw[0], frame_width=dst_hw[1], video_height=src_hw[0],
      video_width=src_hw[1], keypoints=scale_keypoints(keypoints, src_hw, dst_hw), frames=frames,
      frame_indices=indices)
  return record, counts


# ---------------------------------------------------------------------------------------------------------------
# Shards.


@dataclasses.dataclass(frozen=True)
class ShardTask:
  out_dir: str
  split: str
  name: str
  clips: tuple[ClipTask, ...]
  options: ConvertOptions

  def fingerprint(self) -> str:
    payload = json.dumps([dataclasses.asdict(self.options), [dataclasses.asdict(c) for c in self.clips]],
                         sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]

  def inputs_fingerprint(self) -> str:
    """A hash of the size and modification time of every raw file the shard's clips are read from (their
    skeleton files, frame by frame, and videos): a repaired, replaced, added or removed file changes it."""
    digest = hashlib.sha256()
    for path in _raw_files(self.clips):
      try:
        stat = os.stat(path)
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
      except OSError:
        digest.update(f"{path}\0absent\n".encode())
    return digest.hexdigest()[:16]


def _raw_files(clips) -> list[str]:
  files = {}
  for clip in clips:
    if clip.layout == "imigue":
      folder = os.path.join(clip.skeleton, clip.video_id)
      for frame in range(clip.start_frame, clip.end_frame + 1):
        files[os.path.join(folder, openpose.frame_filename(clip.video_id, frame))] = None
      if clip.video:
        files[clip.video] = None
    else:
      name = os.path.basename(clip.skeleton)
      for suffix in ("_light_hand.csv", "_label.csv"):
        files[os.path.join(clip.skeleton, name + suffix)] = None
  return list(files)


def _progress_path(out_dir, name) -> pathlib.Path:
  return pathlib.Path(out_dir) / PROGRESS_DIR / f"{name}.json"


def load_done(task: ShardTask) -> dict | None:
  """The completion record of a shard if it is complete and was made from the same clips, options and raw files."""
  return _load_done(task)[0]


# Why a shard is (re)converted, as reported at the start of a conversion.
REBUILD_NEW = "not converted yet"
REBUILD_SETTINGS = "options or clip list changed"
REBUILD_INPUTS = "raw files changed"


def _load_done(task: ShardTask) -> tuple[dict | None, str | None]:
  """(completion record, None) when the shard can be reused, else (None, why it must be converted: REBUILD_*)."""
  path = _progress_path(task.out_dir, task.name)
  shard = pathlib.Path(task.out_dir) / task.name
  if not (path.is_file() and shard.is_file()):
    return None, REBUILD_NEW
  try:
    with open(path) as f:
      done = json.load(f)
  except (OSError, json.JSONDecodeError):
    return None, REBUILD_NEW
  if done.get("fingerprint") != task.fingerprint():
    return None, REBUILD_SETTINGS
  if done.get("inputs") != task.inputs_fingerprint():
    return None, REBUILD_INPUTS
  return done, None


def convert_shard(task: ShardTask) -> dict:
  """Converts the clips of one shard and writes it; returns (and records) its summary."""
  inputs = task.inputs_fingerprint()  # before reading: a file changed meanwhile makes the next run redo the shard
  records, skipped = [], []
  per_class = collections.Counter()
  report = collections.Counter()
  cache = {}
  for clip in task.clips:
    try:
      record, counts = make_record(clip, task.options, cache)
    except SkipClip as e:
      skipped.append(_skip_entry(clip, e.kind, str(e)))
      continue
    except (OSError, ValueError, IndexError, KeyError) as e:  # Reader errors name the file; keep them as reasons.
      logging.warning("skipping clip %d: %s", clip.clip_id, e)
      skipped.append(_skip_entry(clip, SKIP_READ_ERROR, f"{type(e).__name__}: {e}"))
      continue
    records.append(example_codec.encode(record))
    per_class[clip.label] += 1
    report.update(counts)
    report["clips_with_missing_frames"] += counts["missing_frames"] > 0
    report["clips_with_nonfinite_keypoints"] += counts.get("nonfinite_frames", 0) > 0
  num = shard_writer.write_shard(pathlib.Path(task.out_dir) / task.name, records)
  summary = {"name": task.name, "split": task.split, "num_records": num,
             "per_class": {str(k): v for k, v in sorted(per_class.items())}, "skipped": skipped,
             "skeleton_report": dict(report), "fingerprint": task.fingerprint(), "inputs": inputs}
  shard_writer.write_json_atomic(_progress_path(task.out_dir, task.name), summary)
  return summary


def _cleanup_stale(out_dir: pathlib.Path):
  """Removes temporary files a killed conversion left behind."""
  for path in out_dir.glob("*.tmp*"):
    path.unlink()
  for path in (out_dir / PROGRESS_DIR).glob("*.tmp*"):
    path.unlink()


def plan_shards(tasks: dict[str, list[ClipTask]], out_dir, options: ConvertOptions) -> list[ShardTask]:
  shards = []
  for split, clips in tasks.items():
    count = max(1, -(-len(clips) // options.clips_per_shard))
    for s in range(count):
      chunk = tuple(clips[s * options.clips_per_shard:(s + 1) * options.clips_per_shard])
      shards.append(ShardTask(out_dir=str(out_dir), split=split, name=shard_writer.shard_name(split, s, count),
                              clips=chunk, options=options))
  return shards


def convert(raw_root: str | os.PathLike | None, out_dir: str | os.PathLike, *, layout: str = "imigue",
            labels_csv: str | os.PathLike | None = None, skeleton_dir: str | os.PathLike | None = None,
            videos_dir: str | os.PathLike | None = None, options: ConvertOptions = ConvertOptions(),
            num_workers: int = 0, progress: bool = True) -> dict:
  """Converts a raw dataset to shards in `out_dir` (see the module docstring) and returns the manifest.

  Args:
    raw_root: dataset root. imigue layout: the public release (Label/labels_20200831.csv, Data/skeleton/raw/) or
      the flat layout (labels.csv, skeleton/), recognised by imigue.find_raw_layout and logged, plus videos/ and
      optionally split.json and classes.json; miga layout: holds <split>/<sample>/ folders.
    out_dir: output folder (created). Re-running with the same arguments resumes; finished shards are kept.
    layout: "imigue" or "miga".
    labels_csv, skeleton_dir, videos_dir: override the layout's labels table, skeleton root and <root>/videos.
    options: ConvertOptions. Without a videos folder (or with skeleton_only) records are skeleton-only.
    num_workers: processes converting shards in parallel (0 = in this process).
    progress: show a tqdm bar.
  """
  out_dir = pathlib.Path(out_dir)
  (out_dir / PROGRESS_DIR).mkdir(parents=True, exist_ok=True)
  _cleanup_stale(out_dir)
  root = pathlib.Path(raw_root) if raw_root is not None else None
  if layout == "imigue":
    labels_csv, skeleton_dir, raw_layout = _imigue_paths(root, labels_csv, skeleton_dir)
    videos_dir = pathlib.Path(videos_dir) if videos_dir else (root / "videos" if root is not None else None)
    if not options.skeleton_only and (videos_dir is None or not videos_dir.is_dir()):
      logging.warning("no videos folder %s: converting skeleton-only", videos_dir)
      options = dataclasses.replace(options, skeleton_only=True)
    config_root = root if root is not None else labels_csv.parent
    train, test = imigue.load_split(config_root)
    validation = imigue.load_validation_subjects(config_root)
    split = {"train_subjects": sorted(train), "test_subjects": sorted(test)}
    if validation is not None:
      split["validation_subjects"] = list(validation)
    classes = imigue.load_classes(config_root)
    tasks, skipped = plan_imigue(labels_csv, skeleton_dir, videos_dir, {"train": train, "test": test},
                                 skeleton_only=options.skeleton_only)
    source = {"layout": layout, "raw_layout": raw_layout, "labels_csv": str(labels_csv),
              "skeleton_dir": str(skeleton_dir), "videos_dir": None if options.skeleton_only else str(videos_dir)}
  elif layout == "miga":
    options = dataclasses.replace(options, skeleton_only=True)
    split = None
    classes = imigue.CLASSES
    tasks, skipped = plan_miga(root)
    source = {"layout": layout, "root": str(root)}
  else:
    raise ValueError(f"unknown layout {layout!r}: expected 'imigue' or 'miga'")

  shards = plan_shards(tasks, out_dir, options)
  summaries, todo, reasons = {}, [], collections.Counter()
  for shard in shards:
    done, reason = _load_done(shard)
    if done is not None:
      summaries[shard.name] = done
    else:
      todo.append(shard)
      reasons[reason] += 1
  message = (f"{len(summaries)} of {len(shards)} shards reused, {len(todo)} to convert"
             + (f" ({', '.join(f'{n} {why}' for why, n in reasons.most_common())})" if todo else ""))
  logging.info("%s", message)
  if progress and summaries:
    tqdm.tqdm.write(message)
  bar = tqdm.tqdm(total=len(shards), initial=len(summaries), desc="converting shards", unit="shard",
                  disable=not progress)
  if num_workers > 0 and len(todo) > 1:
    # spawn: the caller may hold threads (JAX, Grain) that make fork unsafe.
    with multiprocessing.get_context("spawn").Pool(min(num_workers, len(todo))) as pool:
      for summary in pool.imap_unordered(convert_shard, todo):
        summaries[summary["name"]] = summary
        bar.update(1)
  else:
    for shard in todo:
      summaries[shard.name] = convert_shard(shard)
      bar.update(1)
  bar.close()
  manifest = build_manifest(shards, summaries, skipped, classes, options, source, split)
  manifest_lib.write(out_dir, manifest)
  return manifest


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


def _record_columns(shard: ShardTask, summary: dict) -> dict[str, list[int]]:
  """Subject and label of each record of a shard, in record order: its clips minus the skipped ones."""
  skipped = {entry["clip_id"] for entry in summary["skipped"]}
  kept = [clip for clip in shard.clips if clip.clip_id not in skipped]
  if len(kept) != summary["num_records"]:
    raise ValueError(f"shard {shard.name}: {summary['num_records']} records but {len(kept)} clips not skipped")
  return {"subjects": [clip.subject for clip in kept], "labels": [clip.label for clip in kept]}


def build_manifest(shards: list[ShardTask], summaries: dict, skipped: list, classes, options: ConvertOptions,
                   source: dict, split: dict | None = None) -> dict:
  """The manifest.json document. Each shard entry lists its records' subjects and labels (the pipeline selects
  validation and training records by subject from them); `split` (subjects per split, and split.json's
  validation_subjects) is recorded as given."""
  num_classes = len(classes)
  splits = {}
  report = collections.Counter()
  all_skipped = list(skipped)
  for shard in shards:
    summary = summaries[shard.name]
    entry = splits.setdefault(shard.split, {"num_clips": 0, "per_class": [0] * num_classes, "shards": []})
    entry["num_clips"] += summary["num_records"]
    for label, count in summary["per_class"].items():
      entry["per_class"][int(label)] += count
    entry["shards"].append({"path": shard.name, "index": shard.name + ".index", "num_records": summary["num_records"],
                            **_record_columns(shard, summary)})
    report.update(summary["skeleton_report"])
    all_skipped.extend(summary["skipped"])
  kinds = collections.Counter(s["kind"] for s in all_skipped)
  return {
      "version": MANIFEST_VERSION,
      "source": source,
      "options": dataclasses.asdict(options),
      "classes": [c.name for c in classes],
      **({"split": split} if split is not None else {}),
      "splits": splits,
      "skeleton_report": dict(report),
      "num_skipped": len(all_skipped),
      "skipped_by_kind": dict(kinds.most_common()),
      "skipped": all_skipped,
  }
