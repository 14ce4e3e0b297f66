"""data_prep/extract_pose.py: the BlazePose -> BODY_25 table (runs anywhere), and extraction from the real clips
of ../shared/videos in the pose environment ./.venv-pose (skipped, with the reason, where either is absent)."""

import importlib.util
import json
import pathlib
import shutil
import subprocess

import numpy as np
import pytest

from clipmg_jax.data import keypoints as kp
from clipmg_jax.data.raw import openpose
from clipmg_jax.data.records import convert

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "data_prep" / "extract_pose.py"
POSE_PYTHON = REPO_ROOT / ".venv-pose" / "bin" / "python"
VIDEOS = REPO_ROOT.parent / "shared" / "videos"

_spec = importlib.util.spec_from_file_location("extract_pose", SCRIPT)
extract_pose = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(extract_pose)  # numpy only at import: mediapipe is imported when extracting


def _body25_index(name):
  return [n for n, _ in extract_pose.BODY25_FROM_BLAZEPOSE].index(name)


def test_table_maps_blazepose_to_body25_and_the_readers_take_it():
  rng = np.random.default_rng(0)
  landmarks = np.column_stack([rng.uniform(0.1, 0.9, 33), rng.uniform(0.1, 0.9, 33), rng.uniform(0.5, 1.0, 33)])
  landmarks[25] = (0.5, 1.4, 0.9)  # left knee below the frame: not detected
  width, height = 200, 100
  body = extract_pose.blazepose_to_body25(landmarks, width, height)
  px = lambda i: (landmarks[i, 0] * width - 0.5, landmarks[i, 1] * height - 0.5)  # noqa: E731
  np.testing.assert_allclose(body[_body25_index("RWrist"), :2], px(16), atol=1e-4)
  np.testing.assert_allclose(body[_body25_index("LEye"), :2], px(2), atol=1e-4)
  neck = (np.array(px(11)) + np.array(px(12))) / 2
  np.testing.assert_allclose(body[_body25_index("Neck"), :2], neck, atol=1e-4)
  assert body[_body25_index("Neck"), 2] == pytest.approx(min(landmarks[11, 2], landmarks[12, 2]))
  mid_hip = (np.array(px(23)) + np.array(px(24))) / 2
  np.testing.assert_allclose(body[_body25_index("MidHip"), :2], mid_hip, atol=1e-4)
  for absent in ("LSmallToe", "RSmallToe", "LKnee"):
    np.testing.assert_array_equal(body[_body25_index(absent)], 0.0)
  # Through the JSON and the project's reader: COCO-18 in the documented order.
  doc = json.loads(extract_pose.openpose_json(body))
  coco = openpose.pose_to_coco18(doc["people"][0]["pose_keypoints_2d"])
  for coco_name, blaze in (("nose", 0), ("right_shoulder", 12), ("left_elbow", 13), ("right_hip", 24),
                           ("left_ankle", 27), ("right_ear", 8)):
    np.testing.assert_allclose(coco[kp.COCO18_NAMES.index(coco_name), :2], px(blaze), atol=2e-3)
  assert json.loads(extract_pose.openpose_json(None)) == {"version": 1.3, "people": []}


@pytest.fixture(scope="module")
def pose_python() -> pathlib.Path:
  if not POSE_PYTHON.is_file():
    pytest.skip(f"pose environment absent ({POSE_PYTHON}): `bash scripts/pose_env.sh` makes it (mediapipe pins "
                f"numpy<2, so it is not part of the project's environment and scripts/test.sh does not install it)")
  return POSE_PYTHON


@pytest.fixture(scope="module")
def videos() -> list[pathlib.Path]:
  found = sorted(VIDEOS.glob("*.mp4"))
  if not found:
    pytest.skip(f"no real clips in {VIDEOS} (the shared material is not part of a clone)")
  return found


def _extract(python, *args) -> subprocess.CompletedProcess:
  return subprocess.run([str(python), str(SCRIPT), "--no_progress", *map(str, args)], capture_output=True,
                        text=True, timeout=600)


@pytest.mark.slow
def test_real_clips_give_a_plausible_seated_person(pose_python, videos, tmp_path):
  for video in videos:
    done = _extract(pose_python, "--video", video, "--out", tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    stats = json.loads(done.stdout.strip().splitlines()[-1])
    points, report = openpose.read_openpose_clip(tmp_path, video.stem, 0, stats["frames"] - 1)
    found = points[:, :, 2].max(axis=1) > 0
    assert found.mean() >= 0.9, (video.name, report.summary())
    seen = points[..., 2] > 0
    xy = points[..., :2][seen]
    assert (xy >= -0.5).all() and (xy[:, 0] <= stats["width"] - 0.5).all() and (xy[:, 1] <= stats["height"] - 0.5).all()
    j = {name: kp.COCO18_NAMES.index(name) for name in kp.COCO18_NAMES}
    both = seen[:, j["nose"]] & seen[:, j["neck"]]
    assert both.mean() >= 0.9 and (points[both, j["nose"], 1] < points[both, j["neck"], 1]).all(), video.name
    for side in ("left", "right"):
      s, e, w = j[f"{side}_shoulder"], j[f"{side}_elbow"], j[f"{side}_wrist"]
      ok = seen[:, s] & seen[:, e] & seen[:, w]
      assert ok.mean() >= 0.9, (video.name, side)
      upper = np.linalg.norm(points[ok, e, :2] - points[ok, s, :2], axis=-1)
      fore = np.linalg.norm(points[ok, w, :2] - points[ok, e, :2], axis=-1)
      # The wrist is a forearm's length from the elbow (forearm / upper arm ~ 0.8 in adults), not anywhere else.
      assert (fore > 0.4 * upper).all() and (fore < 1.6 * upper).all(), (video.name, side)
      # The person's right side is on the image's left: a camera facing them sees them mirrored.
    assert np.median(points[found, j["right_shoulder"], 0] - points[found, j["left_shoulder"], 0]) < 0


@pytest.mark.slow
def test_extracted_json_converts_without_skipping_and_extraction_resumes(pose_python, videos, tmp_path):
  video = videos[0]
  raw = tmp_path / "raw"
  (raw / "videos").mkdir(parents=True)
  shutil.copy(video, raw / "videos" / "7.mp4")  # the converter needs integer video ids
  # Two frame ranges, the second overlapping the first: frames already written are kept, not redone.
  first = _extract(pose_python, "--video", raw / "videos" / "7.mp4", "--out", raw / "skeleton", "--end_frame", 19)
  assert first.returncode == 0, first.stderr[-3000:]
  assert json.loads(first.stdout.splitlines()[-1])["written"] == 20
  rest = _extract(pose_python, "--video", raw / "videos" / "7.mp4", "--out", raw / "skeleton", "--start_frame", 10)
  stats = json.loads(rest.stdout.splitlines()[-1])
  assert stats["skipped_existing"] == 10 and stats["written"] == stats["frames"] - 10
  num_frames = 20 + stats["written"]
  assert len(list((raw / "skeleton" / "7").glob("*_keypoints.json"))) == num_frames
  (raw / "labels.csv").write_text(
      "video_id,label_id,start_time,start_frame,end_time,end_frame,class,subject_id\n"
      f"7,1,0.0,0,1.0,{num_frames - 1},1,2\n")  # subject 2 is in iMiGUE's train split
  manifest = convert.convert(raw, tmp_path / "shards", progress=False)
  assert manifest["num_skipped"] == 0 and manifest["splits"]["train"]["num_clips"] == 1
  assert manifest["skeleton_report"].get("missing_frames", 0) == 0


def test_unreadable_video_is_a_clear_error(tmp_path):
  python = POSE_PYTHON if POSE_PYTHON.is_file() else None
  if python is None:
    pytest.skip(f"pose environment absent ({POSE_PYTHON}): `bash scripts/pose_env.sh` makes it")
  bad = tmp_path / "broken.mp4"
  bad.write_text("not a video")
  done = _extract(python, "--video", bad, "--out", tmp_path / "out")
  assert done.returncode == 1 and str(bad) in done.stderr and "cannot be read as a video" in done.stderr
