"""Readers of OpenPose `--write_json` output: one JSON file per frame, `<video>_<frame:012d>_keypoints.json`.

A file holds {"version": ..., "people": [{"pose_keypoints_2d": [x, y, c] * J, "face_keypoints_2d": ...,
"hand_left_keypoints_2d": ..., "hand_right_keypoints_2d": ...}, ...]}. The body layout is detected from the length
of `pose_keypoints_2d`: 75 numbers = BODY_25, 54 = COCO-18. Keypoints come back in COCO-18 order, (x, y, confidence),
x and y in pixels of the video frame; an undetected joint has confidence 0.
"""

import dataclasses
import json
import os
import pathlib

import numpy as np

from clipmg_jax.data import keypoints as kp
from clipmg_jax.data.raw import read_errors

_BODY25_LEN = 25 * 3
_COCO18_LEN = 18 * 3


def frame_filename(video_id: str, frame: int) -> str:
  """File name of a 0-based frame: `<video>_<frame:012d>_keypoints.json`."""
  return f"{video_id}_{frame:012d}_keypoints.json"


def pose_to_coco18(values, where: str = "pose_keypoints_2d") -> np.ndarray:
  """A flat BODY_25 (75) or COCO-18 (54) OpenPose pose array -> float32 (18, 3) in COCO-18 order.

  Confidences are clipped to [0, 1]. Raises ValueError naming `where` for any other length.
  """
  try:
    arr = np.asarray(values, dtype=np.float32)  # JSON null becomes NaN (counted by read_openpose_clip)
  except (TypeError, ValueError) as e:
    raise ValueError(f"{where}: expected numbers ({e})") from None
  if arr.ndim != 1 or arr.size not in (_BODY25_LEN, _COCO18_LEN):
    raise ValueError(f"{where}: expected 75 (BODY_25) or 54 (COCO-18) numbers, got shape {arr.shape}")
  joints = arr.reshape(-1, 3)
  if arr.size == _BODY25_LEN:
    joints = joints[kp.BODY25_TO_COCO18]
  joints = joints.copy()
  joints[:, 2] = np.clip(joints[:, 2], 0.0, 1.0)
  return joints


@read_errors.names_file
def read_openpose_frame(path: str | os.PathLike) -> list[np.ndarray]:
  """All people of one OpenPose JSON file, each float32 (18, 3) COCO-18 (x, y, conf) in frame pixels.

  An empty list means no person was detected. Raises ValueError naming the file for malformed content.
  """
  path = pathlib.Path(path)
  try:
    with open(path) as f:
      data = json.load(f)
  except json.JSONDecodeError as e:
    raise ValueError(f"{path}: not valid JSON ({e})") from None
  except UnicodeDecodeError as e:
    raise ValueError(f"{path}: not UTF-8 text ({e})") from None
  if not isinstance(data, dict) or not isinstance(data.get("people"), list):
    raise ValueError(f"{path}: expected an object with a 'people' list")
  people = []
  for i, person in enumerate(data["people"]):
    if not isinstance(person, dict) or "pose_keypoints_2d" not in person:
      raise ValueError(f"{path}: people[{i}] has no 'pose_keypoints_2d'")
    people.append(pose_to_coco18(person["pose_keypoints_2d"], where=f"{path}: people[{i}].pose_keypoints_2d"))
  return people


def _person_size(person: np.ndarray) -> float:
  """Area in pixels^2 of the bounding box of the confidently detected joints (0 if fewer than two)."""
  xy = person[person[:, 2] > 0, :2]
  if len(xy) < 2:
    return 0.0
  extent = xy.max(axis=0) - xy.min(axis=0)
  return float(extent[0] * extent[1])


def _match_cost(candidate: np.ndarray, previous: np.ndarray) -> float:
  """How far `candidate` is from the previously tracked person, in pixels.

  Mean over the joints detected in `previous` of the pixel distance to the candidate's joint, counting a joint the
  candidate lacks as a full body size (the diagonal of `previous`'s box). The penalty matters: OpenPose sometimes
  splits one person into a main part and a fragment of two or three joints (frames 19415 and 19417 of the real
  video 298), and a fragment matches its few joints almost exactly.
  """
  seen = previous[:, 2] > 0
  if not seen.any():
    return float("inf")
  size = max(float(np.sqrt(_person_size(previous))) * np.sqrt(2.0), 1.0)
  both = seen & (candidate[:, 2] > 0)
  if not both.any():
    return float("inf")
  distances = np.full(int(seen.sum()), size, np.float32)
  distances[both[seen]] = np.linalg.norm(candidate[both, :2] - previous[both, :2], axis=-1)
  return float(distances.mean())


def choose_person(people: list[np.ndarray], previous: np.ndarray | None) -> int:
  """Index of the tracked subject among `people`: the best match to `previous` (the last chosen person, see
  _match_cost), else, with no previous person or no joint in common, the largest."""
  if previous is not None:
    costs = [_match_cost(p, previous) for p in people]
    best = int(np.argmin(costs))
    if np.isfinite(costs[best]):
      return best
  return int(np.argmax([_person_size(p) for p in people]))


@dataclasses.dataclass
class OpenPoseClipReport:
  """What read_openpose_clip had to work around, as 0-based frame numbers."""
  missing_frames: list[int] = dataclasses.field(default_factory=list)  # no JSON file: zero confidence.
  no_person_frames: list[int] = dataclasses.field(default_factory=list)  # file with empty 'people': zero confidence.
  multi_person_frames: list[int] = dataclasses.field(default_factory=list)  # several people: one was chosen.
  # NaN/Inf/null values in a person's joints: those joints were zeroed (confidence 0).
  nonfinite_frames: list[int] = dataclasses.field(default_factory=list)

  @property
  def num_missing(self) -> int:
    return len(self.missing_frames)

  def summary(self) -> str:
    return (f"{len(self.missing_frames)} missing file(s), {len(self.no_person_frames)} frame(s) without a person, "
            f"{len(self.multi_person_frames)} frame(s) with several people, {len(self.nonfinite_frames)} frame(s) "
            "with NaN/Inf/null keypoints")


def read_openpose_clip(skeleton_root: str | os.PathLike, video_id: str, start: int, end: int
                       ) -> tuple[np.ndarray, OpenPoseClipReport]:
  """Keypoints of frames start..end (0-based, inclusive) of one video.

  Reads `<skeleton_root>/<video_id>/<video_id>_<frame:012d>_keypoints.json`.
  Returns (keypoints float32 (end - start + 1, 18, 3) COCO-18 (x, y, conf) in pixels of the video frame, report).
  Frames whose file is missing or holds no person get all-zero joints (confidence 0) and are listed in the report;
  so are frames with NaN/Inf/null values, whose joints holding them are zeroed.
  With several people, the one nearest to the previously chosen person is kept (the largest when there is no
  previous person), so the same subject is followed through the clip.
  Raises FileNotFoundError if the video's folder does not exist, ValueError for malformed files.
  """
  if end < start:
    raise ValueError(f"video {video_id}: frame range {start}..{end} is empty")
  folder = pathlib.Path(skeleton_root) / str(video_id)
  if not folder.is_dir():
    raise FileNotFoundError(f"no OpenPose folder for video {video_id}: {folder}")
  out = np.zeros((end - start + 1, kp.NUM_JOINTS, 3), np.float32)
  report = OpenPoseClipReport()
  previous = None
  for t, frame in enumerate(range(start, end + 1)):
    path = folder / frame_filename(str(video_id), frame)
    if not path.is_file():
      report.missing_frames.append(frame)
      continue
    people = read_openpose_frame(path)
    finite = [np.isfinite(p).all(-1, keepdims=True) for p in people]
    if not all(f.all() for f in finite):
      report.nonfinite_frames.append(frame)
      people = [np.where(f, p, 0.0).astype(np.float32) for p, f in zip(people, finite)]
    if not people:
      report.no_person_frames.append(frame)
      continue
    if len(people) > 1:
      report.multi_person_frames.append(frame)
    chosen = people[choose_person(people, previous)]
    out[t] = chosen
    previous = chosen
  return out, report
