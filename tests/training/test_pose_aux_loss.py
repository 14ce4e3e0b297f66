"""The train step's loss with the auxiliary pose head: main loss + weight x the pose head's loss, both checked
against losses computed outside the step (the main logits from the model, the pose logits from pose_only)."""

import jax
import numpy as np
import pytest

import parity_worker
from clipmg_jax.models import vit
from clipmg_jax.training import defaults
from clipmg_jax.training import losses
from clipmg_jax.training import model_setup
from clipmg_jax.training import optimizer as optimizer_lib
from clipmg_jax.training import sharding as sharding_lib
from clipmg_jax.training import step as step_lib
from clipmg_jax.training import train_state as train_state_lib


def _step_metrics(variant: str, aux_weight: float):
  config = defaults.base_config()
  model_config = parity_worker.tiny_model_config(variant)
  model_config.head.dropout = 0.0  # the references below run without the step's dropout rng
  model_config.head.pose_aux_weight = aux_weight
  bundle = model_setup.build_model(model_config)
  mesh = sharding_lib.make_mesh(1)
  params = model_setup.init_params(bundle, jax.random.PRNGKey(0), parity_worker.IMAGE)
  kept = jax.tree.map(np.array, params)  # the step donates (deletes) the state's arrays
  tx, schedule = optimizer_lib.make_optimizer(config.optimizer, 10, bundle.trainable_mask(params))
  state = train_state_lib.create_train_state(params, tx, jax.random.PRNGKey(1))
  shardings = sharding_lib.state_shardings(state, mesh)
  step = step_lib.make_train_step(bundle.module, tx, schedule, mesh=mesh, state_sharding=shardings,
                                  loss_config=config.loss, normalize=bundle.normalize,
                                  aux_loss_weights=bundle.aux_loss_weights)
  batch = parity_worker.make_batch(model_config.num_classes)
  _, metrics = step(jax.device_put(state, shardings), sharding_lib.place_batch(batch, mesh))
  return kept, batch, {k: float(v) for k, v in metrics.items()}


def _loss(logits, batch):
  return float(losses.classification_loss(logits, batch["label"], weights=None, logit_offset=None,
                                          label_smoothing=0.0))


@pytest.mark.slow
def test_step_adds_the_weighted_pose_loss_to_the_main_loss():
  params, batch, metrics = _step_metrics("full", 0.5)
  frames = vit.normalize_images(batch["frames"])
  main = _loss(model_setup.build_model(parity_worker.tiny_model_config("full")).module.apply(
      {"params": params}, frames, batch["keypoints"]), batch)
  pose_only = model_setup.build_model(parity_worker.tiny_model_config("pose_only")).module
  pose = _loss(pose_only.apply({"params": {"skeleton_encoder": params["skeleton_encoder"],
                                           "head": params["pose_aux_head"]}}, frames, batch["keypoints"]), batch)
  np.testing.assert_allclose(metrics["main_loss"], main, rtol=1e-5)
  np.testing.assert_allclose(metrics["pose_aux_loss"], pose, rtol=1e-5)
  np.testing.assert_allclose(metrics["loss"], main + 0.5 * pose, rtol=1e-5)


def test_without_the_auxiliary_head_the_loss_is_the_main_loss_alone():
  params, _, metrics = _step_metrics("full", 0.0)
  assert "pose_aux_head" not in params and "pose_aux_loss" not in metrics
  params, _, metrics = _step_metrics("visual_only", 1.0)  # no skeleton tower: nothing to supervise
  assert "pose_aux_head" not in params and "pose_aux_loss" not in metrics
