"""iMiGUE: the 32 classes, the official cross-subject split, and the readers of its raw layout.

Raw layouts of a dataset root (find_raw_layout tells them apart):

  "release", the public iMiGUE material as it is published:
  <root>/Label/labels_20200831.csv                                    one row per clip
  <root>/Data/skeleton/raw/<video>/<video>_<frame:012d>_keypoints.json  OpenPose --write_json output, one per frame

  "flat", the synthetic dataset's (and a hand-made one's):
  <root>/labels.csv              one row per clip, columns as in the published labels_20200831.csv
  <root>/skeleton/<video>/<video>_<frame:012d>_keypoints.json

  Both: <root>/videos/<video>.mp4 (25 fps; not part of the public release, which links YouTube videos behind a
  request form), and optionally
  <root>/split.json              {"train_subjects": [...], "test_subjects": [...], "validation_subjects": [...]}
                                 (validation_subjects optional, a subset of train_subjects;
                                 clipmg_jax/data/loader/validation.py)
  <root>/classes.json            {"classes": [{name_id, csv_class, index, name, group}, ...]}

Frame numbering (settled against the published material): `start_frame` and `end_frame` are 0-based frame indices,
both inclusive, and equal the OpenPose file numbers (which start at 0). Evidence: every row of labels_20200831.csv
satisfies start_frame == floor(25 * start_time) and end_frame == floor(25 * end_time) (a frame at time t has index
floor(25 t) only when counting from 0), the table holds clips with start_frame == 0, and the OpenPose sample of video
298 surrounds each of its clips with the same 2-frame margin on both sides (files 631..660 for frames 633..658) only
under this reading.
"""

import csv
import dataclasses
import json
import os
import pathlib
from typing import Sequence

# The OpenPose readers live in their own module; re-exported here because they are part of the iMiGUE raw layout.
from clipmg_jax.data.raw import read_errors
from clipmg_jax.data.raw.openpose import OpenPoseClipReport, read_openpose_clip, read_openpose_frame  # noqa: F401

FPS = 25
VIDEO_SIZE = (1280, 720)  # (width, height) of the published videos, in pixels.
NUM_CLASSES = 32
OTHER_CSV_CLASS = 99  # CSV id of C32 "illustrative body language" (not a micro-gesture).

LABEL_COLUMNS = ("video_id", "label_id", "start_time", "start_frame", "end_time", "end_frame", "class",
                 "subject_id", "subject_gender", "subject_nationality", "win_or_lose")


@dataclasses.dataclass(frozen=True)
class ClassInfo:
  """One iMiGUE class. `index` is the 0-based model label; `csv_class` the id used in labels.csv."""
  name_id: str
  csv_class: int
  index: int
  name: str
  group: str  # body part: head, head-hand, body-hand, body, hand, none


# (name, group, train clips, test clips) of C1..C32 under the official cross-subject split (protocol.json).
_CLASS_TABLE = (
    ("Turtle neck", "head", 11, 4),
    ("Bulging face, deep breath", "head", 421, 94),
    ("Touching hat", "head-hand", 39, 6),
    ("Touching or scratching head", "head-hand", 218, 53),
    ("Touching or scratching forehead", "head-hand", 80, 10),
    ("Covering face", "head-hand", 23, 9),
    ("Rubbing eyes", "head-hand", 65, 25),
    ("Touching or scratching facial parts", "head-hand", 871, 263),
    ("Touching ears", "head-hand", 87, 45),
    ("Biting nails", "head-hand", 3, 2),
    ("Touching jaw", "head-hand", 315, 139),
    ("Touching or scratching neck", "body-hand", 163, 35),
    ("Playing or adjusting hair", "body-hand", 101, 39),
    ("Buckle button, pulling shirt collar, adjusting tie", "body-hand", 42, 28),
    ("Touching or covering suprasternal notch", "body-hand", 28, 16),
    ("Scratching back", "body-hand", 27, 3),
    ("Folding arms", "body-hand", 322, 84),
    ("Dustoffing clothes", "body-hand", 85, 46),
    ("Putting arms behind body", "body-hand", 2, 0),
    ("Moving torso", "body", 961, 256),
    ("Sitting straightly", "body", 174, 53),
    ("Scratching or touching arms", "hand", 376, 151),
    ("Rubbing or holding hands", "hand", 659, 376),
    ("Crossing fingers", "hand", 705, 183),
    ("Minaret gesture", "hand", 11, 10),
    ("Playing or manipulating objects", "hand", 293, 137),
    ("Hold back arms", "hand", 87, 13),
    ("Head up", "head", 61, 38),
    ("Pressing lips", "head", 1247, 300),
    ("Arms akimbo", "hand", 6, 2),
    ("Shaking shoulders", "body", 2332, 548),
    ("Illustrative body language (non-micro-gesture)", "none", 4120, 1595),
)

CLASSES = tuple(
    ClassInfo(name_id=f"C{i + 1}", csv_class=(i + 1 if i < 31 else OTHER_CSV_CLASS), index=i, name=name, group=group)
    for i, (name, group, _, _) in enumerate(_CLASS_TABLE))
CLASS_NAMES = tuple(c.name for c in CLASSES)
# Clips per class under the official split: (32,) each, in class-index order.
TRAIN_CLIPS_PER_CLASS = tuple(row[2] for row in _CLASS_TABLE)
TEST_CLIPS_PER_CLASS = tuple(row[3] for row in _CLASS_TABLE)
NUM_TRAIN_CLIPS = 13935
NUM_TEST_CLIPS = 4563
NUM_VIDEOS = 359
NUM_SUBJECTS = 72

# Official cross-subject split (37 train / 35 test subjects), subject ids as in the `subject_id` column.
TRAIN_SUBJECTS = (2, 4, 5, 6, 9, 10, 12, 13, 14, 15, 17, 18, 20, 21, 22, 23, 25, 28, 29, 30, 31, 35, 36, 38, 39, 41,
                  42, 43, 44, 46, 47, 48, 52, 53, 59, 61, 62)
TEST_SUBJECTS = (1, 3, 7, 8, 11, 16, 19, 24, 26, 27, 32, 33, 34, 37, 40, 45, 49, 50, 51, 54, 55, 56, 57, 58, 60, 63,
                 64, 65, 66, 67, 68, 69, 70, 71, 72)

_CSV_TO_INDEX = {c.csv_class: c.index for c in CLASSES}


def class_index(csv_class: int) -> int:
  """0-based label of a CSV class id: 1..31 -> 0..30, 99 -> 31. Raises ValueError for any other id."""
  try:
    return _CSV_TO_INDEX[int(csv_class)]
  except (KeyError, ValueError):
    raise ValueError(f"unknown iMiGUE class id {csv_class!r}: expected 1..31 or {OTHER_CSV_CLASS}") from None


@dataclasses.dataclass(frozen=True)
class Clip:
  """One annotated clip. Frames are 0-based indices into the video (= OpenPose file numbers), end inclusive."""
  video_id: str
  label_id: int
  start_frame: int
  end_frame: int
  label: int  # 0-based class index.
  subject: int

  @property
  def num_frames(self) -> int:
    return self.end_frame - self.start_frame + 1

  @property
  def clip_id(self) -> int:
    return clip_id(self.video_id, self.label_id)


def clip_id(video_id: str | int, label_id: int) -> int:
  """Unique integer id of a clip in records and batches: video_id * 100000 + label_id (video ids must be integers;
  a video has fewer than 100000 labels)."""
  return int(video_id) * 100000 + int(label_id)


@read_errors.names_file
def read_labels(path: str | os.PathLike) -> list[Clip]:
  """Reads a labels table (columns of labels_20200831.csv) into clips, in file order.

  Only video_id, label_id, start_frame, end_frame, class and subject_id are required; the other columns are ignored.
  A UTF-8 byte-order mark, CRLF line ends and spaces around names and values (as spreadsheets save) are accepted.
  Raises ValueError naming the file, line and column of the first malformed value.
  """
  path = pathlib.Path(path)
  required = ("video_id", "label_id", "start_frame", "end_frame", "class", "subject_id")
  clips = []
  seen = {}
  # utf-8-sig: a spreadsheet's "CSV UTF-8" starts with a byte-order mark, which would stick to the first name.
  with open(path, newline="", encoding="utf-8-sig") as f:
    reader = csv.DictReader(f)
    if reader.fieldnames:  # spreadsheets also pad names ("video_id, label_id"): data fields are stripped below
      reader.fieldnames = [name.strip() for name in reader.fieldnames]
    missing = [c for c in required if c not in (reader.fieldnames or ())]
    if missing:
      raise ValueError(f"{path}: header lacks column(s) {missing}; found {reader.fieldnames}")
    for row in reader:
      line = reader.line_num

      def field(column, convert=int, row=row, line=line):
        value = row[column]
        try:
          return convert(value.strip())
        except (ValueError, AttributeError):
          raise ValueError(f"{path}:{line}: column {column!r} has {value!r}, expected an integer") from None

      video_id = row["video_id"].strip() if row["video_id"] else ""
      if not video_id:
        raise ValueError(f"{path}:{line}: column 'video_id' is empty")
      label_id, start, end = field("label_id"), field("start_frame"), field("end_frame")
      try:
        label = class_index(field("class"))
      except ValueError as e:
        raise ValueError(f"{path}:{line}: column 'class': {e}") from None
      if start < 0 or end < start:
        raise ValueError(f"{path}:{line}: frame range start_frame={start}, end_frame={end} is not 0 <= start <= end")
      key = (video_id, label_id)
      if key in seen:
        raise ValueError(f"{path}:{line}: clip (video_id={video_id}, label_id={label_id}) repeats line {seen[key]}")
      seen[key] = line
      clips.append(Clip(video_id=video_id, label_id=label_id, start_frame=start, end_frame=end, label=label,
                        subject=field("subject_id")))
  return clips


def load_split(root: str | os.PathLike) -> tuple[tuple[int, ...], tuple[int, ...]]:
  """(train_subjects, test_subjects) from <root>/split.json when present, else the official iMiGUE split."""
  path = pathlib.Path(root) / "split.json"
  if not path.is_file():
    return TRAIN_SUBJECTS, TEST_SUBJECTS
  with open(path) as f:
    try:
      data = json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f"{path}: not valid JSON ({e})") from None
  try:
    train, test = tuple(int(s) for s in data["train_subjects"]), tuple(int(s) for s in data["test_subjects"])
  except (KeyError, TypeError, ValueError) as e:
    raise ValueError(f"{path}: expected integer lists 'train_subjects' and 'test_subjects' ({e!r})") from None
  overlap = set(train) & set(test)
  if overlap:
    raise ValueError(f"{path}: subjects {sorted(overlap)} are in both train and test")
  return train, test


def load_validation_subjects(root: str | os.PathLike) -> tuple[int, ...] | None:
  """`validation_subjects` of <root>/split.json (sorted), or None when the file or the key is absent.

  Raises ValueError naming the file when they are not integers or not all among its train_subjects.
  """
  path = pathlib.Path(root) / "split.json"
  if not path.is_file():
    return None
  train, _ = load_split(root)
  data = json.loads(path.read_text())
  if "validation_subjects" not in data:
    return None
  try:
    subjects = tuple(sorted(int(s) for s in data["validation_subjects"]))
  except (TypeError, ValueError) as e:
    raise ValueError(f"{path}: 'validation_subjects' must be a list of integer subject ids ({e!r})") from None
  foreign = sorted(set(subjects) - set(train))
  if foreign:
    raise ValueError(f"{path}: validation_subjects {foreign} are not in train_subjects (validation is drawn from "
                     f"the training subjects)")
  return subjects


@dataclasses.dataclass(frozen=True)
class RawLayout:
  """Where an iMiGUE-style root keeps its files. name: "release" | "flat"."""
  name: str
  labels_csv: pathlib.Path
  skeleton_dir: pathlib.Path


RELEASE_LABELS = pathlib.Path("Label") / "labels_20200831.csv"
RELEASE_SKELETON = pathlib.Path("Data") / "skeleton" / "raw"


def find_raw_layout(root: str | os.PathLike) -> RawLayout:
  """The layout of `root`: the public release (Label/labels_20200831.csv + Data/skeleton/raw/) or the flat one
  (labels.csv + skeleton/). Raises FileNotFoundError naming both when neither labels file exists."""
  root = pathlib.Path(root)
  if (root / RELEASE_LABELS).is_file():
    return RawLayout("release", root / RELEASE_LABELS, root / RELEASE_SKELETON)
  if (root / "labels.csv").is_file():
    return RawLayout("flat", root / "labels.csv", root / "skeleton")
  raise FileNotFoundError(f"{root}: neither the iMiGUE release layout ({RELEASE_LABELS} with {RELEASE_SKELETON}/) "
                          f"nor the flat layout (labels.csv with skeleton/) is there; pass --labels_csv and "
                          f"--skeleton_dir to point at the files")


def split_clips(clips: Sequence[Clip], subjects: Sequence[int]) -> list[Clip]:
  """The clips whose subject is in `subjects`, in input order."""
  keep = set(subjects)
  return [c for c in clips if c.subject in keep]


def load_classes(root: str | os.PathLike) -> tuple[ClassInfo, ...]:
  """The classes of a dataset root: <root>/classes.json when present, else the 32 iMiGUE classes."""
  path = pathlib.Path(root) / "classes.json"
  if not path.is_file():
    return CLASSES
  with open(path) as f:
    data = json.load(f)
  try:
    classes = tuple(ClassInfo(name_id=str(c["name_id"]), csv_class=int(c["csv_class"]), index=int(c["index"]),
                              name=str(c["name"]), group=str(c["group"])) for c in data["classes"])
  except (KeyError, TypeError, ValueError) as e:
    raise ValueError(f"{path}: each entry of 'classes' needs name_id, csv_class, index, name, group ({e!r})") from None
  if [c.index for c in classes] != list(range(len(classes))):
    raise ValueError(f"{path}: class indices must be 0..{len(classes) - 1} in order")
  return classes


def classes_to_json(classes: Sequence[ClassInfo] = CLASSES) -> dict:
  """The classes.json document for `classes`."""
  return {"classes": [dataclasses.asdict(c) for c in classes]}
