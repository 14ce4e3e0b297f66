"""Checkpoint/resume exactness, retention, and the non-finite-loss stop, with the in-memory stand-ins."""

import json

import jax
import numpy as np
import pytest

import training_stand_ins as stand_ins
from clipmg_jax.training import checkpointing
from clipmg_jax.training import trainer
from clipmg_jax.figures import results as result_figures


def _final_params(workdir):
  ckpt = checkpointing.Checkpointer(workdir / "checkpoints")
  step = ckpt.latest_step()
  path = ckpt.directory / str(step) / "state"
  ckpt.close()
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
  restored = ocp.StandardCheckpointer().restore(path)
  return step, restored["params"]


def test_interrupted_run_resumes_to_identical_params(tmp_path):
  config = stand_ins.tiny_config()
  full = trainer.train_and_evaluate(config, tmp_path / "full", stand_ins.tiny_data(), stand_ins.tiny_model(),
                                    plots=result_figures.write_evaluation_plots)
  # Preempted after step 5: the last checkpoint is step 4, so the restart redoes step 5 from the saved iterator.
  stopped = trainer.train_and_evaluate(stand_ins.tiny_config(stop_after_step=5), tmp_path / "resumed",
                                       stand_ins.tiny_data(), stand_ins.tiny_model())
  assert stopped == {}
  assert checkpointing.Checkpointer(tmp_path / "resumed" / "checkpoints").latest_step() == 4
  resumed = trainer.train_and_evaluate(config, tmp_path / "resumed", stand_ins.tiny_data(), stand_ins.tiny_model())
  step_a, params_a = _final_params(tmp_path / "full")
  step_b, params_b = _final_params(tmp_path / "resumed")
  assert step_a == step_b == 6
  for a, b in zip(jax.tree.leaves(params_a), jax.tree.leaves(params_b)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6, rtol=0)
  assert resumed["top1"] == pytest.approx(full["top1"])
  # The frozen part of the stand-in never moved while the head did.
  _, params_0 = _final_params(tmp_path / "full")
  eval_json = json.loads((tmp_path / "full" / "eval.json").read_text())
  for key in ("top1", "top5", "mean_class_accuracy", "macro_f1", "num_examples", "per_class", "per_subject",
              "confusion"):
    assert key in eval_json
  assert eval_json["num_examples"] == 20  # the partial last eval batch was padded, then unpadded
  assert (tmp_path / "full" / "confusion.png").stat().st_size > 0
  lines = [json.loads(l) for l in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
  assert [l["step"] for l in lines if l["split"] == "train"] == [1, 2, 3, 4, 5, 6]


def test_keeps_last_k_and_best_and_restores_iterator(tmp_path):
  ckpt = checkpointing.Checkpointer(tmp_path, keep_last=2, keep_best=1)
  it = stand_ins.tiny_data().train_iterator()
  top1 = {1: 0.1, 2: 0.9, 3: 0.3, 4: 0.2, 5: 0.4, 6: None}
  for step, acc in top1.items():
    next(it)
    state = {"w": np.full((3,), step, np.float32)}
    ckpt.save(step, state, it, metrics=None if acc is None else {"top1": acc})
  assert sorted(ckpt.all_steps()) == [2, 5, 6]  # best (2) + last two
  assert ckpt.best_step() == 2
  expected_next = next(it)
  fresh = stand_ins.tiny_data().train_iterator()
  abstract = {"w": jax.ShapeDtypeStruct((3,), np.float32)}
  restored = ckpt.restore(abstract, fresh)
  assert float(restored["w"][0]) == 6.0
  got_next = next(fresh)
  for key in expected_next:
    np.testing.assert_array_equal(got_next[key], expected_next[key])
  ckpt.close()


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
  config = stand_ins.tiny_config(total_steps=6)
  with pytest.raises(trainer.NonFiniteLossError, match="loss is nan at step 5.*last good checkpoint is step 4"):
    trainer.train_and_evaluate(config, tmp_path, stand_ins.tiny_data(poison_step=5), stand_ins.tiny_model())
  ckpt = checkpointing.Checkpointer(tmp_path / "checkpoints")
  assert ckpt.latest_step() == 4
  _, params = _final_params(tmp_path)
  assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(params))


def test_train_all_params_overrides_the_models_frozen_partition():
  frozen = trainer.Setup(stand_ins.tiny_config(), stand_ins.tiny_data(), stand_ins.tiny_model())
  everything = trainer.Setup(stand_ins.tiny_config(train_all_params=True), stand_ins.tiny_data(),
                             stand_ins.tiny_model())
  assert not all(jax.tree.leaves(frozen.trainable))
  assert all(jax.tree.leaves(everything.trainable))
  # Frozen leaves carry no optimizer state; with everything trainable, every leaf has Adam moments.
  n_state = lambda s: sum(int(np.prod(x.shape)) for x in jax.tree.leaves(s.abstract_state.opt_state))
  assert n_state(everything) > n_state(frozen)
