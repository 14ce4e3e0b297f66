"""The conversion on Apache Beam (DirectRunner) against the local converter: the same records in the same order and
sharding, manifests that agree, the same skipped clips with the same reasons, on the synthetic dataset (with a
corrupt video and a corrupt skeleton file among its raw files) and on the real iMiGUE skeletons."""

import dataclasses
import json
import os
import pathlib
import random
import subprocess
import sys

import numpy as np
import pytest

beam = pytest.importorskip("apache_beam", reason="Apache Beam is not installed (pip install -e '.[beam]')")

from clipmg_jax.data import synthetic  # pylint: disable=wrong-import-position
from clipmg_jax.data.records import beam_convert  # pylint: disable=wrong-import-position
from clipmg_jax.data.records import clip_record  # pylint: disable=wrong-import-position
from clipmg_jax.data.records import convert  # pylint: disable=wrong-import-position
from clipmg_jax.data.records import example_codec  # pylint: disable=wrong-import-position
from clipmg_jax.data.records import layouts  # pylint: disable=wrong-import-position
from clipmg_jax.data.records import manifest as manifest_lib  # pylint: disable=wrong-import-position
from clipmg_jax.data.records import tfrecord  # pylint: disable=wrong-import-position

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
# Shards cut across videos (a video's clips in two shards, a shard with clips of several videos).
OPTIONS = clip_record.ConvertOptions(clips_per_shard=7, max_stored_frames=6, short_side=96)


def _shards_records(out_dir: pathlib.Path) -> dict[str, list[example_codec.ClipRecord]]:
  """Every shard's decoded records in file order, by shard path, as the manifest lists the shards."""
  manifest = manifest_lib.read(out_dir)
  return {entry["path"]: [example_codec.decode(data) for _, data in tfrecord.iter_records(out_dir / entry["path"])]
          for split in manifest["splits"].values() for entry in split["shards"]}


def assert_same_conversion(beam_dir: pathlib.Path, local_dir: pathlib.Path, beam_manifest: dict,
                           local_manifest: dict) -> None:
  """Record by record (decoded), then the files byte for byte, then the manifests (skips and reasons included)."""
  beam_records, local_records = _shards_records(beam_dir), _shards_records(local_dir)
  assert list(beam_records) == list(local_records), "different shards"
  for name, expected in local_records.items():
    got = beam_records[name]
    assert [r.clip_id for r in got] == [r.clip_id for r in expected], f"{name}: clips missing or out of order"
    for mine, theirs in zip(got, expected):
      for field in dataclasses.fields(example_codec.ClipRecord):
        a, b = getattr(mine, field.name), getattr(theirs, field.name)
        if isinstance(b, np.ndarray):
          np.testing.assert_array_equal(a, b, err_msg=f"{name} clip {theirs.clip_id}: {field.name}")
        else:
          assert a == b, f"{name} clip {theirs.clip_id}: {field.name} differs"
    for suffix in ("", ".index"):
      assert (beam_dir / (name + suffix)).read_bytes() == (local_dir / (name + suffix)).read_bytes(), name + suffix
  assert beam_manifest["skipped"] == local_manifest["skipped"]
  assert beam_manifest == local_manifest
  assert manifest_lib.read(beam_dir) == json.loads(json.dumps(beam_manifest))  # as written (tuples as lists)


@pytest.fixture(scope="module")
def damaged_synthetic(tmp_path_factory) -> pathlib.Path:
  """The tiny synthetic dataset with one video replaced by garbage and one skeleton file cut short."""
  root = tmp_path_factory.mktemp("synthetic_damaged")
  synthetic.generate(root, preset="tiny", seed=0, workers=1, progress=False)
  videos = sorted((root / "videos").glob("*.mp4"))
  videos[1].write_bytes(b"not a video" * 100)
  skeleton = sorted((root / "skeleton" / videos[2].stem).glob("*_keypoints.json"))[10]
  skeleton.write_text(skeleton.read_text()[:40])
  return root


@pytest.mark.slow
def test_beam_equals_local_on_synthetic_with_corrupt_files(damaged_synthetic, tmp_path):
  local = convert.convert(damaged_synthetic, tmp_path / "local", options=OPTIONS, progress=False)
  assert local["skipped_by_kind"].get(layouts.SKIP_READ_ERROR, 0) >= 2  # the garbage video's clips, the cut file's
  assert any("InvalidData" in s["reason"] or "Invalid data" in s["reason"] for s in local["skipped"])
  assert any(s["kind"] == layouts.SKIP_READ_ERROR and "_keypoints.json" in s["reason"] for s in local["skipped"])
  # Two worker processes: every work item crosses a process boundary, as on a distributed runner.
  got = beam_convert.convert_beam(damaged_synthetic, tmp_path / "beam", options=OPTIONS, pipeline_args=[
      "--runner=DirectRunner", "--direct_num_workers=2", "--direct_running_mode=multi_processing"])
  assert_same_conversion(tmp_path / "beam", tmp_path / "local", got, local)
  # Run again: every shard is reused, nothing is converted, the manifest is the same.
  again = beam_convert.convert_beam(damaged_synthetic, tmp_path / "beam", options=OPTIONS)
  assert again == local


def test_real_imigue_skeletons_beam_cli_equals_local(imigue_shared, tmp_path):
  """The command with --runner beam on the real annotation table and OpenPose sample (skeleton-only: 3 clips kept,
  18,495 skipped with their reasons)."""
  args = ["--raw_root", str(imigue_shared), "--labels_csv", str(imigue_shared / "labels_20200831.csv"),
          "--skeleton_dir", str(imigue_shared / "skeleton_sample"), "--clips_per_shard", "2"]
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
  script = str(REPO_ROOT / "data_prep" / "convert.py")
  done = subprocess.run([sys.executable, script, *args, "--out_dir", str(tmp_path / "beam"), "--runner", "beam"],
                        env=env, check=True, capture_output=True, text=True)
  assert "skipped 18495" in done.stdout
  local = convert.convert(imigue_shared, tmp_path / "local", labels_csv=imigue_shared / "labels_20200831.csv",
                          skeleton_dir=imigue_shared / "skeleton_sample",
                          options=clip_record.ConvertOptions(clips_per_shard=2), progress=False)
  assert local["splits"]["train"]["num_clips"] == 3
  assert_same_conversion(tmp_path / "beam", tmp_path / "local", manifest_lib.read(tmp_path / "beam"),
                         json.loads(json.dumps(local)))


def test_shard_order_restored_and_a_lost_clip_fails(tmp_path):
  """Results reach a shard's writer in any order: it writes them in the shard's clip order, and a shard missing a
  clip's result is an error naming the shard, never a shorter shard."""
  clips = tuple(layouts.ClipTask(split="train", video_id=str(v), label_id=i, clip_id=v * 100000 + i, label=i,
                                 subject=1, start_frame=0, end_frame=3, layout="imigue", skeleton="")
                for v in (1, 2) for i in (1, 2, 3))
  task = convert.ShardTask(out_dir=str(tmp_path), split="train", name="train-00000-of-00001.tfrecord", clips=clips,
                           options=OPTIONS)
  (tmp_path / convert.PROGRESS_DIR).mkdir()
  values = [(position, [f"line {position}\n"], convert.ClipResult(clip.clip_id, clip.label, b"%d" % clip.clip_id, {
      "missing_frames": 0})) for position, clip in enumerate(clips)]
  shuffled = values + [None]
  random.Random(0).shuffle(shuffled)
  summary = beam_convert.write_shard((task.name, shuffled), {task.name: task})
  assert [data for _, data in tfrecord.iter_records(tmp_path / task.name)] == [b"%d" % c.clip_id for c in clips]
  assert summary["inputs"] == convert.inputs_digest([f"line {p}\n" for p in range(len(clips))])
  with pytest.raises(ValueError, match=task.name):
    beam_convert.write_shard((task.name, shuffled[:3] + shuffled[4:]), {task.name: task})


def test_one_work_item_per_video():
  clips = [layouts.ClipTask(split="train", video_id=v, label_id=i, clip_id=i, label=0, subject=1, start_frame=0,
                            end_frame=3, layout="imigue", skeleton="s", video=f"{v}.mp4")
           for i, v in enumerate(["a", "a", "a", "b", "b", "c"])]
  shards = convert.plan_shards({"train": clips}, "out", dataclasses.replace(OPTIONS, clips_per_shard=4))
  items = beam_convert.video_items(shards)
  assert [[(name[:11], pos, c.video_id) for name, pos, c in item.clips] for item in items] == [
      [("train-00000", 0, "a"), ("train-00000", 1, "a"), ("train-00000", 2, "a")],
      [("train-00000", 3, "b"), ("train-00001", 0, "b")], [("train-00001", 1, "c")]]
