"""Raw dataset -> sharded TFRecord files of clip records (example_codec), offset indexes, and manifest.json.

The dataset is planned by its layout (layouts.py: iMiGUE's release or flat layout, MiGA), each clip's record is made
by clip_record.py, and the records are written here in shards, resumably, and listed in the manifest (manifest.py).

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
"""

import collections
import dataclasses
import hashlib
import json
import logging
import multiprocessing
import os
import pathlib

import tqdm

from clipmg_jax.data.records import clip_record
from clipmg_jax.data.records import example_codec
from clipmg_jax.data.records import layouts
from clipmg_jax.data.records import manifest as manifest_lib
from clipmg_jax.data.records import shard_writer

PROGRESS_DIR = ".progress"


class RawDataError(ValueError):
  """The raw dataset cannot be planned: a labels table, split.json or classes.json that cannot be read, or a
  folder that is not there (the message names it). Raised before any shard is written."""


@dataclasses.dataclass(frozen=True)
class ShardTask:
  """One shard to write: its clips (all of one split) and the options to make their records with."""
  out_dir: str
  split: str
  name: str
  clips: tuple[layouts.ClipTask, ...]
  options: clip_record.ConvertOptions

  def fingerprint(self) -> str:
    payload = json.dumps([dataclasses.asdict(self.options), [dataclasses.asdict(c) for c in self.clips]],
                         sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]

  def inputs_fingerprint(self) -> str:
    """A hash of the size and modification time of every raw file the shard's clips are read from (their
    skeleton files, frame by frame, and videos): a repaired, replaced, added or removed file changes it."""
    return inputs_digest(stat_lines(_raw_files(self.clips)))


def stat_lines(paths) -> list[str]:
  """One line per raw file (its path, size and modification time, or that it is absent), for inputs_digest."""
  lines = []
  for path in paths:
    try:
      stat = os.stat(path)
      lines.append(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n")
    except OSError:
      lines.append(f"{path}\0absent\n")
  return lines


def inputs_digest(lines) -> str:
  """ShardTask.inputs_fingerprint of the stat_lines of a shard's raw files, each file once, in order."""
  digest = hashlib.sha256()
  for line in dict.fromkeys(lines):
    digest.update(line.encode())
  return digest.hexdigest()[:16]


def _raw_files(clips) -> list[str]:
  """The raw files of all `clips`, each once, in the order their clips name them."""
  files = {}
  for clip in clips:
    files.update(dict.fromkeys(layouts.get(clip.layout).raw_files(clip)))
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


@dataclasses.dataclass(frozen=True)
class ClipResult:
  """One clip converted: its serialized record and skeleton report counts, or its manifest skip entry."""
  clip_id: int
  label: int
  record: bytes | None
  counts: dict
  skipped: dict | None = None


def convert_clip(clip: layouts.ClipTask, options: clip_record.ConvertOptions, cache: dict,
                 frames=clip_record.decode_frames) -> ClipResult:
  """Makes one clip's record (clip_record.make_record); a clip that cannot be made is skipped with its reason:
  layouts.SkipClip's kind, or read_error with the reader's message (which names the file)."""
  try:
    record, counts = clip_record.make_record(clip, options, cache, frames)
  except layouts.SkipClip as e:
    return ClipResult(clip.clip_id, clip.label, None, {}, layouts.skip_entry(clip, e.kind, str(e)))
  except (OSError, ValueError, IndexError, KeyError) as e:  # Reader errors name the file; keep them as reasons.
    logging.warning("skipping clip %d: %s", clip.clip_id, e)
    return ClipResult(clip.clip_id, clip.label, None, {},
                      layouts.skip_entry(clip, layouts.SKIP_READ_ERROR, f"{type(e).__name__}: {e}"))
  return ClipResult(clip.clip_id, clip.label, example_codec.encode(record), counts)


def finish_shard(task: ShardTask, results: list[ClipResult], inputs: str) -> dict:
  """Writes the shard of `results` (one per clip of the task, in its order) and its completion record, made from
  raw files whose inputs_digest was `inputs` before they were read; returns the summary."""
  if [r.clip_id for r in results] != [c.clip_id for c in task.clips]:
    raise ValueError(f"shard {task.name}: results for clips {[r.clip_id for r in results][:8]}..., expected its "
                     f"{len(task.clips)} clips in order {[c.clip_id for c in task.clips][:8]}...")
  records, skipped = [], []
  per_class = collections.Counter()
  report = collections.Counter()
  for result in results:
    if result.skipped is not None:
      skipped.append(result.skipped)
      continue
    records.append(result.record)
    per_class[result.label] += 1
    report.update(result.counts)
    report["clips_with_missing_frames"] += result.counts["missing_frames"] > 0
    report["clips_with_nonfinite_keypoints"] += result.counts.get("nonfinite_frames", 0) > 0
  num = shard_writer.write_shard(pathlib.Path(task.out_dir) / task.name, records)
  summary = {"name": task.name, "split": task.split, "num_records": num,
             "per_class": {str(k): v for k, v in sorted(per_class.items())}, "skipped": skipped,
             "skeleton_report": dict(report), "fingerprint": task.fingerprint(), "inputs": inputs}
  shard_writer.write_json_atomic(_progress_path(task.out_dir, task.name), summary)
  return summary


def convert_shard(task: ShardTask) -> dict:
  """Converts the clips of one shard and writes it; returns (and records) its summary. The stored frames of the
  shard's clips of one video are decoded together (clip_record.FramesByVideo)."""
  inputs = task.inputs_fingerprint()  # before reading: a file changed meanwhile makes the next run redo the shard
  cache = {}
  frames = clip_record.FramesByVideo(task.clips, task.options)
  return finish_shard(task, [convert_clip(clip, task.options, cache, frames) for clip in task.clips], inputs)


def _cleanup_stale(out_dir: pathlib.Path):
  """Removes temporary files a killed conversion left behind."""
  for path in out_dir.glob("*.tmp*"):
    path.unlink()
  for path in (out_dir / PROGRESS_DIR).glob("*.tmp*"):
    path.unlink()


def plan_shards(tasks: dict[str, list[layouts.ClipTask]], out_dir,
                options: clip_record.ConvertOptions) -> list[ShardTask]:
  """Cuts each split's clips, in order, into shards of `options.clips_per_shard` (an empty split gets one empty
  shard)."""
  shards = []
  for split, clips in tasks.items():
    count = max(1, -(-len(clips) // options.clips_per_shard))
    for s in range(count):
      chunk = tuple(clips[s * options.clips_per_shard:(s + 1) * options.clips_per_shard])
      shards.append(ShardTask(out_dir=str(out_dir), split=split, name=shard_writer.shard_name(split, s, count),
                              clips=chunk, options=options))
  return shards


def reusable(shards: list[ShardTask]) -> tuple[dict[str, dict], list[ShardTask], str]:
  """(summaries of the finished shards that can be reused by name, the shards to convert, a line saying how many of
  each and why), logged."""
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
  return summaries, todo, message


def _run_shards(shards: list[ShardTask], num_workers: int, progress: bool) -> dict[str, dict]:
  """Converts the shards that cannot be reused; returns every shard's summary by name."""
  summaries, todo, message = reusable(shards)
  if progress and summaries:
    tqdm.tqdm.write(message)
  # Closed on the way out of a failure too, so that its message starts on a line of its own.
  with tqdm.tqdm(total=len(shards), initial=len(summaries), desc="converting shards", unit="shard",
                 disable=not progress) as bar:
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
  return summaries


def convert(raw_root: str | os.PathLike | None, out_dir: str | os.PathLike, *, layout: str = "imigue",
            labels_csv: str | os.PathLike | None = None, skeleton_dir: str | os.PathLike | None = None,
            videos_dir: str | os.PathLike | None = None,
            options: clip_record.ConvertOptions = clip_record.ConvertOptions(), num_workers: int = 0,
            progress: bool = True) -> dict:
  """Converts a raw dataset to shards in `out_dir` (see the module docstring) and returns the manifest.

  Args:
    raw_root: dataset root. imigue layout: the public release (Label/labels_20200831.csv, Data/skeleton/raw/) or
      the flat layout (labels.csv, skeleton/), recognised by imigue.find_raw_layout and logged, plus videos/ and
      optionally split.json and classes.json; miga layout: holds <split>/<sample>/ folders.
    out_dir: output folder (created). Re-running with the same arguments resumes; finished shards are kept.
    layout: a name in layouts.LAYOUTS ("imigue" or "miga").
    labels_csv, skeleton_dir, videos_dir: override the layout's labels table, skeleton root and <root>/videos.
    options: clip_record.ConvertOptions. Without a videos folder (or with skeleton_only) records are skeleton-only.
    num_workers: processes converting shards in parallel (0 = in this process).
    progress: show a tqdm bar.

  Raises RawDataError (naming the file) when the dataset cannot be planned; clips that cannot be read are skipped
  and listed in the manifest instead.
  """
  planned = prepare(raw_root, out_dir, layout=layout, labels_csv=labels_csv, skeleton_dir=skeleton_dir,
                    videos_dir=videos_dir, options=options)
  summaries = _run_shards(planned.shards, num_workers, progress)
  return planned.finish(summaries)


@dataclasses.dataclass(frozen=True)
class Conversion:
  """A planned conversion into out_dir: the layout's plan, its shards, and the options (skeleton_only resolved)."""
  out_dir: pathlib.Path
  layout: str
  plan: layouts.Plan
  options: clip_record.ConvertOptions
  shards: list[ShardTask]

  def finish(self, summaries: dict[str, dict]) -> dict:
    """Writes and returns the manifest, from every shard's summary by name."""
    manifest = manifest_lib.build(self.shards, summaries, self.plan.skipped, self.plan.classes, self.options,
                                  {"layout": self.layout, **self.plan.source}, self.plan.split)
    manifest_lib.write(self.out_dir, manifest)
    return manifest


def prepare(raw_root, out_dir, *, layout: str = "imigue", labels_csv=None, skeleton_dir=None, videos_dir=None,
            options: clip_record.ConvertOptions = clip_record.ConvertOptions()) -> Conversion:
  """Plans a conversion (the arguments of convert) and readies out_dir: every runner converts these shards."""
  out_dir = pathlib.Path(out_dir)
  (out_dir / PROGRESS_DIR).mkdir(parents=True, exist_ok=True)
  _cleanup_stale(out_dir)
  root = pathlib.Path(raw_root) if raw_root is not None else None
  try:
    plan = layouts.get(layout).plan(root, labels_csv=labels_csv, skeleton_dir=skeleton_dir, videos_dir=videos_dir,
                                    skeleton_only=options.skeleton_only)
  except (FileNotFoundError, ValueError) as e:  # the readers' and layouts' errors name the file or folder
    raise RawDataError(str(e) if str(e) else repr(e)) from e
  options = dataclasses.replace(options, skeleton_only=plan.skeleton_only)
  return Conversion(out_dir=out_dir, layout=layout, plan=plan, options=options,
                    shards=plan_shards(plan.tasks, out_dir, options))
