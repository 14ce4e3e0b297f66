"""iMiGUE constants and raw-layout readers, on the real published files and on small hand-written ones."""

import collections
import csv
import json
import math

import numpy as np
import pytest

from clipmg_jax.data import keypoints as kp
from clipmg_jax.data.raw import imigue
from clipmg_jax.data.raw import openpose

SAMPLE_VIDEO = "298"


# ---------------------------------------------------------------- constants vs protocol.json (independent source)

def test_classes_match_protocol(imigue_shared):
  protocol = json.loads((imigue_shared / "protocol.json").read_text())
  assert len(imigue.CLASSES) == len(protocol["classes"]) == 32
  for ours, ref in zip(imigue.CLASSES, protocol["classes"]):
    assert (ours.name_id, ours.csv_class, ours.index, ours.name, ours.group) == (
        ref["name_id"], ref["csv_class"], ref["index"], ref["name"], ref["group"])
    assert imigue.TRAIN_CLIPS_PER_CLASS[ours.index] == ref["train_clips"]
    assert imigue.TEST_CLIPS_PER_CLASS[ours.index] == ref["test_clips"]
  split = protocol["cross_subject"]
  assert list(imigue.TRAIN_SUBJECTS) == split["train_subjects"] and len(imigue.TRAIN_SUBJECTS) == 37
  assert list(imigue.TEST_SUBJECTS) == split["test_subjects"] and len(imigue.TEST_SUBJECTS) == 35
  assert (imigue.NUM_TRAIN_CLIPS, imigue.NUM_TEST_CLIPS) == (split["train_clips"], split["test_clips"])


def test_class_index():
  assert [imigue.class_index(c) for c in (1, 2, 31, 99)] == [0, 1, 30, 31]
  assert imigue.class_index("99") == 31
  for bad in (0, 32, 98, 100, "x"):
    with pytest.raises(ValueError, match="unknown iMiGUE class id"):
      imigue.class_index(bad)


# ---------------------------------------------------------------- the real labels table

@pytest.fixture(scope="module")
def real_clips(imigue_shared):
  return imigue.read_labels(imigue_shared / "labels_20200831.csv")


def test_real_labels_counts(real_clips):
  assert len(real_clips) == 18498
  assert len({c.video_id for c in real_clips}) == 359
  assert len({c.subject for c in real_clips}) == 72
  train = imigue.split_clips(real_clips, imigue.TRAIN_SUBJECTS)
  test = imigue.split_clips(real_clips, imigue.TEST_SUBJECTS)
  assert (len(train), len(test)) == (13935, 4563)
  assert len(set(c.clip_id for c in real_clips)) == len(real_clips)


def test_real_labels_per_class_counts_match_protocol(real_clips):
  for subjects, expected in ((imigue.TRAIN_SUBJECTS, imigue.TRAIN_CLIPS_PER_CLASS),
                             (imigue.TEST_SUBJECTS, imigue.TEST_CLIPS_PER_CLASS)):
    counts = collections.Counter(c.label for c in imigue.split_clips(real_clips, subjects))
    assert [counts.get(i, 0) for i in range(32)] == list(expected)


def test_real_labels_match_raw_csv(imigue_shared, real_clips):
  """Field by field against the csv module: label = class - 1, 99 -> 31; frames and ids unchanged."""
  with open(imigue_shared / "labels_20200831.csv", newline="") as f:
    rows = list(csv.DictReader(f))
  for clip, row in zip(real_clips, rows):
    assert clip.video_id == row["video_id"] and clip.label_id == int(row["label_id"])
    assert (clip.start_frame, clip.end_frame) == (int(row["start_frame"]), int(row["end_frame"]))
    assert clip.subject == int(row["subject_id"])
    assert clip.label == (31 if row["class"] == "99" else int(row["class"]) - 1)


def test_frame_numbering_is_zero_based(imigue_shared, real_clips):
  """The evidence behind the documented decision: frame = floor(25 * time) for every row, frame 0 occurs, and the
  OpenPose sample surrounds each clip with the same margin on both sides only if frame numbers = file numbers."""
  with open(imigue_shared / "labels_20200831.csv", newline="") as f:
    rows = list(csv.DictReader(f))
  for row in rows:
    assert int(row["start_frame"]) == math.floor(25 * float(row["start_time"]))
    assert int(row["end_frame"]) == math.floor(25 * float(row["end_time"]))
  assert min(c.start_frame for c in real_clips) == 0
  files = sorted(int(p.name.split("_")[1]) for p in (imigue_shared / "skeleton_sample" / SAMPLE_VIDEO).iterdir())
  runs, run = [], [files[0]]
  for f in files[1:]:
    if f == run[-1] + 1:
      run.append(f)
    else:
      runs.append(run)
      run = [f]
  runs.append(run)
  by_id = {(c.video_id, c.label_id): c for c in real_clips}
  for label_id, run in ((2, runs[0]), (5, runs[1]), (55, runs[2])):
    clip = by_id[(SAMPLE_VIDEO, label_id)]
    assert clip.start_frame - run[0] == run[-1] - clip.end_frame == 2


# ---------------------------------------------------------------- the real OpenPose sample

def _raw_people(imigue_shared, frame):
  path = imigue_shared / "skeleton_sample" / SAMPLE_VIDEO / f"{SAMPLE_VIDEO}_{frame:012d}_keypoints.json"
  return json.loads(path.read_text())["people"]


def test_openpose_body25_to_coco18(imigue_shared):
  people = _raw_people(imigue_shared, 633)
  assert len(people) == 1
  raw = np.array(people[0]["pose_keypoints_2d"], np.float32).reshape(25, 3)
  keypoints, report = imigue.read_openpose_clip(imigue_shared / "skeleton_sample", SAMPLE_VIDEO, 633, 633)
  assert keypoints.shape == (1, 18, 3) and keypoints.dtype == np.float32
  # By name: COCO-18 right_hip is BODY_25 9 (RHip), left_ear is BODY_25 18; MidHip (8) is not in COCO-18.
  names = {name: i for i, name in enumerate(kp.COCO18_NAMES)}
  body25 = {"nose": 0, "neck": 1, "right_shoulder": 2, "right_wrist": 4, "left_wrist": 7, "right_hip": 9,
            "left_hip": 12, "left_ankle": 14, "right_eye": 15, "left_ear": 18}
  for name, b in body25.items():
    np.testing.assert_array_equal(keypoints[0, names[name]], raw[b])
  assert report.summary().startswith("0 missing")


def test_openpose_two_people_follow_the_subject(imigue_shared):
  keypoints, report = imigue.read_openpose_clip(imigue_shared / "skeleton_sample", SAMPLE_VIDEO, 19395, 19492)
  assert keypoints.shape == (98, 18, 3)
  assert report.multi_person_frames == [19415, 19417, 19420, 19448]
  assert report.missing_frames == [] and report.no_person_frames == []
  for frame in report.multi_person_frames:
    t = frame - 19395
    people = _raw_people(imigue_shared, frame)
    # The chosen one is the main body (most joints), not the 3-joint fragment OpenPose split off.
    detected = [sum(c > 0 for c in p["pose_keypoints_2d"][2::3]) for p in people]
    assert (keypoints[t, :, 2] > 0).sum() == max(detected)
    # ... and its neck sits where the neighbouring single-person frames put it.
    neighbours = keypoints[[t - 1, t + 1], 1, :2]
    assert np.linalg.norm(keypoints[t, 1, :2] - neighbours.mean(0)) < 20


def test_openpose_no_person_and_missing_files(imigue_shared):
  keypoints, report = imigue.read_openpose_clip(imigue_shared / "skeleton_sample", SAMPLE_VIDEO, 20885, 20899)
  assert report.missing_frames == [20885, 20886, 20887, 20888, 20889]
  assert report.no_person_frames == list(range(20893, 20900))
  assert np.all(keypoints[:5] == 0) and np.all(keypoints[8:] == 0)
  assert np.all(keypoints[5:8, 1, 2] > 0)  # 20890..20892 hold a person with a neck.
  assert "5 missing" in report.summary()


def test_openpose_missing_folder(imigue_shared):
  with pytest.raises(FileNotFoundError, match="no OpenPose folder for video 12345"):
    imigue.read_openpose_clip(imigue_shared / "skeleton_sample", "12345", 0, 3)


# ---------------------------------------------------------------- hand-written files: formats and bad input

def _write_frame(folder, video, frame, people):
  folder.mkdir(parents=True, exist_ok=True)
  (folder / openpose.frame_filename(video, frame)).write_text(json.dumps({"version": 1.3, "people": people}))


def test_openpose_coco18_detected_by_length(tmp_path):
  coco = np.arange(54, dtype=np.float32).reshape(18, 3) / 100.0
  coco[:, :2] *= 1000
  _write_frame(tmp_path / "v", "v", 0, [{"pose_keypoints_2d": coco.reshape(-1).tolist()}])
  keypoints, _ = imigue.read_openpose_clip(tmp_path, "v", 0, 0)
  np.testing.assert_allclose(keypoints[0], coco, rtol=1e-6)


def test_openpose_largest_person_without_history(tmp_path):
  small = np.zeros((25, 3))
  small[[0, 1, 2], :] = [[10, 10, 0.9], [12, 20, 0.9], [8, 22, 0.9]]
  big = np.zeros((25, 3))
  big[[0, 1, 2, 5], :] = [[100, 50, 0.5], [100, 100, 0.5], [60, 110, 0.5], [140, 110, 0.5]]
  _write_frame(tmp_path / "v", "v", 7, [{"pose_keypoints_2d": small.reshape(-1).tolist()},
                                        {"pose_keypoints_2d": big.reshape(-1).tolist()}])
  keypoints, report = imigue.read_openpose_clip(tmp_path, "v", 7, 7)
  assert report.multi_person_frames == [7]
  np.testing.assert_allclose(keypoints[0, 1], [100, 100, 0.5])


def test_openpose_bad_files_name_the_file(tmp_path):
  _write_frame(tmp_path / "v", "v", 0, [{"pose_keypoints_2d": [1.0] * 30}])
  with pytest.raises(ValueError, match=r"v_000000000000_keypoints.json: people\[0\].*75 \(BODY_25\) or 54"):
    imigue.read_openpose_clip(tmp_path, "v", 0, 0)
  (tmp_path / "v" / openpose.frame_filename("v", 1)).write_text("{not json")
  with pytest.raises(ValueError, match="v_000000000001_keypoints.json: not valid JSON"):
    imigue.read_openpose_clip(tmp_path, "v", 1, 1)


def _labels_file(tmp_path, rows):
  path = tmp_path / "labels.csv"
  lines = [",".join(imigue.LABEL_COLUMNS)] + [",".join(map(str, r)) for r in rows]
  path.write_text("\n".join(lines) + "\n")
  return path


GOOD_ROW = [7, 1, 0.02, 0, 1.02, 25, 99, 3, "M", "Spain", "Win"]


def test_read_labels_small_file(tmp_path):
  clips = imigue.read_labels(_labels_file(tmp_path, [GOOD_ROW, [7, 2, 2.0, 50, 3.0, 75, 5, 3, "M", "Spain", "Win"]]))
  assert clips == [imigue.Clip("7", 1, 0, 25, 31, 3), imigue.Clip("7", 2, 50, 75, 4, 3)]
  assert clips[1].clip_id == 700002 and clips[0].num_frames == 26


@pytest.mark.parametrize("column, value, message", [
    ("class", 32, r"labels.csv:2: column 'class': unknown iMiGUE class id 32"),
    ("start_frame", "x", r"labels.csv:2: column 'start_frame' has 'x', expected an integer"),
    ("end_frame", -1, r"labels.csv:2: frame range start_frame=0, end_frame=-1"),
])
def test_read_labels_errors_name_line_and_column(tmp_path, column, value, message):
  row = list(GOOD_ROW)
  row[imigue.LABEL_COLUMNS.index(column)] = value
  with pytest.raises(ValueError, match=message):
    imigue.read_labels(_labels_file(tmp_path, [row]))


@pytest.mark.parametrize("separator", [",", " , "])
def test_read_labels_takes_a_spreadsheets_csv(tmp_path, separator):
  # What Excel's "CSV UTF-8" writes: a byte-order mark and CRLF line ends; and names padded with spaces.
  path = tmp_path / "labels.csv"
  lines = [separator.join(imigue.LABEL_COLUMNS) + " ", " , ".join(map(str, GOOD_ROW)),
           ",".join(map(str, [7, 2, 2.0, 50, 3.0, 75, 5, 3, "M", "Spain", "Win"]))]
  path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n")
  assert path.read_bytes().startswith(b"\xef\xbb\xbfvideo_id,") == (separator == ",")
  assert imigue.read_labels(path) == [imigue.Clip("7", 1, 0, 25, 31, 3), imigue.Clip("7", 2, 50, 75, 4, 3)]


def test_read_labels_missing_column_and_duplicate(tmp_path):
  path = tmp_path / "labels.csv"
  path.write_text("video_id,label_id,start_frame,end_frame,subject_id\n1,1,0,5,2\n")
  with pytest.raises(ValueError, match=r"header lacks column\(s\) \['class'\]"):
    imigue.read_labels(path)
  with pytest.raises(ValueError, match=r"labels.csv:3: clip \(video_id=7, label_id=1\) repeats line 2"):
    imigue.read_labels(_labels_file(tmp_path, [GOOD_ROW, GOOD_ROW]))


def test_load_split_and_classes(tmp_path):
  assert imigue.load_split(tmp_path) == (imigue.TRAIN_SUBJECTS, imigue.TEST_SUBJECTS)
  assert imigue.load_classes(tmp_path) == imigue.CLASSES
  (tmp_path / "split.json").write_text(json.dumps({"train_subjects": [3, 1], "test_subjects": [2]}))
  assert imigue.load_split(tmp_path) == ((3, 1), (2,))
  (tmp_path / "split.json").write_text(json.dumps({"train_subjects": [1, 2], "test_subjects": [2]}))
  with pytest.raises(ValueError, match=r"subjects \[2\] are in both train and test"):
    imigue.load_split(tmp_path)
  (tmp_path / "classes.json").write_text(json.dumps(imigue.classes_to_json()))
  assert imigue.load_classes(tmp_path) == imigue.CLASSES


def test_validation_subjects_of_split_json(tmp_path):
  assert imigue.load_validation_subjects(tmp_path) is None
  (tmp_path / "split.json").write_text(json.dumps({"train_subjects": [3, 1, 5], "test_subjects": [2]}))
  assert imigue.load_validation_subjects(tmp_path) is None
  (tmp_path / "split.json").write_text(json.dumps({"train_subjects": [3, 1, 5], "test_subjects": [2],
                                                   "validation_subjects": [5, 1]}))
  assert imigue.load_validation_subjects(tmp_path) == (1, 5)
  (tmp_path / "split.json").write_text(json.dumps({"train_subjects": [3, 1, 5], "test_subjects": [2],
                                                   "validation_subjects": [2]}))
  with pytest.raises(ValueError, match=r"validation_subjects \[2\] are not in train_subjects"):
    imigue.load_validation_subjects(tmp_path)
