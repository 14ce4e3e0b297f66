"""The Grain pipeline: batch contract, determinism, exact resume in a fresh process, sharding, eval coverage,
augmentation geometry (crop and flip on painted pixels), short clips, corrupt shards."""

import io
import json
import pathlib
import subprocess
import sys
import textwrap

import jax.numpy as jnp
import numpy as np
from PIL import Image
import pytest

from clipmg_jax.data import keypoints as kp
from clipmg_jax.data import sampling
from clipmg_jax.data.loader import augment
from clipmg_jax.data.loader import batch as batch_lib
from clipmg_jax.data.loader import pipeline
from clipmg_jax.data.records import example_codec
from clipmg_jax.data.records import manifest as manifest_lib
from clipmg_jax.data.records import random_shards
from clipmg_jax.data.records import tfrecord
from clipmg_jax.training import evaluation
from clipmg_jax.training import sharding

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
  """22 train + 11 test random clips with small frames (decoding stays cheap), 3 shards per split."""
  out = tmp_path_factory.mktemp("shards")
  return random_shards.write_random_shards(out, splits={"train": 22, "test": 11}, clips_per_shard=8, height=36,
                                           width=64, max_stored=6)


def _config(shards_dir, **overrides):
  config = pipeline.get_data_config()
  config.shards_dir = str(shards_dir)
  config.batch_size = 4
  config.worker_count = 0
  config.update(overrides)
  return config


def _take(config, split="train", n=3, **kwargs):
  it = iter(pipeline.make_dataset(config, split, **kwargs))
  try:
    return [next(it) for _ in range(n)]
  finally:
    _close(it)


def _close(it):
  """Stops Grain worker processes now rather than at garbage collection."""
  if hasattr(it, "close"):
    it.close()


def _assert_batches_equal(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert sorted(x) == sorted(y)
    for key in x:
      np.testing.assert_array_equal(x[key], y[key], err_msg=key)


def test_batch_contract(shards):
  config = _config(shards)
  assert (config.num_frames, config.num_pose_frames, config.image_size) == (8, 32, 224)
  batch = _take(config, n=1)[0]
  expected = {"frames": ((4, 8, 224, 224, 3), np.uint8), "keypoints": ((4, 32, 18, 3), np.float32),
              "label": ((4,), np.int32), "subject": ((4,), np.int32), "clip_id": ((4,), np.int32),
              "mask": ((4,), np.bool_)}
  assert {k: (v.shape, v.dtype) for k, v in batch.items()} == expected
  assert batch["mask"].all() and batch["frames"].max() > 0
  conf = batch["keypoints"][..., 2]
  assert ((conf >= 0) & (conf <= 1)).all()
  assert (batch["keypoints"][..., :2][conf == 0] == 0).all()  # Missing joints are (0, 0, 0).


def test_determinism(shards):
  config = _config(shards)
  first, again = _take(config, seed=7), _take(config, seed=7)
  _assert_batches_equal(first, again)
  other = _take(config, seed=8)
  assert not all(np.array_equal(a["clip_id"], b["clip_id"]) and np.array_equal(a["frames"], b["frames"])
                 for a, b in zip(first, other))


def test_training_epochs_are_global_shuffles(shards):
  config = _config(shards, batch_size=2, image_size=16)
  batches = _take(config, n=22)  # Two epochs of 22 clips.
  ids = np.concatenate([b["clip_id"] for b in batches])
  assert sorted(ids[:22]) == sorted(ids[22:]) and len(set(ids[:22])) == 22
  assert not np.array_equal(ids[:22], ids[22:])  # Reshuffled each epoch.
  # Global: the first batches mix clips from different shards (shard = 8 consecutive clips).
  source = pipeline.make_source(config, "train")
  shard_of = {example_codec.decode(source[i]).clip_id: i // 8 for i in range(len(source))}
  assert len({shard_of[c] for c in ids[:8]}) > 1


def test_worker_processes_give_the_same_batches(shards):
  config = _config(shards, image_size=32)
  in_process = _take(config, n=4)
  config.worker_count = 2
  _assert_batches_equal(in_process, _take(config, n=4))


_RESUME_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    from clipmg_jax.data.loader import pipeline
    config = pipeline.get_data_config()
    config.update(json.loads(sys.argv[1]))
    it = iter(pipeline.make_dataset(config, "train", seed=3))
    it.set_state(json.loads(open(sys.argv[2]).read()))
    batches = [next(it) for _ in range(3)]
    np.savez(sys.argv[3], **{f"{i}/{k}": v for i, b in enumerate(batches) for k, v in b.items()})
    """)


@pytest.mark.slow
def test_exact_resume_in_a_fresh_process(shards, tmp_path):
  overrides = dict(shards_dir=str(shards), batch_size=4, worker_count=2, image_size=32)
  config = _config(**overrides)
  it = iter(pipeline.make_dataset(config, "train", seed=3))
  uninterrupted = [next(it) for _ in range(8)]  # Crosses the epoch boundary (22 clips = 5.5 batches).
  _close(it)
  it = iter(pipeline.make_dataset(config, "train", seed=3))
  for _ in range(5):
    next(it)
  state_file = tmp_path / "state.json"
  state_file.write_text(json.dumps(it.get_state()))
  _close(it)
  out = tmp_path / "resumed.npz"
  subprocess.run([sys.executable, "-c", _RESUME_SCRIPT, json.dumps(overrides), str(state_file), str(out)],
                 check=True, cwd=REPO_ROOT, env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"},
                 timeout=300)
  saved = np.load(out)
  resumed = [{k: saved[f"{i}/{k}"] for k in uninterrupted[0]} for i in range(3)]
  _assert_batches_equal(uninterrupted[5:], resumed)


def test_process_sharding_is_disjoint(shards):
  config = _config(shards, batch_size=4, image_size=16)
  # 22 clips, 2 processes x 2 clips per batch: 5 full global batches per epoch cover 20 distinct clips.
  parts = [_take(config, n=5, process_index=p, process_count=2) for p in range(2)]
  ids = [np.concatenate([b["clip_id"] for b in part]) for part in parts]
  assert all(b["clip_id"].shape == (2,) for part in parts for b in part)
  assert not set(ids[0]) & set(ids[1]) and len(set(ids[0]) | set(ids[1])) == 20


@pytest.mark.parametrize("process_count", [1, 2])
def test_evaluation_sees_every_clip_once(shards, process_count):
  config = _config(shards, batch_size=4, image_size=16)
  source = pipeline.make_source(config, "test")
  expected = sorted(example_codec.decode(source[i]).clip_id for i in range(len(source)))
  seen, counts = [], []
  for p in range(process_count):
    batches = list(pipeline.make_dataset(config, "test", process_index=p, process_count=process_count))
    counts.append(len(batches))
    for b in batches:
      assert b["frames"].shape[0] == 4 // process_count
      seen.extend(b["clip_id"][b["mask"]].tolist())
      assert (b["clip_id"][~b["mask"]] == -1).all()
  assert sorted(seen) == expected
  assert len(set(counts)) == 1 and counts[0] == pipeline.num_eval_batches(config, "test") == 3


def test_evaluation_is_deterministic_and_unaugmented(shards):
  config = _config(shards, image_size=32)
  a, b = list(pipeline.make_dataset(config, "test")), list(pipeline.make_dataset(config, "test", seed=99))
  _assert_batches_equal(a, b)


# --- Geometry: a keypoint on a painted pixel stays on it through crop, resize and flip. ---------------------------

_PAINTED = {2: (255, 0, 0), 5: (0, 0, 255), 4: (255, 255, 0), 7: (0, 255, 255), 0: (255, 0, 255)}  # joint: RGB


def _painted_record(height=120, width=200, num_frames=40):
  """A record whose frames are grey with a 9x9 blob of a distinct colour at each of five joints."""
  rng = np.random.default_rng(0)
  keypoints = np.zeros((num_frames, kp.NUM_JOINTS, 3), np.float32)
  frame = np.full((height, width, 3), 128, np.uint8)
  for joint, colour in _PAINTED.items():
    x, y = int(rng.integers(30, width - 30)), int(rng.integers(30, height - 30))
    frame[y - 4:y + 5, x - 4:x + 5] = colour
    keypoints[:, joint] = (x, y, 0.9)
  buf = io.BytesIO()
  Image.fromarray(frame).save(buf, format="JPEG", quality=95)
  indices = sampling.presample_indices(num_frames, 8)
  return example_codec.encode(example_codec.ClipRecord(
      video_id="5", clip_id=500001, label_id=1, label=3, subject=2, start_frame=0, frame_height=height,
      frame_width=width, video_height=height, video_width=width, keypoints=keypoints,
      frames=[buf.getvalue()] * len(indices), frame_indices=indices))


def _colour_at(frame, x, y):
  return frame[int(round(y)), int(round(x))].astype(int)


@pytest.mark.parametrize("train", [True, False])
def test_crop_and_flip_keep_keypoints_on_their_pixels(train):
  config = _config("unused", image_size=64)
  decoder = pipeline.ClipDecoder(config, None, train=train)
  record = _painted_record()
  flips = set()
  for seed in range(12 if train else 1):
    out = decoder.decode(record, np.random.default_rng(seed) if train else None)
    frame, points = out["frames"][0], out["keypoints"][0]
    matches = {"plain": 0, "flipped": 0}
    checked = 0
    for joint in _PAINTED:
      x, y, conf = points[joint]
      assert conf == pytest.approx(0.9)
      if not (1 <= x <= 62 and 1 <= y <= 62):
        continue  # Cropped away: coordinates are kept, nothing to look at.
      checked += 1
      colour = _colour_at(frame, x, y)
      # Unflipped, joint j sits on its own colour; flipped, on the colour of its mirror twin (a mirrored person's
      # right wrist is what was the left wrist).
      twin = int(kp.flip_permutation()[joint])
      matches["plain"] += np.abs(colour - _PAINTED[joint]).max() < 60
      matches["flipped"] += np.abs(colour - _PAINTED.get(twin, (-999,) * 3)).max() < 60
    assert checked >= 2
    kind = "plain" if matches["plain"] == checked else "flipped" if matches["flipped"] == checked else None
    assert kind is not None, (seed, matches, checked)
    flips.add(kind)
  if train:
    assert flips == {"plain", "flipped"}


def test_flip_swaps_left_and_right_by_name():
  rng = np.random.default_rng(0)
  points = rng.uniform(0, 50, (3, kp.NUM_JOINTS, 3)).astype(np.float32)
  flipped = augment.flip_keypoints(points, width=64)
  for j, name in enumerate(kp.COCO18_NAMES):
    twin = name.replace("left", "@").replace("right", "left").replace("@", "right")
    source = kp.COCO18_NAMES.index(twin)
    np.testing.assert_allclose(flipped[:, j, 0], 63 - points[:, source, 0], rtol=1e-6)
    np.testing.assert_allclose(flipped[:, j, 1:], points[:, source, 1:])
  np.testing.assert_allclose(augment.flip_keypoints(flipped, 64), points, atol=1e-5)


def test_centre_crop_is_resize_then_crop():
  # Short side 120 -> 64, then the centred 64x64: keypoint at the image centre stays at the crop centre.
  box = augment.center_crop_box(120, 200)
  assert box == (40.0, 0.0, 120.0, 120.0)
  points = np.array([[[99.5, 59.5, 1.0], [40.0 - 0.5, -0.5, 1.0]]], np.float32)
  np.testing.assert_allclose(augment.crop_keypoints(points, box, 64)[0, :, :2], [[31.5, 31.5], [-0.5, -0.5]])


# --- Sampling rules. ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("length,n", [(40, 8), (16, 8), (5, 8), (1, 32), (33, 32), (100, 32)])
def test_segment_sampling(length, n):
  centres = sampling.segment_indices(length, n)
  assert centres.shape == (n,) and (np.diff(centres) >= 0).all() and centres.min() >= 0 and centres.max() < length
  rng = np.random.default_rng(0)
  for _ in range(20):
    drawn = sampling.segment_indices(length, n, rng)
    lo = np.arange(n) * length // n
    hi = np.maximum((np.arange(n) + 1) * length // n, lo + 1)
    assert ((drawn >= np.minimum(lo, length - 1)) & (drawn < hi)).all() and drawn.max() < length
  if length >= n:
    assert len(set(centres.tolist())) == n  # No repeats when the clip is long enough.


def test_short_clips_repeat_frames():
  rng = np.random.default_rng(0)
  record = random_shards.random_record(rng, video_id=1, label_id=1, num_frames=3, height=20, width=30)
  config = _config("unused", image_size=16)
  out = pipeline.ClipDecoder(config, None, train=False).decode(record, None)
  decoded = example_codec.decode(record)
  pose = sampling.segment_indices(3, 32)
  assert pose.tolist() == sorted(pose.tolist()) and set(pose.tolist()) == {0, 1, 2}
  expected = augment.crop_keypoints(decoded.keypoints[pose], augment.center_crop_box(20, 30), 16)
  np.testing.assert_allclose(out["keypoints"], kp.zero_missing(expected), rtol=1e-6)
  rgb = sampling.segment_indices(3, 8)
  for i in range(8):
    np.testing.assert_array_equal(out["frames"][i], out["frames"][list(rgb).index(rgb[i])])


def test_skeleton_only_records(tmp_path):
  shards_dir = random_shards.write_random_shards(tmp_path, splits={"train": 4, "test": 3}, with_frames=False)
  batch = _take(_config(shards_dir, image_size=32), n=1)[0]
  assert (batch["frames"] == 0).all() and batch["mask"].all() and (batch["keypoints"][..., 2] > 0).any()


# --- Corrupt shards. ---------------------------------------------------------------------------------------------


def test_corrupt_record_names_file_and_offset_or_is_skipped(tmp_path):
  shards_dir = random_shards.write_random_shards(tmp_path, splits={"train": 6, "test": 5}, height=20, width=30)
  manifest = manifest_lib.read(shards_dir)
  path = shards_dir / manifest["splits"]["test"]["shards"][0]["path"]
  index = tfrecord.read_index(tfrecord.index_path(path))
  data = bytearray(path.read_bytes())
  data[int(index[2, 0]) + tfrecord.HEADER_BYTES + 20] ^= 0xFF
  path.write_bytes(bytes(data))
  config = _config(shards_dir, image_size=16, batch_size=2)
  with pytest.raises(tfrecord.CorruptRecordError, match=f"{path}: corrupt TFRecord at byte offset {index[2, 0]}"):
    list(pipeline.make_dataset(config, "test"))
  config.skip_corrupt = True
  batches = list(pipeline.make_dataset(config, "test"))
  mask = np.concatenate([b["mask"] for b in batches])
  assert len(mask) == 6 and mask.sum() == 4 and not mask[2]  # 5 clips + 1 padding; record 2 masked out.
  clip_ids = np.concatenate([b["clip_id"] for b in batches])
  assert clip_ids[2] == batch_lib.SKIPPED_CLIP_ID and clip_ids[5] != batch_lib.SKIPPED_CLIP_ID  # skipped vs padding

  # Evaluation counts the record it left out, and eval.json / the summary line say so.
  mesh = sharding.make_mesh()
  eval_step = lambda params, batch: jnp.zeros((batch["label"].shape[0], 32), jnp.float32)
  predictions = evaluation.predict(None, eval_step, iter(batches), mesh, batch_size=2, progress=False)
  assert len(predictions["label"]) == 4 and int(predictions["skipped_records"]) == 1
  result = evaluation.compute_metrics(predictions, [f"class {c}" for c in range(32)])
  assert result["skipped_records"] == 1 and result["num_examples"] == 4
  assert "[1 unreadable records left out]" in evaluation.summary_line(result)
  intact = pipeline.make_dataset(_config(shards_dir, image_size=16, batch_size=2), "train", train=False)
  clean = evaluation.predict(None, eval_step, intact, mesh, batch_size=2, progress=False)
  assert int(clean["skipped_records"]) == 0


def test_reduced_jpeg_decoding_matches_full_decoding():
  # A crop at least twice the output is decoded at 1/2..1/8 scale in the DCT domain; the result must match a full
  # decode + resize of the same box (up to resampling differences).
  rng = np.random.default_rng(0)
  image = random_shards.random_frame(rng, 480, 640)
  jpeg = random_shards.encode_jpeg(image, quality=95)
  for box in [(0.0, 0.0, 640.0, 480.0), (100.0, 50.0, 300.0, 300.0), (33.3, 21.7, 150.0, 160.0)]:
    fast = augment.decode_crop_resize(jpeg, box, 64).astype(np.float32)
    x0, y0, w, h = box
    full = Image.open(io.BytesIO(jpeg)).resize((64, 64), Image.BILINEAR, box=(x0, y0, x0 + w, y0 + h))
    assert np.abs(fast - np.asarray(full, np.float32)).mean() < 4, box
