"""The converter on damaged raw data: a repaired file is re-converted on the next run (only its shard), keypoint
anomalies (NaN/Inf/null values, clips without any person, non-numeric values) are counted or skipped with a reason
naming the file; a full disk (a real small file system where one can be mounted) and a labels table that cannot be
read end the command in one message, and the rerun after freeing space is exact."""

import errno
import importlib.util
import json
import logging
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import small_disk as small_disk_lib
from clipmg_jax.data.raw import openpose
from clipmg_jax.data.records import clip_record
from clipmg_jax.data.records import convert
from clipmg_jax.data.records import example_codec
from clipmg_jax.data.records import layouts
from clipmg_jax.data.records import manifest as manifest_lib
from clipmg_jax.data.records import shard_writer
from clipmg_jax.data.records import tfrecord

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]

# (video, subject, label_id, class (1-based), start, end): one clip per shard below.
CLIPS = [("1", 1, 1, 3, 0, 4), ("1", 1, 2, 5, 5, 9), ("2", 2, 1, 7, 0, 4)]


def _person(t: int, scale: float = 1.0) -> dict:
  joints = np.stack([np.linspace(10, 60, 18) + t, np.linspace(20, 80, 18), np.full(18, 0.9)], -1) * [scale, 1, 1]
  return {"pose_keypoints_2d": [float(v) for v in joints.reshape(-1)]}


def _write_frame(root: pathlib.Path, video: str, frame: int, people) -> pathlib.Path:
  path = root / "skeleton" / video / openpose.frame_filename(video, frame)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(people if isinstance(people, str) else json.dumps({"version": 1.3, "people": people}))
  return path


def _raw_root(tmp_path: pathlib.Path) -> pathlib.Path:
  """A flat-layout, skeleton-only raw dataset: subject 1 trains, subject 2 tests."""
  root = tmp_path / "raw"
  root.mkdir()
  rows = ["video_id,label_id,start_frame,end_frame,class,subject_id"]
  for video, subject, label_id, cls, start, end in CLIPS:
    rows.append(f"{video},{label_id},{start},{end},{cls},{subject}")
    for frame in range(start, end + 1):
      _write_frame(root, video, frame, [_person(frame)])
  (root / "labels.csv").write_text("\n".join(rows) + "\n")
  (root / "split.json").write_text(json.dumps({"train_subjects": [1], "test_subjects": [2]}))
  return root


def _convert(root, out):
  return convert.convert(root, out, options=clip_record.ConvertOptions(clips_per_shard=1, skeleton_only=True),
                         progress=False)


def _label_ids(out, split):
  manifest = manifest_lib.read(out)
  return sorted(example_codec.decode(d).label_id for shard in manifest["splits"][split]["shards"]
                for _, d in tfrecord.iter_records(pathlib.Path(out) / shard["path"]))


def test_repaired_raw_file_is_reconverted_and_only_its_shard(tmp_path, caplog):
  root = _raw_root(tmp_path)
  good = _write_frame(root, "1", 7, [_person(7)]).read_text()
  _write_frame(root, "1", 7, '{"people": [{"pose_keypoints_2d": [1, 2')  # truncated JSON
  out = tmp_path / "shards"
  first = _convert(root, out)
  assert _label_ids(out, "train") == [1] and first["skipped_by_kind"] == {layouts.SKIP_READ_ERROR: 1}
  assert "1_000000000007_keypoints.json" in first["skipped"][0]["reason"]
  progress = {p.name: p.stat().st_mtime_ns for p in (out / convert.PROGRESS_DIR).iterdir()}

  _write_frame(root, "1", 7, good)  # repaired
  with caplog.at_level(logging.INFO):
    second = _convert(root, out)
  assert _label_ids(out, "train") == [1, 2] and second["num_skipped"] == 0
  assert "2 of 3 shards reused, 1 to convert (1 raw files changed)" in caplog.text
  changed = [n for n, t in progress.items() if (out / convert.PROGRESS_DIR / n).stat().st_mtime_ns != t]
  assert changed == ["train-00001-of-00002.tfrecord.json"]


def test_keypoint_anomalies_are_counted_or_skipped_with_reasons(tmp_path):
  root = _raw_root(tmp_path)
  person = _person(1)
  person["pose_keypoints_2d"][0] = None  # JSON null: a NaN
  _write_frame(root, "1", 1, json.dumps({"people": [person]}).replace("0.9]", "NaN]", 1))
  for frame in range(5, 10):  # clip 2 of video 1: no one in any frame
    _write_frame(root, "1", frame, [])
  bad = _write_frame(root, "2", 3, json.dumps({"people": [dict(pose_keypoints_2d=["x"] * 54)]}))
  out = tmp_path / "shards"
  manifest = _convert(root, out)
  assert manifest["skeleton_report"]["nonfinite_frames"] == 1
  assert manifest["skeleton_report"]["clips_with_nonfinite_keypoints"] == 1
  kinds = {(s["video_id"], s["label_id"]): s for s in manifest["skipped"]}
  assert kinds[("1", 2)]["kind"] == layouts.SKIP_NO_PERSON
  assert kinds[("2", 1)]["kind"] == layouts.SKIP_READ_ERROR and str(bad) in kinds[("2", 1)]["reason"]
  shard = manifest["splits"]["train"]["shards"][0]["path"]
  (_, data), = list(tfrecord.iter_records(out / shard))
  record = example_codec.decode(data)
  assert np.isfinite(record.keypoints).all()
  assert record.keypoints[1, 0, 2] == 0 and record.keypoints[1, 0, 0] == 0  # the null joint was zeroed


def test_joints_far_outside_the_frame_are_dropped_and_counted(tmp_path):
  """A joint at 3e38 (a broken estimate) becomes missed and is counted; one just outside the frame is kept."""
  root = _raw_root(tmp_path)
  person = _person(2)
  person["pose_keypoints_2d"][0:2] = [3e38, -3e38]  # joint 0: far away
  person["pose_keypoints_2d"][3:5] = [-5.0, 30.0]  # joint 1: 5 px left of the frame
  _write_frame(root, "1", 2, [person])
  out = tmp_path / "shards"
  manifest = _convert(root, out)
  assert manifest["skeleton_report"]["off_frame_joints"] == 1
  shard = manifest["splits"]["train"]["shards"][0]["path"]
  (_, data), = list(tfrecord.iter_records(out / shard))
  record = example_codec.decode(data)
  assert record.keypoints[2, 0].tolist() == [0.0, 0.0, 0.0] and record.keypoints[2, 1, 2] > 0


def test_a_split_left_empty_by_skipped_clips_is_refused_before_training(tmp_path):
  root = _raw_root(tmp_path)
  for frame in range(0, 5):  # video 2 holds the only test clip: no one in any frame
    _write_frame(root, "2", frame, [])
  out = tmp_path / "shards"
  manifest = _convert(root, out)
  assert manifest["splits"]["test"]["num_clips"] == 0 and len(manifest["skipped"]) == 1
  with pytest.raises(manifest_lib.DataSetupError, match="split 'test' of .* has no clip"):
    manifest_lib.check_splits(out, manifest, ("train", "test"))


@pytest.fixture
def small_disk(tmp_path):
  """A 256 KiB file system, nearly filled by <disk>/filler (tmpfs: needs root; skipped where it cannot be
  mounted), unmounted after the test."""
  disk = tmp_path / "disk"
  if not small_disk_lib.mount(disk, "256k"):
    pytest.skip("cannot mount a small tmpfs here (needs root): the in-process ENOSPC test covers the message")
  try:
    (disk / "filler").write_bytes(b"\0" * (256 - 16) * 1024)  # 16 KiB left: the first shard or two fit
    yield disk
  finally:
    small_disk_lib.unmount(disk)


def _convert_command(root, out, *extra):
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
  return subprocess.run([sys.executable, str(REPO_ROOT / "data_prep" / "convert.py"), "--raw_root", str(root),
                         "--out_dir", str(out), "--clips_per_shard", "1", "--skeleton_only", *extra],
                        env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_full_disk_is_one_message_and_the_rerun_after_freeing_space_is_exact(tmp_path, small_disk):
  root = _raw_root(tmp_path)
  reference = _convert(root, tmp_path / "reference")
  out = small_disk / "shards"
  full = _convert_command(root, out, "--num_workers", "2")
  assert full.returncode == 1 and "Traceback" not in full.stderr, full.stderr[-3000:]
  assert f"disk full: [Errno 28] No space left on device\nFree space under --out_dir={out} and run the same " \
         "command again: finished shards are kept." in full.stderr
  (small_disk / "filler").unlink()
  again = _convert_command(root, out, "--num_workers", "2")
  assert again.returncode == 0, again.stderr[-3000:]
  names = sorted(p.name for p in (tmp_path / "reference").glob("*.tfrecord*"))
  assert names == sorted(p.name for p in out.glob("*.tfrecord*")) and len(names) == 6
  for name in names:
    assert (out / name).read_bytes() == (tmp_path / "reference" / name).read_bytes(), name
  assert manifest_lib.read(out)["splits"] == reference["splits"]


def test_full_disk_and_bad_labels_are_one_message_in_process(tmp_path, monkeypatch, capsys):
  # Where no small file system can be mounted: the writer's ENOSPC, as the OS raises it, through the command.
  spec = importlib.util.spec_from_file_location("convert_command", REPO_ROOT / "data_prep" / "convert.py")
  command = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(command)
  root = _raw_root(tmp_path)

  def no_space(*_):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

  monkeypatch.setattr(shard_writer, "write_shard", no_space)
  argv = ["--raw_root", str(root), "--out_dir", str(tmp_path / "out"), "--num_workers", "0", "--skeleton_only"]
  with pytest.raises(SystemExit) as exited:
    command.main(argv)
  assert str(exited.value) == (f"disk full: [Errno 28] No space left on device\nFree space under "
                               f"--out_dir={tmp_path / 'out'} and run the same command again: finished shards are "
                               "kept.")
  (root / "labels.csv").write_text("video_id,label_id,start_frame,end_frame,subject_id\n1,1,0,4,1\n")
  with pytest.raises(SystemExit) as exited:
    command.main(argv)
  assert str(exited.value) == f"RawDataError: {root / 'labels.csv'}: header lacks column(s) ['class']; found " \
                              "['video_id', 'label_id', 'start_frame', 'end_frame', 'subject_id']"
