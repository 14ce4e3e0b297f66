"""The files `predict` writes: a clip's top classes (<video_id>.json), a video's segments (<video_id>.segments.json
and .csv), and a split's online scores (online_<split>.json and online_<split>.segments.csv)."""

import csv
import dataclasses
import json
import os
import pathlib
from typing import Sequence

import numpy as np

from clipmg_jax.prediction import online
from clipmg_jax.training import metrics

CSV_FIELDS = ["video_id", "start_frame", "end_frame", "class", "name", "score"]


def clip_result(video: str | os.PathLike, video_id: str, start: int, end: int, step: int, probs: np.ndarray,
                class_names: Sequence[str], top_k: int) -> dict:
  """The JSON document of one clip: where it is, the checkpoint step, the top_k classes and every probability."""
  return {"video": str(video), "video_id": video_id, "start_frame": start, "end_frame": end, "checkpoint_step": step,
          "top": metrics.top_classes(probs, class_names, top_k), "probabilities": [round(float(p), 6) for p in probs]}


def segment_rows(video_id: str, segments: Sequence[online.Segment], class_names: Sequence[str]) -> list[dict]:
  """One row per segment (the CSV_FIELDS), JSON-ready."""
  return [{"video_id": video_id, "start_frame": s.start, "end_frame": s.end, "class": s.label,
           "name": class_names[s.label], "score": round(s.score, 6)} for s in segments]


def write_segments_csv(path: pathlib.Path, rows: Sequence[dict]) -> None:
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)


def write_json(path: pathlib.Path, document: dict) -> pathlib.Path:
  path.write_text(json.dumps(document, indent=1))
  return path


def write_video_segments(out: pathlib.Path, video: str | os.PathLike, video_id: str, num_frames: int, step: int,
                         settings: online.Settings, rows: Sequence[dict], unclassified: int = 0,
                         without_pose: int = 0) -> pathlib.Path:
  """<out>/<video_id>.segments.json (with the settings, the count of windows without a person left unclassified and
  of those classified from vision alone by a `+robust` model) and .csv."""
  write_segments_csv(out / f"{video_id}.segments.csv", rows)
  return write_json(out / f"{video_id}.segments.json", {
      "video": str(video), "video_id": video_id, "num_frames": num_frames, "checkpoint_step": step,
      "settings": dataclasses.asdict(settings), "unclassified_windows": unclassified,
      "windows_classified_without_pose": without_pose, "segments": list(rows)})
