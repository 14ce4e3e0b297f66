"""data_prep/extract_pose.py (python -m data_prep.extract_pose): the BlazePose -> BODY_25 table, and with a stand-in
tracker (runs anywhere) resumed and split runs equal to an uninterrupted one, damaged videos, a full disk; extraction
from the real clips of ../shared/videos in the pose environment ./.venv-pose (skipped, with the reason, where either
is absent)."""

import errno
import importlib.util
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import damaged_videos  # tests/fakes
from clipmg_jax.data import keypoints as kp
from clipmg_jax.data.raw import openpose
from clipmg_jax.data.raw import video as video_io
from clipmg_jax.data.records import convert
from data_prep import extract_pose  # numpy only at import: mediapipe is imported when extracting

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
# The command as the README gives it, run from the repository root (which -m puts on the path: the pose environment
# does not install clipmg_jax).
COMMAND = ("-m", "data_prep.extract_pose")
POSE_PYTHON = REPO_ROOT / ".venv-pose" / "bin" / "python"
VIDEOS = REPO_ROOT.parent / "shared" / "videos"


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
    pytest.skip(f"pose environment absent ({POSE_PYTHON}): `bash scripts/pose_env.sh` makes it (apart from .venv: "
                f"mediapipe pins numpy<2; scripts/test.sh makes it unless CLIPMG_TEST_POSE=0 or it cannot be "
                f"made here)")
  return POSE_PYTHON


@pytest.fixture(scope="module")
def videos() -> list[pathlib.Path]:
  found = sorted(VIDEOS.glob("*.mp4"))
  if not found:
    pytest.skip(f"no real clips in {VIDEOS} (the shared material is not part of a clone)")
  return found


def _extract(python, *args) -> subprocess.CompletedProcess:
  return subprocess.run([str(python), *COMMAND, "--no_progress", *map(str, args)], capture_output=True, text=True,
                        timeout=600, cwd=REPO_ROOT)


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


# --- Without mediapipe: the extractor with a stand-in tracker (tests/fakes/pose/mediapipe) ---------------------------

FAKES = REPO_ROOT / "tests" / "fakes"


@pytest.fixture
def fake_mediapipe(monkeypatch):
  spec = importlib.util.spec_from_file_location("mediapipe", FAKES / "pose" / "mediapipe" / "__init__.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  monkeypatch.setitem(sys.modules, "mediapipe", module)
  return module


def _moving_square(path: pathlib.Path, frames: int = 40) -> pathlib.Path:
  """A bright square crossing a dark 64 x 48 picture, one frame at a time."""
  pictures = []
  for t in range(frames):
    picture = np.full((48, 64, 3), 20, np.uint8)
    picture[10:30, t:t + 20] = 230
    pictures.append(picture)
  video_io.write_video(path, pictures, fps=25, gop_size=5, codec=video_io.first_encoder(), threads=1)
  return path


def _files(folder: pathlib.Path) -> dict[str, bytes]:
  return {p.name: p.read_bytes() for p in sorted(folder.glob("*_keypoints.json"))}


def test_resumed_and_split_extraction_equal_an_uninterrupted_one(fake_mediapipe, monkeypatch, tmp_path):
  monkeypatch.setattr(extract_pose, "TRACK_CHUNK", 8)
  video = _moving_square(tmp_path / "square.mp4")
  whole = extract_pose.extract(video, tmp_path / "whole", progress=False)
  assert whole["written"] == 40 and whole["complete"] and whole["no_person"] == 0
  expected = _files(tmp_path / "whole" / "square")
  # Killed after frame 12 (files are written atomically: frames 0..12 are there), then run again.
  extract_pose.extract(video, tmp_path / "resumed", end_frame=12, progress=False)
  again = extract_pose.extract(video, tmp_path / "resumed", progress=False)
  assert again["skipped_existing"] == 13 and again["written"] == 27
  assert _files(tmp_path / "resumed" / "square") == expected
  # Two processes on two ranges, split inside a chunk.
  extract_pose.extract(video, tmp_path / "split", end_frame=20, progress=False)
  extract_pose.extract(video, tmp_path / "split", start_frame=21, progress=False)
  assert _files(tmp_path / "split" / "square") == expected
  # The check has teeth: without the chunk's frames before it, a resumed tracker writes other keypoints.
  fresh = fake_mediapipe.Pose()
  frames = dict(extract_pose.iter_frames(video, 0, None))
  body = extract_pose.blazepose_to_body25(
      np.array([(p.x, p.y, p.visibility) for p in fresh.process(frames[13]).pose_landmarks.landmark]), 64, 48)
  assert extract_pose.openpose_json(body).encode() != expected["square_000000000013_keypoints.json"]


def test_damaged_videos_are_one_message_or_a_partial_extraction_with_a_warning(fake_mediapipe, tmp_path, capsys):
  bad = damaged_videos.make(_moving_square(tmp_path / "square.mp4"), tmp_path / "bad")
  for name in ("empty", "text", "half"):
    assert extract_pose.main(["--video", str(bad[name]), "--out", str(tmp_path / "out"), "--no_progress"]) == 1
    err = capsys.readouterr().err
    assert err == f"UnreadableVideoError: {bad[name]}: cannot be read as a video " + err.split("video ", 1)[1], err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "out" / name).exists()
  # Cut after its index: it opens, declares 40 frames and decodes fewer.
  assert extract_pose.main(["--video", str(bad["faststart_half"]), "--out", str(tmp_path / "out"),
                            "--no_progress"]) == 0
  captured = capsys.readouterr()
  stats = json.loads(captured.out.strip().splitlines()[-1])
  reached = stats["last_frame"]
  assert not stats["complete"] and stats["header_frames"] == 40 and 5 < reached < 35
  assert captured.err.strip() == (
      f"warning: {bad['faststart_half']}: extracted frames 0..{reached}, {reached + 1} of the 40 asked for: the file "
      f"decodes only to frame {reached} of the 40 frames its header declares (damaged or cut short)")
  assert len(_files(tmp_path / "out" / "faststart_half")) == stats["written"] == reached + 1


def test_a_full_disk_is_one_message(fake_mediapipe, monkeypatch, tmp_path, capsys):
  def no_space(*_):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

  monkeypatch.setattr(extract_pose, "_write_atomic", no_space)
  video = _moving_square(tmp_path / "square.mp4", frames=4)
  assert extract_pose.main(["--video", str(video), "--out", str(tmp_path / "out"), "--no_progress"]) == 1
  assert capsys.readouterr().err == (f"disk full: [Errno 28] No space left on device\nFree space under "
                                     f"--out={tmp_path / 'out'} and run the same command again: frames already "
                                     "written are kept.\n")


@pytest.mark.slow
def test_extraction_killed_and_rerun_equals_an_uninterrupted_one(pose_python, videos, tmp_path):
  video = videos[0]
  done = _extract(pose_python, "--video", video, "--out", tmp_path / "whole")
  assert done.returncode == 0, done.stderr[-3000:]
  expected = _files(tmp_path / "whole" / video.stem)
  folder = tmp_path / "killed" / video.stem
  proc = subprocess.Popen([str(pose_python), *COMMAND, "--no_progress", "--video", str(video), "--out",
                           str(tmp_path / "killed")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          cwd=REPO_ROOT)
  try:
    deadline = time.monotonic() + 300
    while len(list(folder.glob("*_keypoints.json"))) < 15 and proc.poll() is None and time.monotonic() < deadline:
      time.sleep(0.05)
  finally:
    proc.send_signal(signal.SIGKILL)
    proc.wait()
  written = len(list(folder.glob("*_keypoints.json")))
  assert 15 <= written < len(expected), written  # killed in the middle
  again = _extract(pose_python, "--video", video, "--out", tmp_path / "killed")
  assert again.returncode == 0 and json.loads(again.stdout.splitlines()[-1])["skipped_existing"] == written
  assert _files(folder) == expected
