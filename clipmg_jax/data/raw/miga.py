"""Readers of the MiGA challenge skeleton layout (iMiGUE skeletons as released for the MiGA micro-gesture challenge).

  <samples_root>/<sample>/<sample>_light_hand.csv   one row per frame: a leading column (the frame number), then
                                                    35 joints as x, y, c (105 numbers); the first 25 joints follow
                                                    BODY_25, the other 10 are hand points (not used here)
  <samples_root>/<sample>/<sample>_label.csv        one row per clip: gestureID,start,end (class ids 1..31, 99 = C32)

A header row, if present, is recognised (its first cell is not a number) and skipped. `start` and `end` are taken
as frame numbers of the leading column, both inclusive, like `start_frame`/`end_frame` of iMiGUE's labels table.
"""

import csv
import dataclasses
import os
import pathlib

import numpy as np

from clipmg_jax.data.raw import imigue
from clipmg_jax.data.raw import openpose
from clipmg_jax.data.raw import read_errors

NUM_MIGA_JOINTS = 35
_ROW_LEN = 1 + NUM_MIGA_JOINTS * 3


def _is_number(text: str) -> bool:
  try:
    float(text)
    return True
  except ValueError:
    return False


def _data_rows(path: pathlib.Path):
  """(line number, cells) of the non-empty rows after an optional header."""
  # utf-8-sig: a byte-order mark (spreadsheets write one) would make a numeric first row look like a header.
  with open(path, newline="", encoding="utf-8-sig") as f:
    for i, row in enumerate(csv.reader(f)):
      cells = [c.strip() for c in row]
      if not any(cells):
        continue
      if i == 0 and not _is_number(cells[0]):
        continue  # Header.
      yield i + 1, cells


@read_errors.names_file
def read_miga_skeleton(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
  """One `<sample>_light_hand.csv` -> (frame numbers int64 (T,), keypoints float32 (T, 18, 3) COCO-18 x, y, conf).

  Raises ValueError naming the file, line and column of a malformed value.
  """
  path = pathlib.Path(path)
  frames, joints = [], []
  for line, cells in _data_rows(path):
    if len(cells) != _ROW_LEN:
      raise ValueError(f"{path}:{line}: expected {_ROW_LEN} columns (frame + 35 joints x 3), got {len(cells)}")
    try:
      values = np.array([float(c) for c in cells], np.float64)
    except ValueError:
      column = next(j for j, c in enumerate(cells) if not _is_number(c))
      raise ValueError(f"{path}:{line}: column {column + 1} has {cells[column]!r}, expected a number") from None
    if values[0] != int(values[0]):
      raise ValueError(f"{path}:{line}: column 1 (frame number) has {cells[0]!r}, expected an integer")
    frames.append(int(values[0]))
    joints.append(openpose.pose_to_coco18(values[1:1 + 75], where=f"{path}:{line}"))
  if not frames:
    raise ValueError(f"{path}: no frame rows")
  frames = np.asarray(frames, np.int64)
  if np.any(np.diff(frames) <= 0):
    bad = int(np.argmax(np.diff(frames) <= 0)) + 1
    raise ValueError(f"{path}: frame numbers must increase, row {bad + 1} has {frames[bad]} after {frames[bad - 1]}")
  return frames, np.stack(joints).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class MigaSegment:
  """One labelled clip of a MiGA sample: 0-based class index and inclusive frame numbers."""
  label: int
  start: int
  end: int


@read_errors.names_file
def read_miga_labels(path: str | os.PathLike) -> list[MigaSegment]:
  """One `<sample>_label.csv` (gestureID,start,end) -> segments in file order."""
  path = pathlib.Path(path)
  segments = []
  for line, cells in _data_rows(path):
    if len(cells) < 3:
      raise ValueError(f"{path}:{line}: expected gestureID,start,end, got {cells}")
    values = []
    for column, cell in zip(("gestureID", "start", "end"), cells[:3]):
      try:
        values.append(int(float(cell)))
      except ValueError:
        raise ValueError(f"{path}:{line}: column {column!r} has {cell!r}, expected an integer") from None
    try:
      label = imigue.class_index(values[0])
    except ValueError as e:
      raise ValueError(f"{path}:{line}: {e}") from None
    if values[2] < values[1]:
      raise ValueError(f"{path}:{line}: end {values[2]} is before start {values[1]}")
    segments.append(MigaSegment(label=label, start=values[1], end=values[2]))
  return segments


def read_miga_sample(sample_dir: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, list[MigaSegment]]:
  """(frame numbers (T,), keypoints (T, 18, 3), segments) of one `<sample>` folder."""
  sample_dir = pathlib.Path(sample_dir)
  name = sample_dir.name
  frames, keypoints = read_miga_skeleton(sample_dir / f"{name}_light_hand.csv")
  label_path = sample_dir / f"{name}_label.csv"
  segments = read_miga_labels(label_path) if label_path.is_file() else []
  return frames, keypoints, segments


def segment_keypoints(frames: np.ndarray, keypoints: np.ndarray, segment: MigaSegment) -> tuple[np.ndarray, int]:
  """Keypoints (end - start + 1, 18, 3) of a segment and the number of its frames absent from the file (zeros)."""
  length = segment.end - segment.start + 1
  out = np.zeros((length, keypoints.shape[1], 3), np.float32)
  inside = (frames >= segment.start) & (frames <= segment.end)
  out[frames[inside] - segment.start] = keypoints[inside]
  return out, length - int(inside.sum())
