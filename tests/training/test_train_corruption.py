"""Training under failing pose (config.train_corruption, robust fusion): what each clip gets, that it is seeded by
(seed, step, clip), that level 0 is plain training bit for bit, and that a stopped run resumes to the same params."""

import jax
import numpy as np
import pytest

import training_stand_ins as stand_ins
from clipmg_jax.data import pose_corruption
from clipmg_jax.training import checkpointing
from clipmg_jax.training import defaults
from clipmg_jax.training import trainer

ON = {"train_corruption.pose_dropout": 0.3, "train_corruption.probability": 0.5}


def _corruption(**values):
  config = pose_corruption.train_config()
  config.update(values)
  return config


def _batch(n=16, seed=0):
  rng = np.random.default_rng(seed)
  keypoints = rng.uniform(1, 100, (n, 8, 18, 3)).astype(np.float32)
  keypoints[..., 2] = rng.uniform(0.5, 1.0, (n, 8, 18))
  return {"keypoints": keypoints, "clip_id": np.arange(n, dtype=np.int32) + 7, "label": np.zeros(n, np.int32)}


def test_off_passes_the_batch_through():
  batch = _batch()
  assert pose_corruption.corrupt_training_batch(batch, pose_corruption.train_config(), seed=0, step=3) is batch
  assert pose_corruption.corrupt_training_batch(batch, None, seed=0, step=3) is batch


def test_level_zero_keeps_every_value():
  batch = _batch()
  out = pose_corruption.corrupt_training_batch(batch, _corruption(probability=1.0, max_level=0.0), seed=0, step=1)
  np.testing.assert_array_equal(out["keypoints"], batch["keypoints"])


def test_dropout_and_corruption_per_clip():
  batch = _batch(n=64)
  out = pose_corruption.corrupt_training_batch(batch, _corruption(pose_dropout=1.0), seed=0, step=1)
  assert not out["keypoints"].any()  # nobody detected in any clip
  out = pose_corruption.corrupt_training_batch(batch, _corruption(pose_dropout=0.25, probability=0.5), seed=0,
                                               step=1)
  kept = [np.array_equal(a, b) for a, b in zip(out["keypoints"], batch["keypoints"])]
  dropped = [not a.any() for a in out["keypoints"]]
  # About 1/4 dropped, about 3/8 corrupted, about 3/8 untouched (64 clips: loose bounds).
  assert 6 <= sum(dropped) <= 28 and 10 <= sum(kept) <= 40 and sum(dropped) + sum(kept) < 64
  np.testing.assert_array_equal(batch["keypoints"], _batch(n=64)["keypoints"])  # the input is not changed


def test_seeded_by_seed_step_and_clip():
  batch = _batch()
  corruption = _corruption(pose_dropout=0.2, probability=0.8)
  run = lambda seed, step, b=batch: pose_corruption.corrupt_training_batch(b, corruption, seed=seed, step=step)
  np.testing.assert_array_equal(run(0, 5)["keypoints"], run(0, 5)["keypoints"])
  assert not np.array_equal(run(0, 5)["keypoints"], run(0, 6)["keypoints"])
  assert not np.array_equal(run(0, 5)["keypoints"], run(1, 5)["keypoints"])
  # A clip gets the same keypoints wherever it sits in the batch and whatever else is in it.
  reversed_batch = {k: v[::-1] for k, v in batch.items()}
  np.testing.assert_array_equal(run(0, 5)["keypoints"][::-1], run(0, 5, reversed_batch)["keypoints"])
  half = {k: v[:5] for k, v in batch.items()}
  np.testing.assert_array_equal(run(0, 5)["keypoints"][:5], run(0, 5, half)["keypoints"])


@pytest.mark.parametrize("field,value", [("pose_dropout", 1.5), ("probability", -0.1), ("max_level", 2.0),
                                         ("jitter_px", -1.0), ("kinds", "drop,blur")])
def test_bad_settings_are_named(field, value):
  config = stand_ins.tiny_config(**{f"train_corruption.{field}": value})
  with pytest.raises(ValueError, match=f"train_corruption.{field}|blur"):
    trainer.Setup(config, stand_ins.tiny_data(), stand_ins.tiny_model())


def _final_params(workdir):
  ckpt = checkpointing.Checkpointer(workdir / "checkpoints")
  step = ckpt.latest_step()
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
  restored = ocp.StandardCheckpointer().restore(ckpt.directory / str(step) / "state")
  ckpt.close()
  return step, restored["params"]


def _train(workdir, **overrides):
  return trainer.train_and_evaluate(stand_ins.tiny_config(**overrides), workdir, stand_ins.tiny_data(),
                                    stand_ins.tiny_model())


def _leaves(params):
  return [np.asarray(x) for x in jax.tree.leaves(params)]


def test_level_zero_training_is_plain_training_and_corruption_changes_it(tmp_path):
  _train(tmp_path / "plain")
  _train(tmp_path / "zero", **{"train_corruption.probability": 1.0, "train_corruption.max_level": 0.0})
  _train(tmp_path / "on", **ON)
  plain, zero, on = (_leaves(_final_params(tmp_path / name)[1]) for name in ("plain", "zero", "on"))
  for a, b in zip(plain, zero):
    np.testing.assert_array_equal(a, b)  # bit for bit
  assert any(not np.array_equal(a, b) for a, b in zip(plain, on))  # the corruption reached the steps


def test_stopped_run_resumes_exactly_with_training_corruption(tmp_path):
  _train(tmp_path / "whole", **ON)
  assert _train(tmp_path / "resumed", stop_after_step=5, **ON) == {}
  assert checkpointing.Checkpointer(tmp_path / "resumed" / "checkpoints").latest_step() == 4
  _train(tmp_path / "resumed", **ON)
  step_a, whole = _final_params(tmp_path / "whole")
  step_b, resumed = _final_params(tmp_path / "resumed")
  assert step_a == step_b == 6
  for a, b in zip(_leaves(whole), _leaves(resumed)):
    np.testing.assert_array_equal(a, b)


def test_off_in_every_shipped_config():
  """Training corruption is an option: neither the paper's config nor `+robust` turns it on."""
  from configs import imigue  # pylint: disable=import-outside-toplevel
  from configs import synthetic  # pylint: disable=import-outside-toplevel
  for config in (imigue.get_config(), imigue.get_config("full+robust"), synthetic.get_config("full+extras+robust")):
    assert not pose_corruption.training_is_on(config.train_corruption)
  assert defaults.base_config().train_corruption.to_dict() == pose_corruption.train_config().to_dict()
