"""Pose monitoring: the gate, patch-weight entropy and empty windows that evaluation reports, from the values the
model's forward pass used."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from clipmg_jax.models import clipmg
from clipmg_jax.models import pose_guidance
from clipmg_jax.models import vit
from clipmg_jax.training import evaluation
from clipmg_jax.training import pose_monitoring
from clipmg_jax.training import sharding
from clipmg_jax.training import step as step_lib
from clipmg_jax.figures import results as result_figures


def test_per_window_entropy_is_normalised_to_the_uniform_one():
  uniform = jnp.full((1, 2, 4), 0.25)
  one_hot = jnp.asarray([[[1.0, 0, 0, 0], [0.5, 0.5, 0, 0]]])
  out = pose_monitoring.per_window({"patch_weights": (jnp.concatenate([uniform, one_hot]),),
                                    "reliability": (jnp.zeros((2, 2)),), "gate_values": (jnp.ones((2, 2)),)})
  np.testing.assert_allclose(np.asarray(out["patch_entropy"]), [[1.0, 1.0], [0.0, 0.5]], atol=1e-6)
  assert set(out) == {"patch_entropy", "reliability", "gate"}
  assert pose_monitoring.per_window({}) == {}  # models that sow nothing (visual_only, pose_only)


def test_summary_by_hand():
  predictions = {
      "label": np.array([0, 0, 1]),
      "gate": np.array([[0.1, 0.3], [0.5, 0.7], [0.97, 0.02]]),
      "reliability": np.array([[0.0, 0.2], [0.4, 0.6], [0.0, 0.0]]),
      "patch_entropy": np.array([[1.0, 0.4], [0.6, 0.2], [1.0, 1.0]]),
  }
  s = pose_monitoring.summarize(predictions, ["a", "b", "c"])
  assert s["windows"] == 6 and s["no_valid_joint_fraction"] == pytest.approx(3 / 6)
  gate = s["gate"]
  assert gate["mean"] == pytest.approx(2.59 / 6)
  assert gate["per_class"] == {"a": pytest.approx(0.4), "b": pytest.approx(0.495), "c": None}
  assert gate["mean_by_frame"] == pytest.approx([1.57 / 3, 1.02 / 3])
  assert gate["mean_no_valid_joint"] == pytest.approx((0.1 + 0.97 + 0.02) / 3)
  assert gate["histogram"]["counts"][0] == 1 and gate["histogram"]["counts"][19] == 1  # 0.02 and 0.97
  assert sum(gate["histogram"]["counts"]) == 6 and len(gate["histogram"]["edges"]) == 21
  assert s["patch_entropy"]["mean_with_valid_joint"] == pytest.approx((0.4 + 0.6 + 0.2) / 3)
  assert pose_monitoring.scalars(s) == {"no_valid_joint_fraction": pytest.approx(0.5),
                                        "gate_mean": gate["mean"], "patch_entropy": s["patch_entropy"]["mean"]}
  assert pose_monitoring.summarize({"label": np.array([0])}, ["a"]) is None


def test_evaluation_reports_the_models_own_gate(tmp_path):
  """Through the real eval step: eval.json's gate statistics are those of the gate the model computed (at
  initialisation g = sigmoid(a r + b)), windows without a valid joint are counted, and the histogram is drawn."""
  config = clipmg.get_model_config(
      "tiny", trainable_blocks=1, num_frames=2, num_pose_frames=8, num_classes=3, heatmap=dict(resolution=16),
      skeleton=dict(features=(4, 8, 8), depths=(1, 1, 1), embed_dim=8, num_groups=4), head=dict(hidden_dim=8))
  model = clipmg.ClipMG(config)
  rng = np.random.default_rng(0)
  n, size = 6, 32
  keypoints = np.concatenate([rng.uniform(0, size - 1, (n, 8, 18, 2)), rng.uniform(0.3, 1, (n, 8, 18, 1))], -1)
  keypoints[0] = 0.0  # a clip without any detected joint: both of its windows are empty
  batch = {"frames": rng.integers(0, 255, (n, 2, size, size, 3)).astype(np.uint8),
           "keypoints": keypoints.astype(np.float32), "label": np.array([0, 1, 2, 0, 1, 2], np.int32),
           "subject": np.zeros(n, np.int32), "clip_id": np.arange(n, dtype=np.int32)}
  params = model.init(jax.random.key(0), jnp.zeros((1, 2, size, size, 3)), jnp.zeros((1, 8, 18, 3)))["params"]
  mesh = sharding.make_mesh(1)
  eval_step = step_lib.make_eval_step(model, mesh=mesh, params_sharding=sharding.replicated(mesh),
                                       normalize=vit.normalize_images)
  predictions = evaluation.predict(params, eval_step, [batch], mesh, 8, progress=False)
  result = evaluation.compute_metrics(predictions, ["x", "y", "z"])

  r = np.asarray(pose_guidance.window_reliability(jnp.asarray(batch["keypoints"]), (size, size), 2))
  g = np.asarray(jax.nn.sigmoid(params["gate"]["confidence_scale"] * r + params["gate"]["bias"]))
  monitoring = result["pose_monitoring"]
  assert monitoring["windows"] == 12 and monitoring["no_valid_joint_fraction"] == pytest.approx(2 / 12)
  assert monitoring["gate"]["mean"] == pytest.approx(g.mean(), abs=1e-6)
  assert monitoring["gate"]["per_class"]["x"] == pytest.approx(g[[0, 3]].mean(), abs=1e-6)
  assert monitoring["gate"]["mean_no_valid_joint"] == pytest.approx(float(jax.nn.sigmoid(-2.0)), abs=1e-6)
  assert 0 < monitoring["patch_entropy"]["mean_with_valid_joint"] < 1
  assert evaluation.scalars(result)["gate_mean"] == pytest.approx(g.mean(), abs=1e-6)

  evaluation.write_results(result, tmp_path, extra={"split": "test"}, plots=result_figures.write_evaluation_plots)
  written = json.loads((tmp_path / "eval.json").read_text())
  assert written["pose_monitoring"]["gate"]["histogram"]["counts"] == monitoring["gate"]["histogram"]["counts"]
  assert (tmp_path / "gate_histogram.png").stat().st_size > 0
