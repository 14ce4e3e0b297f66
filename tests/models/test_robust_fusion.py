"""Robust fusion (`+robust`, docs/method.md "Robust fusion"): the reliability floor closes the gate exactly when no
joint is usable, the g = 0 path is the model's own vision-only computation through the same readout, and the train
step adds its loss."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from clipmg_jax.models import clipmg
from clipmg_jax.models import clipmg_params
from clipmg_jax.models import variants
from clipmg_jax.training import model_setup
from clipmg_jax.training import optimizer as optimizer_lib
from clipmg_jax.training import sharding
from clipmg_jax.training import step as step_lib
from clipmg_jax.training import train_state

from test_clipmg import make_batch, small_config


# The "shared" candidate: the g = 0 path through the model's own readout, supervised, and the gate's floor.
SHARED = {"robust.vision_aux_weight": 1.0, "robust.reliability_floor": 0.2, "robust.vision_readout": "shared"}


def robust_config(variant="full", **overrides):
  """`+robust` (variants.ROBUST) on the small model, with `overrides`."""
  return small_config(variant, **{**variants.ROBUST, **overrides})


def _init(config):
  model = clipmg.ClipMG(config)
  frames, keypoints = make_batch()
  return model, jax.jit(model.init)(jax.random.key(0), frames, keypoints)["params"]


def _apply(model, params, frames, keypoints, mutable):
  return model.apply({"params": params}, frames, keypoints, mutable=mutable)


@pytest.mark.parametrize("readout", ["shared", "tower"])
def test_no_usable_joint_is_the_vision_path_exactly(readout):
  """With every joint dropped the floor makes g = 0 (and lam = 0), so the logits are the sown vision logits (dropout
  off); these do not depend on the keypoints."""
  model, params = _init(robust_config(**{**SHARED, "robust.vision_readout": readout}))
  frames, keypoints = make_batch()
  empty = jnp.zeros_like(keypoints)
  logits, state = _apply(model, params, frames, empty, ["aux", "intermediates"])
  (vision_logits,) = state["aux"]["vision_logits"]
  if readout == "shared":  # the gate itself closes
    (gate,) = state["intermediates"]["gate_values"]
    assert float(jnp.max(gate)) == 0.0
  else:  # the output is handed over
    (lam,) = state["intermediates"]["fallback_weight"]
    assert float(jnp.max(lam)) == 0.0
  np.testing.assert_allclose(np.asarray(logits), np.asarray(vision_logits), rtol=0, atol=1e-6)
  # With pose the two differ: the vision path ignores the keypoints, the fused model does not.
  logits_pose, state = _apply(model, params, frames, keypoints, ["aux"])
  (vision_pose,) = state["aux"]["vision_logits"]
  np.testing.assert_allclose(np.asarray(vision_pose), np.asarray(vision_logits), rtol=0, atol=1e-6)
  assert not np.allclose(np.asarray(logits_pose), np.asarray(logits), atol=1e-4)


def test_without_the_floor_the_learned_gate_stays_open_on_empty_pose():
  """The paper's gate alone keeps g = sigmoid(u . LN(s) + b) > 0 with no joint: what the floor is for."""
  model, params = _init(small_config())
  frames, keypoints = make_batch()
  _, state = _apply(model, params, frames, jnp.zeros_like(keypoints), ["intermediates"])
  (gate,) = state["intermediates"]["gate_values"]
  assert float(jnp.min(gate)) > 0.05


def test_floor_scales_the_gate_by_reliability():
  """g_robust = g_learned * min(1, r / floor), window by window, with the same parameters."""
  config = robust_config(**SHARED)
  model, params = _init(config)
  plain = clipmg.ClipMG(small_config())  # same parameter tree: the floor has no parameter
  frames, keypoints = make_batch()
  weak = keypoints.at[..., 2].multiply(0.3)  # confidences 0.09-0.3: some under the threshold, r below the floor
  _, robust_state = _apply(model, params, frames, weak, ["intermediates"])
  _, plain_state = _apply(plain, params, frames, weak, ["intermediates"])
  (r,) = robust_state["intermediates"]["reliability"]
  (g_robust,) = robust_state["intermediates"]["gate_values"]
  (g_plain,) = plain_state["intermediates"]["gate_values"]
  floor = SHARED["robust.reliability_floor"]
  assert float(jnp.min(r)) < floor  # the case under test happens
  np.testing.assert_allclose(np.asarray(g_robust), np.asarray(g_plain * jnp.clip(r / floor, 0, 1)), atol=1e-6)


def test_evaluation_never_computes_the_shared_vision_path():
  model, params = _init(robust_config(**SHARED))
  frames, keypoints = make_batch()
  text = jax.jit(lambda p: model.apply({"params": p}, frames, keypoints)).lower(params).as_text()
  text_aux = jax.jit(lambda p: model.apply({"params": p}, frames, keypoints, mutable=["aux"])).lower(params).as_text()
  assert text.count("dot_general") < text_aux.count("dot_general")


@pytest.mark.parametrize("variant", ["visual_only", "pose_only"])
def test_robust_is_a_no_op_without_both_towers(variant):
  _, params = _init(small_config(variant))
  _, robust_params = _init(robust_config(variant))
  assert jax.tree.structure(params) == jax.tree.structure(robust_params)


@pytest.mark.parametrize("distill", [0.0, 0.5])
def test_train_step_adds_the_vision_loss(distill):
  """loss = main + pose_aux + vision_aux (weights 1) [+ distill weight x the vision classifier's cross-entropy to the
  fused model's probabilities], as metrics report."""
  config = robust_config(**{"robust.distill_weight": distill})
  bundle = model_setup.build_model(config)
  assert bundle.aux_loss_weights == {"pose_logits": 1.0, "vision_logits": 1.0, "vision_distill_loss": distill}
  frames, keypoints = make_batch()
  params = jax.jit(bundle.module.init)(jax.random.key(0), frames, keypoints)["params"]
  mesh = sharding.make_mesh(1)
  tx = optax.sgd(0.0)
  state = train_state.create_train_state(params, tx, jax.random.key(1))
  state_sharding = jax.tree.map(lambda _: sharding.replicated(mesh), state)
  loss_config = ml_collections.ConfigDict(dict(label_smoothing=0.0))
  step = step_lib.make_train_step(bundle.module, tx, optax.constant_schedule(0.0), mesh=mesh,
                                  state_sharding=state_sharding, loss_config=loss_config, normalize=lambda x: x,
                                  aux_loss_weights=bundle.aux_loss_weights)
  labels = jnp.array([3, 5], jnp.int32)
  logits, aux = bundle.module.apply({"params": params}, frames, keypoints, mutable=["aux"])
  vision_logits = aux["aux"]["vision_logits"][0]
  expected = optax.softmax_cross_entropy_with_integer_labels(vision_logits, labels).mean()
  expected_distill = optax.softmax_cross_entropy(vision_logits, jax.nn.softmax(logits)).mean()
  _, metrics = step(state, {"frames": frames, "keypoints": keypoints, "label": labels})  # donates state (params)
  assert float(metrics["vision_aux_loss"]) > 0
  total = float(metrics["main_loss"]) + float(metrics["pose_aux_loss"]) + float(metrics["vision_aux_loss"])
  if distill:
    np.testing.assert_allclose(float(metrics["vision_distill_loss"]), float(expected_distill), rtol=1e-5)
    total += distill * float(metrics["vision_distill_loss"])
  else:
    assert "vision_distill_loss" not in metrics
  np.testing.assert_allclose(float(metrics["loss"]), total, rtol=1e-6)
  np.testing.assert_allclose(float(metrics["vision_aux_loss"]), float(expected), rtol=1e-5)


def test_grammar():
  assert variants.parse("full+extras+robust") == variants.Arg("full", extras=True, robust=True)
  assert variants.parse("no_gate+robust+extras") == variants.Arg("no_gate", extras=True, robust=True)
  assert variants.model_overrides("full+robust") == {"variant": "full", **variants.ROBUST}
  for bad in ("full+robust+robust", "full+", "robust", "full+extras+more"):
    with pytest.raises(ValueError, match=r"<variant>\[\+extras\]\[\+robust\]"):
      variants.parse(bad)
  for arg in ("full", "full+extras", "full+robust", "no_gate+extras+robust"):
    assert variants.name(clipmg.get_model_config("tiny", **variants.model_overrides(arg))) == arg


def test_own_vision_readout_takes_over_as_reliability_falls():
  """vision_readout="head": z = lam z_fused + (1 - lam) z_vision with lam = min(1, mean r / floor): the vision
  head's logits with no usable joint, the fused logits with reliable pose; the gate is the paper's, unscaled."""
  config = robust_config(**{"robust.vision_readout": "head", "robust.reliability_floor": 0.05})
  model, params = _init(config)
  assert {"vision_cross_attention", "vision_head"} <= set(params)
  frames, keypoints = make_batch()
  for kp, expected_lam in ((jnp.zeros_like(keypoints), 0.0), (keypoints, 1.0)):
    logits, state = _apply(model, params, frames, kp, ["aux", "intermediates"])
    (vision_logits,) = state["aux"]["vision_logits"]
    (lam,) = state["intermediates"]["fallback_weight"]
    np.testing.assert_array_equal(np.asarray(lam), expected_lam)
    _, plain_state = _apply(clipmg.ClipMG(small_config()), params, frames, kp, ["intermediates"])
    np.testing.assert_array_equal(np.asarray(state["intermediates"]["gate_values"][0]),
                                  np.asarray(plain_state["intermediates"]["gate_values"][0]))
    if expected_lam == 0.0:
      np.testing.assert_allclose(np.asarray(logits), np.asarray(vision_logits), rtol=0, atol=1e-6)
    else:
      assert not np.allclose(np.asarray(logits), np.asarray(vision_logits), atol=1e-4)
  with pytest.raises(ValueError, match="vision_readout='head' needs robust.reliability_floor > 0"):
    small_config(**{"robust.vision_readout": "head"})


def test_tower_readout_is_a_visual_only_classifier_beside_the_fused_one():
  """vision_readout="tower": with no usable joint the logits are those of a visual_only model whose tower top, cross-
  attention and head are the robust model's vision_top, vision_cross_attention and vision_head; with reliable pose they
  are the fused model's, which does not depend on the vision classifier's parameters."""
  config = robust_config(**{"robust.vision_readout": "tower", "robust.reliability_floor": 0.05})
  model, params = _init(config)
  assert set(params["vision_top"]) == {"resblocks_1", "ln_post"}  # the trainable block (of 2) and ln_post
  frames, keypoints = make_batch()
  vision_model = clipmg.ClipMG(small_config("visual_only"))
  vit = dict(params["vit"], **params["vision_top"])
  vision_params = {"vit": vit, "cross_attention": params["vision_cross_attention"], "head": params["vision_head"]}
  expected = vision_model.apply({"params": vision_params}, frames, keypoints)
  logits = model.apply({"params": params}, frames, jnp.zeros_like(keypoints))
  np.testing.assert_allclose(np.asarray(logits), np.asarray(expected), rtol=0, atol=1e-5)
  moved = dict(params, vision_head=jax.tree.map(lambda x: x + 1.0, params["vision_head"]))
  np.testing.assert_array_equal(np.asarray(model.apply({"params": params}, frames, keypoints)),
                                np.asarray(model.apply({"params": moved}, frames, keypoints)))


def test_pretrained_tower_weights_reach_the_vision_top():
  from clipmg_jax.models import clipmg_params  # pylint: disable=import-outside-toplevel
  config = robust_config(**{"robust.vision_readout": "tower", "robust.reliability_floor": 0.05})
  _, params = _init(config)
  pretrained = jax.tree.map(lambda x: x + 0.5, params["vit"])
  loaded = clipmg_params.with_pretrained_vit(params, pretrained)
  for key in ("resblocks_1", "ln_post"):
    for a, b in zip(jax.tree.leaves(loaded["vision_top"][key]), jax.tree.leaves(pretrained[key])):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def _train(config, steps=3, groups=None):
  """`steps` train steps of the real optimizer (gradient clip small enough to bind on every step) from init key 0."""
  bundle = model_setup.build_model(config)
  frames, keypoints = make_batch()
  params = jax.jit(bundle.module.init)(jax.random.key(0), frames, keypoints)["params"]
  start = jax.device_get(params)  # the step donates the state
  opt = ml_collections.ConfigDict(dict(learning_rate=1e-2, warmup_steps=0, final_lr_fraction=1.0, weight_decay=0.0,
                                       b1=0.9, b2=0.999, eps=1e-8, grad_clip_norm=1e-3))
  tx, schedule = optimizer_lib.make_optimizer(opt, steps, jax.tree.map(lambda _: True, params),
                                              bundle.optimizer_groups if groups is None else groups)
  mesh = sharding.make_mesh(1)
  state = train_state.create_train_state(params, tx, jax.random.key(1))
  state_sharding = jax.tree.map(lambda _: sharding.replicated(mesh), state)
  step = step_lib.make_train_step(bundle.module, tx, schedule, mesh=mesh, state_sharding=state_sharding,
                                  loss_config=ml_collections.ConfigDict(dict(label_smoothing=0.0)),
                                  normalize=lambda x: x, aux_loss_weights=bundle.aux_loss_weights)
  batch = {"frames": frames, "keypoints": keypoints, "label": jnp.array([3, 5], jnp.int32)}
  for _ in range(steps):
    state, _ = step(state, batch)
  return start, jax.device_get(state.params)


def _max_difference(a, b):
  return max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_the_fused_model_trains_as_without_robust():
  """The vision classifier is a parameter group of its own (own gradient clip) and its distillation target is held
  fixed, so the fused part of `full+robust` follows `full` step by step; one global clip over both would couple them."""
  _, plain = _train(small_config("full"))
  _, robust = _train(robust_config())
  fused = {k: v for k, v in robust.items() if k not in clipmg_params.VISION_CLASSIFIER}
  assert jax.tree.structure(fused) == jax.tree.structure(plain)
  assert _max_difference(fused, plain) < 1e-6
  _, coupled = _train(robust_config(), groups={})
  assert _max_difference({k: coupled[k] for k in fused}, plain) > 1e-4


def test_vision_lr_scale_scales_the_vision_classifiers_updates():
  """Adam's first update is the learning rate times about sign(gradient): twice the scale, twice the step, and the
  fused model's update unchanged."""
  start, one = _train(robust_config(**{"robust.vision_lr_scale": 1.0}), steps=1)
  _, two = _train(robust_config(**{"robust.vision_lr_scale": 2.0}), steps=1)
  for name in clipmg_params.VISION_CLASSIFIER:
    d1 = jax.tree.map(lambda a, b: b - a, start[name], one[name])
    d2 = jax.tree.map(lambda a, b: b - a, start[name], two[name])
    np.testing.assert_allclose(np.concatenate([np.ravel(x) for x in jax.tree.leaves(d2)]),
                               2 * np.concatenate([np.ravel(x) for x in jax.tree.leaves(d1)]), rtol=1e-3, atol=1e-7)
  assert _max_difference({k: v for k, v in one.items() if k not in clipmg_params.VISION_CLASSIFIER},
                         {k: v for k, v in two.items() if k not in clipmg_params.VISION_CLASSIFIER}) == 0.0
