"""Pose that fails at evaluation time (clipmg_jax/data/pose_corruption.py): what each kind does to the
keypoints, that a clip's corruption depends on the clip alone, that 0 % is the plain evaluation bit for bit, and
that with every joint dropped a pose-only model can no longer tell clips apart."""

import jax
import ml_collections
import jax.numpy as jnp
import numpy as np
import pytest

from clipmg_jax.data import pose_corruption
from clipmg_jax.models import clipmg
from clipmg_jax.models import vit
from clipmg_jax.training import evaluation
from clipmg_jax.training import setup as setup_lib
from clipmg_jax.training import sharding
from clipmg_jax.training import step as step_lib
from tests.training import training_stand_ins as stand_ins


def _config(level, kinds="drop,jitter,confidence,frames", jitter_px=8.0, seed=0):
  cfg = pose_corruption.default_config()
  cfg.update(dict(level=level, kinds=kinds, jitter_px=jitter_px, seed=seed))
  return cfg


def _keypoints(n=4, frames=32, seed=0):
  rng = np.random.default_rng(seed)
  kp = np.concatenate([rng.uniform(0, 111, (n, frames, 18, 2)), rng.uniform(0.2, 1.0, (n, frames, 18, 1))], -1)
  kp[:, :, 10:14] = 0.0  # never detected (stored as the converter stores a miss)
  kp[:, :, 9, 2] = 0.0  # undetected, with coordinates left in place
  return kp.astype(np.float32)


def _batch(keypoints, first_id=100):
  return {"keypoints": keypoints, "clip_id": np.arange(first_id, first_id + len(keypoints), dtype=np.int32)}


def test_level_zero_keeps_every_value():
  kp = _keypoints()
  kp[0, 0, 0, 0] = np.nan  # even odd values pass through untouched
  for kinds in ("drop,jitter,confidence,frames", "jitter"):
    out = pose_corruption.corrupt_clip(kp[0], 7, 0.0, pose_corruption.parse_kinds(kinds), 8.0, 0)
    np.testing.assert_array_equal(out, kp[0])
  batch = _batch(kp)
  assert pose_corruption.corrupt_batch(batch, _config(0.0)) is batch


def test_each_kind_does_what_it_says():
  kp = _keypoints(n=1)[0]
  detected = kp[..., 2] > 0
  drop = pose_corruption.corrupt_clip(kp, 3, 0.5, ("drop",), 8.0, 0)
  lost = np.all(drop == 0, axis=-1) & detected
  assert 0.4 < lost.sum() / detected.sum() < 0.6  # about half of the detected joints
  np.testing.assert_array_equal(drop[~lost & detected], kp[~lost & detected])  # the others untouched

  conf = pose_corruption.corrupt_clip(kp, 3, 0.75, ("confidence",), 8.0, 0)
  np.testing.assert_allclose(conf[..., 2], kp[..., 2] * 0.25, rtol=1e-6)
  np.testing.assert_array_equal(conf[..., :2], kp[..., :2])

  jit = pose_corruption.corrupt_clip(kp, 3, 0.5, ("jitter",), 8.0, 0)
  moved = jit[..., :2] - kp[..., :2]
  assert np.all(moved[~detected] == 0)  # undetected joints stay where they are
  assert np.std(moved[detected]) == pytest.approx(4.0, rel=0.1)  # 0.5 * 8 px
  np.testing.assert_array_equal(jit[..., 2], kp[..., 2])

  frames = pose_corruption.corrupt_clip(kp, 3, 0.5, ("frames",), 8.0, 0)
  gone = np.all(frames == 0, axis=(1, 2))
  assert 0 < gone.sum() < len(kp)
  np.testing.assert_array_equal(frames[~gone], kp[~gone])  # whole frames, never parts of one

  for kinds in ("drop", "frames", "drop,jitter,confidence,frames"):
    everything = pose_corruption.corrupt_clip(kp, 3, 1.0, pose_corruption.parse_kinds(kinds), 8.0, 0)
    assert not np.any(everything[..., 2] > 0)


def test_a_clips_corruption_depends_on_the_clip_and_seed_alone():
  kp = _keypoints(n=6)
  cfg = _config(0.5)
  whole = pose_corruption.corrupt_batch(_batch(kp), cfg)["keypoints"]
  # The same clips in another order and batch size: each clip gets the same corrupted keypoints.
  order = np.array([4, 1, 5])
  part = pose_corruption.corrupt_batch({"keypoints": kp[order], "clip_id": np.arange(100, 106)[order]}, cfg)
  np.testing.assert_array_equal(part["keypoints"], whole[order])
  # The joints lost under "drop" are the same with the other kinds on (each kind draws its own numbers).
  only_drop = pose_corruption.corrupt_batch(_batch(kp), _config(0.5, "drop"))["keypoints"]
  with_jitter = pose_corruption.corrupt_batch(_batch(kp), _config(0.5, "drop,jitter"))["keypoints"]
  np.testing.assert_array_equal(only_drop[..., 2] > 0, with_jitter[..., 2] > 0)
  other_seed = pose_corruption.corrupt_batch(_batch(kp), _config(0.5, seed=1))["keypoints"]
  assert not np.array_equal(other_seed, whole)


@pytest.mark.parametrize("field,value", [("level", 1.5), ("level", -0.1), ("jitter_px", -1.0), ("kinds", "blur")])
def test_bad_settings_are_named(field, value):
  cfg = _config(0.5)
  cfg[field] = value
  with pytest.raises(ValueError, match=f"eval_corruption.{field}"):
    list(pose_corruption.corrupted([_batch(_keypoints(n=1))], cfg))


def test_zero_corruption_is_the_plain_evaluation_bit_for_bit():
  """Through Setup.evaluate and the real eval step: level 0 changes no logit, no metric."""
  config = stand_ins.tiny_config()
  setup = setup_lib.Setup(config, stand_ins.tiny_data(), stand_ins.tiny_model())
  params = setup.fresh_state().params
  plain = setup.evaluate(params, progress=False)
  zero = setup.evaluate(params, progress=False, corruption=_config(0.0))
  assert zero == plain
  half = setup.evaluate(params, progress=False, corruption=_config(0.5))
  assert half["per_class"] != plain["per_class"] or half["top1"] != plain["top1"]  # the option does act


def test_every_joint_dropped_leaves_pose_only_one_answer():
  config = clipmg.get_model_config(
      "tiny", variant="pose_only", num_frames=2, num_pose_frames=8, num_classes=5, heatmap=dict(resolution=16),
      skeleton=dict(features=(4, 8, 8), depths=(1, 1, 1), embed_dim=8, num_groups=4), head=dict(hidden_dim=8))
  model = clipmg.ClipMG(config)
  size, n = 32, 6
  rng = np.random.default_rng(1)
  keypoints = np.concatenate([rng.uniform(0, size - 1, (n, 8, 18, 2)), rng.uniform(0.3, 1, (n, 8, 18, 1))], -1)
  batch = {"frames": rng.integers(0, 255, (n, 2, size, size, 3)).astype(np.uint8),
           "keypoints": keypoints.astype(np.float32), "label": np.arange(n, dtype=np.int32) % 5,
           "subject": np.zeros(n, np.int32), "clip_id": np.arange(n, dtype=np.int32)}
  params = model.init(jax.random.key(0), jnp.zeros((1, 2, size, size, 3)), jnp.zeros((1, 8, 18, 3)))["params"]
  mesh = sharding.make_mesh(1)
  eval_step = step_lib.make_eval_step(model, mesh=mesh, params_sharding=sharding.replicated(mesh),
                                       normalize=vit.normalize_images)
  plain = evaluation.predict(params, eval_step, [batch], mesh, 8, progress=False)["logits"]
  assert np.ptp(plain, axis=0).max() > 1e-4  # the clips' own keypoints do tell them apart
  dropped = pose_corruption.corrupted([batch], _config(1.0, "drop"))
  logits = evaluation.predict(params, eval_step, dropped, mesh, 8, progress=False)["logits"]
  np.testing.assert_array_equal(logits, np.broadcast_to(logits[0], logits.shape))


def test_corrupted_evaluations_of_two_kinds_at_one_level_get_files_of_their_own():
  every = pose_corruption.describe(ml_collections.ConfigDict(dict(level=1.0, kinds=",".join(pose_corruption.KINDS),
                                                                  jitter_px=8.0, seed=0)))
  jitter = dict(every, kinds=["jitter"])
  drop_frames = dict(every, kinds=["drop", "frames"])
  assert pose_corruption.results_suffix(every) == "_pose100"  # every kind: the name it always had
  assert pose_corruption.results_suffix(jitter) == "_pose100_jitter"
  assert pose_corruption.results_suffix(drop_frames) == "_pose100_drop-frames"
  assert pose_corruption.results_suffix(None) == ""
