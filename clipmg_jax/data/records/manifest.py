"""manifest.json of a shards folder: the one place that builds, finds, reads and writes it.

The converter (convert.py) writes it last, so its presence means the conversion finished. Its keys are in
docs/data.md: "splits" (per split: num_clips, per_class, and the shard entries with each record's subject and
label), "classes", "skipped", "split" (the dataset's split.json choices), "source".
"""

import collections
import dataclasses
import json
import os
import pathlib

from clipmg_jax.data.records import shard_writer
from clipmg_jax.data.records import tfrecord

FILENAME = "manifest.json"
VERSION = 2  # 2: shard entries list their records' subjects and labels; "split"


class DataSetupError(ValueError):
  """The configured data cannot be used (missing or incomplete shards); the message names the path and the fix."""


def path(shards_dir: str | os.PathLike) -> pathlib.Path:
  return pathlib.Path(shards_dir) / FILENAME


def exists(shards_dir: str | os.PathLike | None) -> bool:
  """Whether `shards_dir` holds a finished conversion (a manifest.json)."""
  return bool(shards_dir) and path(shards_dir).is_file()


def read(shards_dir: str | os.PathLike) -> dict:
  """The manifest document; FileNotFoundError naming the path and how to make it."""
  file = path(shards_dir)
  if not file.is_file():
    raise FileNotFoundError(f"{file} not found: convert a dataset first (data_prep/convert.py) or point "
                            f"config.data.shards_dir at the folder holding {FILENAME}")
  with open(file) as f:
    return json.load(f)


def write(shards_dir: str | os.PathLike, document: dict) -> None:
  """Writes the manifest atomically (a reader sees the old one or the new one, never a partial file)."""
  shard_writer.write_json_atomic(path(shards_dir), document)


def _record_columns(shard, summary: dict) -> dict[str, list[int]]:
  """Subject and label of each record of a shard, in record order: its clips minus the skipped ones."""
  skipped = {entry["clip_id"] for entry in summary["skipped"]}
  kept = [clip for clip in shard.clips if clip.clip_id not in skipped]
  if len(kept) != summary["num_records"]:
    raise ValueError(f"shard {shard.name}: {summary['num_records']} records but {len(kept)} clips not skipped")
  return {"subjects": [clip.subject for clip in kept], "labels": [clip.label for clip in kept]}


def build(shards: list, summaries: dict, skipped: list, classes, options, source: dict, split: dict | None = None
          ) -> dict:
  """The manifest document of a conversion: its shards (convert.ShardTask: name, split, clips) with their
  completion summaries by name, the clips skipped before conversion, the classes, the options (a dataclass), the
  source and the subject split. Each shard entry lists its records' subjects and labels (the pipeline selects
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
      "version": VERSION,
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


def split_shards(document: dict, split: str, shards_dir: str | os.PathLike) -> list[dict]:
  """The shard entries of `split` ({"path", "num_records", "subjects", "labels"}); ValueError naming the manifest and
  the splits it has otherwise."""
  try:
    return document["splits"][split]["shards"]
  except KeyError:
    raise ValueError(f"{path(shards_dir)}: no split {split!r} (has {sorted(document.get('splits', {}))})") from None


CONVERT_AGAIN = "Re-run the conversion into this folder (it redoes only what is missing) or restore the file."


def check_splits(shards_dir: str | os.PathLike, document: dict, splits, remedy: str = CONVERT_AGAIN) -> None:
  """Checks, before any training step, that every shard and offset index of `splits` is there and holds the
  number of records the manifest lists; DataSetupError naming the split and file, and `remedy`, otherwise."""
  shards_dir = pathlib.Path(shards_dir)
  for split in dict.fromkeys(splits):
    if split not in document.get("splits", {}):
      raise DataSetupError(f"{path(shards_dir)} has no split {split!r} (has {sorted(document.get('splits', {}))})")
    if not document["splits"][split].get("num_clips", 1):
      # Found now, not when the split is first read (after training, for the test split).
      raise DataSetupError(f"split {split!r} of {shards_dir} has no clip: the conversion skipped all of them "
                           f"({path(shards_dir)} lists the skipped clips and why)")
    for entry in document["splits"][split].get("shards", []):
      shard = shards_dir / entry["path"]
      index = tfrecord.index_path(shard)
      problem = None
      if not shard.is_file():
        problem = f"shard {shard} is missing"
      elif not index.is_file():
        problem = f"offset index {index} is missing"
      else:
        try:
          count = len(tfrecord.read_index(index))
        except (OSError, ValueError) as e:
          problem = f"offset index {index} cannot be read: {e}"
        else:
          if "num_records" in entry and count != int(entry["num_records"]):
            problem = f"offset index {index} lists {count} records, the manifest {entry['num_records']}"
      if problem:
        raise DataSetupError(f"split {split!r} of {shards_dir}: {problem}. {remedy}")
