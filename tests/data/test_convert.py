"""Conversion of raw datasets into shards: the real skeleton sample (skeleton-only, counted skips), the synthetic
dataset with video, the MiGA layout, parallel = serial, and resuming an interrupted conversion."""

import csv
import io
import json
import os
import pathlib
import subprocess
import sys

import grain
import numpy as np
from PIL import Image
import pytest

from clipmg_jax.data import sampling
from clipmg_jax.data import synthetic
from clipmg_jax.data.loader import shard_source
from clipmg_jax.data.raw import imigue
from clipmg_jax.data.raw import video as video_io
from clipmg_jax.data.records import clip_record
from clipmg_jax.data.records import convert
from clipmg_jax.data.records import example_codec
from clipmg_jax.data.records import layouts
from clipmg_jax.data.records import manifest as manifest_lib
from clipmg_jax.data.records import tfrecord

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
_BODY25_TO_COCO18 = [0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18]  # From the dataset README.


def _records(out_dir, split):
  manifest = manifest_lib.read(out_dir)
  records = []
  for shard in manifest["splits"][split]["shards"]:
    records += [example_codec.decode(d) for _, d in tfrecord.iter_records(pathlib.Path(out_dir) / shard["path"])]
  return records


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
  root = tmp_path_factory.mktemp("synthetic")
  synthetic.generate(root, preset="tiny", seed=0, workers=1, progress=False)
  return root


# --- The real shared sample: skeleton-only, almost everything skipped with a reason. ---------------------------


def test_real_skeleton_sample(imigue_shared, tmp_path):
  manifest = convert.convert(imigue_shared, tmp_path, labels_csv=imigue_shared / "labels_20200831.csv",
                             skeleton_dir=imigue_shared / "skeleton_sample", progress=False)
  with open(imigue_shared / "labels_20200831.csv", newline="") as f:
    rows = list(csv.DictReader(f))
  assert manifest["splits"]["train"]["num_clips"] == 3 and manifest["splits"]["test"]["num_clips"] == 0
  assert manifest["num_skipped"] + 3 == len(rows) == 18498
  assert all(s["reason"] and s["kind"] for s in manifest["skipped"])
  # Video 298 has OpenPose files around clips 2, 5 and 55 only; every other clip of it has no skeleton frame.
  rows_298 = [r for r in rows if r["video_id"] == "298"]
  assert manifest["skipped_by_kind"][layouts.SKIP_NO_SKELETON_FRAMES] == len(rows_298) - 3
  assert manifest["skipped_by_kind"][layouts.SKIP_NO_SKELETON_FOLDER] == len(rows) - len(rows_298)
  assert manifest["skeleton_report"]["multi_person_frames"] == 4  # 19415, 19417, 19420, 19448.
  per_class = manifest["splits"]["train"]["per_class"]
  assert per_class[7] == per_class[10] == per_class[30] == 1 and sum(per_class) == 3  # C8, C11, C31.

  records = {r.label_id: r for r in _records(tmp_path, "train")}
  assert sorted(records) == [2, 5, 55]
  clip = records[5]
  assert (clip.clip_id, clip.subject, clip.label, clip.start_frame, clip.num_frames) == (29800005, 22, 30, 1976, 34)
  assert (clip.frame_height, clip.frame_width, clip.video_height, clip.video_width) == (256, 455, 720, 1280)
  assert clip.frames == [] and len(clip.frame_indices) == 0
  # Keypoints against the JSON read here independently, mapped to the 455x256 frame (pixel centres).
  for t in (0, 17, 33):
    path = imigue_shared / "skeleton_sample" / "298" / f"298_{1976 + t:012d}_keypoints.json"
    people = json.loads(path.read_text())["people"]
    assert len(people) == 1
    body = np.array(people[0]["pose_keypoints_2d"], np.float32).reshape(25, 3)[_BODY25_TO_COCO18]
    expected = body.copy()
    expected[:, 0] = (body[:, 0] + 0.5) * 455 / 1280 - 0.5
    expected[:, 1] = (body[:, 1] + 0.5) * 256 / 720 - 0.5
    expected[body[:, 2] == 0, :2] = 0
    np.testing.assert_allclose(clip.keypoints[t], expected, atol=1e-3)


def test_release_layout_from_raw_root_alone(imigue_shared, tmp_path):
  """The public release as downloaded (Label/labels_20200831.csv, Data/skeleton/raw/<video>/) needs --raw_root only;
  the CLI says which layout it found and the manifest records it."""
  root = tmp_path / "iMiGUE"
  (root / "Label").mkdir(parents=True)
  (root / "Label" / "labels_20200831.csv").symlink_to(imigue_shared / "labels_20200831.csv")
  (root / "Data" / "skeleton" / "raw").mkdir(parents=True)
  (root / "Data" / "skeleton" / "raw" / "298").symlink_to(imigue_shared / "skeleton_sample" / "298")
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
  done = subprocess.run([sys.executable, str(REPO_ROOT / "data_prep" / "convert.py"), "--raw_root", str(root),
                         "--out_dir", str(tmp_path / "out"), "--num_workers", "0"],
                        env=env, check=True, capture_output=True, text=True)
  assert "raw layout: release" in done.stderr and "raw layout: release" in done.stdout
  manifest = manifest_lib.read(tmp_path / "out")
  assert manifest["source"]["raw_layout"] == "release"
  assert manifest["source"]["skeleton_dir"] == str(root / "Data" / "skeleton" / "raw")
  assert manifest["splits"]["train"]["num_clips"] == 3 and manifest["num_skipped"] == 18495
  assert manifest["split"]["train_subjects"] == sorted(imigue.TRAIN_SUBJECTS)
  table = shard_source.record_table(tmp_path / "out", "train")  # video 298 is subject 22's
  assert table["subject"].tolist() == [22, 22, 22] and sorted(table["label"].tolist()) == [7, 10, 30]
  with pytest.raises(convert.RawDataError, match=r"Label/labels_20200831\.csv.*labels\.csv"):
    convert.convert(tmp_path / "empty", tmp_path / "out2", progress=False)


# --- Synthetic dataset with video. -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic_shards(synthetic_root, tmp_path_factory):
  out = tmp_path_factory.mktemp("synthetic_shards")
  options = clip_record.ConvertOptions(clips_per_shard=20, max_stored_frames=6, short_side=96)
  manifest = convert.convert(synthetic_root, out, options=options, num_workers=0, progress=False)
  return out, manifest


def test_synthetic_counts(synthetic_root, synthetic_shards):
  out, manifest = synthetic_shards
  clips = imigue.read_labels(synthetic_root / "labels.csv")
  train, test = imigue.load_split(synthetic_root)
  assert manifest["num_skipped"] == 0
  assert manifest["source"]["raw_layout"] == "flat"
  assert manifest["splits"]["train"]["num_clips"] == len(imigue.split_clips(clips, train))
  assert manifest["splits"]["test"]["num_clips"] == len(imigue.split_clips(clips, test))
  for split, subjects in (("train", train), ("test", test)):
    expected = np.bincount([c.label for c in imigue.split_clips(clips, subjects)], minlength=32)
    np.testing.assert_array_equal(manifest["splits"][split]["per_class"], expected)
    paths = shard_source.find_shards(out, split)
    source = shard_source.ShardSource(paths)
    assert len(source) == manifest["splits"][split]["num_clips"]
    # The manifest's per-record subjects and labels are those of the records, in record order.
    metas = [example_codec.decode_metadata(example_codec.parse(source[i])) for i in range(len(source))]
    table = shard_source.record_table(out, split)
    assert table["subject"].tolist() == [m["subject"] for m in metas]
    assert table["label"].tolist() == [m["label"] for m in metas]
    # An independent reader (Grain's) sees the same records.
    assert [r for p in paths for r in grain.experimental.TFRecordIterDataset(str(p))] == [
        source[i] for i in range(len(source))]


def test_synthetic_record_content(synthetic_root, synthetic_shards):
  out, _ = synthetic_shards
  clips = {c.clip_id: c for c in imigue.read_labels(synthetic_root / "labels.csv")}
  record = _records(out, "test")[3]
  clip = clips[record.clip_id]
  assert (record.label, record.subject, record.start_frame) == (clip.label, clip.subject, clip.start_frame)
  video_path = synthetic_root / "videos" / f"{clip.video_id}.mp4"
  info = video_io.video_info(video_path)
  src_hw = (info["height"], info["width"])
  assert (record.video_height, record.video_width) == src_hw
  assert min(record.frame_height, record.frame_width) == 96
  assert record.frame_width == round(src_hw[1] * 96 / src_hw[0])
  np.testing.assert_array_equal(record.frame_indices, sampling.presample_indices(clip.num_frames, 6))
  # Stored JPEGs are the video frames, resized.
  raw = video_io.read_video_frames(video_path, clip.start_frame + record.frame_indices)
  for jpeg, frame in zip(record.frames, raw):
    stored = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"), np.float32)
    reference = np.asarray(Image.fromarray(frame).resize((record.frame_width, record.frame_height), Image.BILINEAR),
                           np.float32)
    assert stored.shape == (record.frame_height, record.frame_width, 3)
    assert np.abs(stored - reference).mean() < 4
  # Keypoints: the OpenPose reader's, scaled to the stored frame.
  keypoints, _ = imigue.read_openpose_clip(synthetic_root / "skeleton", clip.video_id, clip.start_frame,
                                           clip.end_frame)
  scaled = clip_record.scale_keypoints(keypoints, src_hw, (record.frame_height, record.frame_width))
  np.testing.assert_allclose(record.keypoints, scaled)
  visible = keypoints[..., 2] > 0
  sx = record.frame_width / src_hw[1]
  np.testing.assert_allclose(record.keypoints[..., 0][visible], (keypoints[..., 0][visible] + 0.5) * sx - 0.5,
                             rtol=1e-5)


@pytest.mark.slow
def test_parallel_conversion_equals_serial(synthetic_root, synthetic_shards, tmp_path):
  out, manifest = synthetic_shards
  parallel = convert.convert(synthetic_root, tmp_path, options=clip_record.ConvertOptions(
      clips_per_shard=20, max_stored_frames=6, short_side=96), num_workers=2, progress=False)
  assert parallel == manifest
  for entry in manifest["splits"]["train"]["shards"] + manifest["splits"]["test"]["shards"]:
    assert (tmp_path / entry["path"]).read_bytes() == (out / entry["path"]).read_bytes()
    assert (tmp_path / entry["index"]).read_bytes() == (out / entry["index"]).read_bytes()


# --- Resuming. -------------------------------------------------------------------------------------------------


def test_interrupted_conversion_resumes(synthetic_root, synthetic_shards, tmp_path, monkeypatch):
  reference_dir, reference = synthetic_shards
  options = clip_record.ConvertOptions(clips_per_shard=20, max_stored_frames=6, short_side=96)
  real = convert.convert_shard
  calls = []

  died = []

  def dies_on_third_shard(task):
    calls.append(task.name)
    if len(calls) == 3 and not died:
      died.append(task.name)
      (tmp_path / f"{task.name}.tmp999").write_bytes(b"half a shard")  # What a killed writer leaves behind.
      raise KeyboardInterrupt
    return real(task)

  monkeypatch.setattr(convert, "convert_shard", dies_on_third_shard)
  with pytest.raises(KeyboardInterrupt):
    convert.convert(synthetic_root, tmp_path, options=options, progress=False)
  assert not (tmp_path / manifest_lib.FILENAME).exists()
  finished = calls[:2]
  mtimes = {name: (tmp_path / name).stat().st_mtime_ns for name in finished}

  calls.clear()
  manifest = convert.convert(synthetic_root, tmp_path, options=options, progress=False)
  all_shards = [s["path"] for split in reference["splits"].values() for s in split["shards"]]
  assert sorted(calls) == sorted(set(all_shards) - set(finished))  # Finished shards are not redone.
  assert {name: (tmp_path / name).stat().st_mtime_ns for name in finished} == mtimes
  assert not list(tmp_path.glob("*.tmp*"))
  assert manifest == reference
  for name in all_shards:
    assert (tmp_path / name).read_bytes() == (reference_dir / name).read_bytes()

  # Other options: nothing finished can be reused.
  calls.clear()
  convert.convert(synthetic_root, tmp_path, options=clip_record.ConvertOptions(clips_per_shard=20, max_stored_frames=5,
                                                                           short_side=96), progress=False)
  assert sorted(calls) == sorted(all_shards)


# --- MiGA layout. ----------------------------------------------------------------------------------------------


def test_miga_layout(tmp_path):
  rng = np.random.default_rng(0)
  sample = tmp_path / "raw" / "train" / "0007"
  sample.mkdir(parents=True)
  frames = np.arange(0, 30)
  joints = rng.uniform(1, 600, (30, 35, 3))
  joints[..., 2] = rng.uniform(0.1, 1, (30, 35))
  with open(sample / "0007_light_hand.csv", "w") as f:
    for t, row in zip(frames, joints):
      f.write(",".join([str(t)] + [f"{v:.3f}" for v in row.reshape(-1)]) + "\n")
  (sample / "0007_label.csv").write_text("gestureID,start,end\n5,3,12\n99,20,29\n")
  manifest = convert.convert(tmp_path / "raw", tmp_path / "out", layout="miga", progress=False)
  assert manifest["splits"]["train"]["num_clips"] == 2 and manifest["num_skipped"] == 0
  first, second = _records(tmp_path / "out", "train")
  assert (first.clip_id, first.label, first.num_frames, first.subject) == (700001, 4, 10, -1)
  assert (second.clip_id, second.label) == (700002, 31)
  expected = np.round(joints[3:13, _BODY25_TO_COCO18], 3).astype(np.float32)
  np.testing.assert_allclose(first.keypoints, clip_record.scale_keypoints(expected, (720, 1280), (256, 455)),
                             rtol=1e-5, atol=1e-3)


def test_cli_help_and_run(imigue_shared, tmp_path):
  script = REPO_ROOT / "data_prep" / "convert.py"
  help_text = subprocess.run([sys.executable, str(script), "--help"], check=True, capture_output=True,
                             text=True).stdout
  assert "--skeleton_only" in help_text and "--num_workers" in help_text and "manifest.json" in help_text
  done = subprocess.run([sys.executable, str(script), "--raw_root", str(imigue_shared), "--labels_csv",
                         str(imigue_shared / "labels_20200831.csv"), "--skeleton_dir",
                         str(imigue_shared / "skeleton_sample"), "--out_dir", str(tmp_path), "--num_workers", "0"],
                        check=True, capture_output=True, text=True)
  assert "skipped 18495" in done.stdout
  assert manifest_lib.read(tmp_path)["splits"]["train"]["num_clips"] == 3


# --- The stored frames of a video's clips decoded together are those of each clip decoded alone. ---------------


def test_frames_by_video_equal_each_clip_alone(synthetic_root, synthetic_shards, tmp_path, monkeypatch):
  """The converter decodes the stored frames of a shard's clips of one video in one pass (FramesByVideo); the
  shards are byte for byte those of decoding each clip alone (clip_record.decode_frames, one seek per clip)."""
  out, manifest = synthetic_shards
  monkeypatch.setattr(clip_record, "FramesByVideo", lambda clips, options: clip_record.decode_frames)
  alone = convert.convert(synthetic_root, tmp_path, options=clip_record.ConvertOptions(
      clips_per_shard=20, max_stored_frames=6, short_side=96), progress=False)
  assert alone == manifest
  for entry in manifest["splits"]["train"]["shards"] + manifest["splits"]["test"]["shards"]:
    assert (tmp_path / entry["path"]).read_bytes() == (out / entry["path"]).read_bytes(), entry["path"]


def test_iter_frames_at_seeks_across_gaps(synthetic_root):
  """Frames reached by a seek or by decoding on through a gap are the same frames."""
  video = sorted((synthetic_root / "videos").glob("*.mp4"))[0]
  wanted = [3, 4, 60, 61, 200, 7]
  assert video_io.frame_runs(wanted, max_gap=30) == [(3, 7), (60, 61), (200, 200)]
  seeking = {i: f.to_ndarray(format="rgb24") for i, f in video_io.iter_frames_at(video, wanted, max_gap=30)}
  on = {i: f.to_ndarray(format="rgb24") for i, f in video_io.iter_frames_at(video, wanted, max_gap=10**6)}
  assert sorted(seeking) == sorted(on) == [3, 4, 7, 60, 61, 200]
  for i in seeking:
    np.testing.assert_array_equal(seeking[i], on[i])
    np.testing.assert_array_equal(seeking[i], video_io.read_video_frames(video, [i])[0])
