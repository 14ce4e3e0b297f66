"""CLIP-MG: variants, freezing, patch weights, gate extremes and gradients, on the small "tiny" ViT."""

import dataclasses
import functools
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from clipmg_jax.models import clipmg
from clipmg_jax.models import clipmg_params
from clipmg_jax.models import pose_guidance
from clipmg_jax.models import variants

B, T, TP, J, SIZE = 2, 8, 32, 18, 224

# Top-level modules each variant must have, and no others.
FUSED = {"vit", "skeleton_encoder", "skeleton_norm", "skeleton_embed", "head", "pose_aux_head"}
EXPECTED_MODULES = {
    "full": FUSED | {"gate", "cross_attention"},
    "visual_only": {"vit", "cross_attention", "head"},
    "pose_only": {"skeleton_encoder", "head"},
    "no_guidance": FUSED | {"gate", "cross_attention"},
    "no_cross_attention": FUSED | {"gate"},
    "no_gate": FUSED | {"cross_attention"},
}


def small_config(variant="full", **overrides):
  """Tiny ViT (2 blocks, width 64), 32x32 heatmaps and a narrow 3D-CNN: seconds on a CPU. With the extras
  (variants.EXTRAS: pose context and auxiliary pose head), so that these tests cover every module; the paper's
  defaults are tested in test_paper_defaults_have_no_extras."""
  kwargs = dict(variant=variant, trainable_blocks=1, heatmap=dict(resolution=32),
                skeleton=dict(features=(8, 16, 16), depths=(1, 1, 1), embed_dim=24, num_groups=4),
                head=dict(hidden_dim=32, dropout=0.0, pose_context=True, pose_aux_weight=1.0))
  kwargs.update(overrides)
  return clipmg.get_model_config("tiny", **kwargs)


def make_batch(seed=0):
  rng = np.random.default_rng(seed)
  frames = rng.normal(size=(B, T, SIZE, SIZE, 3)).astype(np.float32)
  xy = rng.uniform(0, SIZE - 1, size=(B, TP, J, 2))
  conf = rng.uniform(0.3, 1.0, size=(B, TP, J, 1))
  conf[:, :, 10:] = 0.0  # lower body missing, as for a seated subject
  return jnp.asarray(frames), jnp.asarray(np.concatenate([xy, conf], -1).astype(np.float32))


@functools.lru_cache(maxsize=None)
def model_and_params(variant):
  model = clipmg.ClipMG(small_config(variant))
  frames, keypoints = make_batch()
  params = jax.jit(model.init)(jax.random.key(0), frames, keypoints)["params"]
  return model, params


def loss_fn(model, params, frames, keypoints, labels):
  """Cross-entropy of the logits, plus that of the auxiliary pose logits where the model sows them."""
  logits, aux = model.apply({"params": params}, frames, keypoints, mutable=["aux"])
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  for pose_logits in aux.get("aux", {}).get("pose_logits", ()):
    loss += optax.softmax_cross_entropy_with_integer_labels(pose_logits, labels).mean()
  return loss, logits


@functools.lru_cache(maxsize=None)
def forward_backward(variant):
  """jit of (params, frames, keypoints) -> (logits, grads of a cross-entropy); one compilation per variant."""
  model, _ = model_and_params(variant)
  grad_fn = jax.value_and_grad(functools.partial(loss_fn, model), has_aux=True)

  @jax.jit
  def run(params, frames, keypoints):
    (_, logits), grads = grad_fn(params, frames, keypoints, jnp.arange(frames.shape[0]) % 32)
    return logits, grads

  return run


def logits_of(variant, params, frames, keypoints):
  return np.asarray(forward_backward(variant)(params, frames, keypoints)[0])


# The full model runs in the quick loop (-m "not slow"); the other variants' compilations are the bulk of this file.
VARIANT_PARAMS = [v if v == "full" else pytest.param(v, marks=pytest.mark.slow) for v in clipmg.VARIANTS]


def flat(tree):
  return {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_leaves_with_path(tree)}


@pytest.mark.parametrize("variant", VARIANT_PARAMS)
def test_every_variant_jits_and_has_exactly_its_modules(variant):
  model, params = model_and_params(variant)
  frames, keypoints = make_batch(1)
  logits, _ = forward_backward(variant)(params, frames, keypoints)
  assert logits.shape == (B, 32) and logits.dtype == jnp.float32
  assert np.isfinite(np.asarray(logits)).all()
  assert set(params) == EXPECTED_MODULES[variant]
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(params))


@pytest.mark.parametrize("variant", VARIANT_PARAMS)
def test_every_parameter_is_used_and_frozen_ones_get_no_gradient(variant):
  """Trainable leaves all get a gradient (nothing unused exists); the frozen ViT prefix gets exactly zero."""
  model, params = model_and_params(variant)
  frames, keypoints = make_batch(2)
  _, grads = forward_backward(variant)(params, frames, keypoints)
  mask = flat(clipmg_params.trainable_mask(params, model.config))
  for path, grad in flat(grads).items():
    grad = np.asarray(grad)
    if mask[path]:
      assert np.any(grad != 0), f"{variant}: trainable {path} gets no gradient (unused parameter?)"
    else:
      assert np.all(grad == 0), f"{variant}: frozen {path} gets a gradient"


def test_gradients_reach_the_skeleton_encoder_and_the_first_conv():
  _, params = model_and_params("full")
  frames, keypoints = make_batch(3)
  _, grads = forward_backward("full")(params, frames, keypoints)
  first_conv = np.asarray(grads["skeleton_encoder"]["stage0_conv0"]["kernel"])
  assert np.abs(first_conv).max() > 0


def test_trainable_mask_partition():
  config = small_config()
  _, params = model_and_params("full")
  mask = clipmg_params.trainable_mask(params, config)
  vit = mask["vit"]
  assert all(jax.tree.leaves(vit["resblocks_1"])) and all(jax.tree.leaves(vit["ln_post"]))
  for frozen in ("resblocks_0", "conv1", "ln_pre", "class_embedding", "positional_embedding"):
    assert not any(jax.tree.leaves(vit[frozen])), frozen
  for name in set(params) - {"vit"}:
    assert all(jax.tree.leaves(mask[name])), name
  # The whole variables dict works too.
  assert clipmg_params.trainable_mask({"params": params}, config)["params"]["vit"]["ln_pre"]["scale"] is False


def test_frozen_parameters_bit_identical_after_optimizer_steps():
  model, params = model_and_params("full")
  mask = clipmg_params.trainable_mask(params, model.config)
  labels = jax.tree.map(lambda m: "train" if m else "frozen", mask)
  tx = optax.multi_transform({"train": optax.adamw(1e-2), "frozen": optax.set_to_zero()}, labels)
  opt_state = tx.init(params)
  # Frozen parameters carry no optimizer state: Adam holds two moments of the trainable scalars only.
  trainable_size = sum(p.size for p, m in zip(jax.tree.leaves(params), jax.tree.leaves(mask)) if m)
  state_size = sum(np.size(x) for x in jax.tree.leaves(opt_state))
  assert 2 * trainable_size <= state_size <= 2 * trainable_size + 16

  @jax.jit
  def step(params, opt_state, frames, keypoints, y):
    grads = jax.grad(lambda p: loss_fn(model, p, frames, keypoints, y)[0])(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  new = params
  for seed in range(3):
    frames, keypoints = make_batch(seed)
    new, opt_state = step(new, opt_state, frames, keypoints, jnp.array([seed, seed + 1]))
  before, after, is_trainable = flat(params), flat(new), flat(mask)
  for path in before:
    same = np.array_equal(np.asarray(before[path]), np.asarray(after[path]))
    if is_trainable[path]:
      assert not same, f"trainable {path} did not change"
    else:
      assert same, f"frozen {path} changed"


def test_patch_weights_peak_at_the_patch_holding_a_confident_joint():
  keypoints = np.zeros((1, TP, J, 3), np.float32)
  keypoints[:, :, 4] = [5 * 16 + 3, 9 * 16 + 12, 0.9]  # right wrist in patch (row 9, column 5)
  keypoints[:, :, 7] = [200.0, 30.0, 0.2]  # a weak joint elsewhere, in patch (row 1, column 12)
  weights = np.asarray(pose_guidance.patch_weights(jnp.asarray(keypoints), (SIZE, SIZE), 16, T))
  assert weights.shape == (1, T, 196)
  np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-6)
  assert np.all(weights.argmax(-1) == 9 * 14 + 5)
  assert np.all(weights[..., 1 * 14 + 12] > 10 * np.median(weights, axis=-1))  # the weak joint counts too


def test_patch_weights_uniform_without_valid_joints():
  keypoints = np.zeros((1, TP, J, 3), np.float32)
  keypoints[..., 0, :] = [300.0, 100.0, 1.0]  # confident but outside the frame
  keypoints[..., 1, :] = [100.0, 100.0, 0.05]  # inside but below the threshold
  weights = np.asarray(pose_guidance.patch_weights(jnp.asarray(keypoints), (SIZE, SIZE), 16, T))
  np.testing.assert_allclose(weights, 1 / 196, rtol=1e-6)


def test_patch_weights_windows_map_pose_frames_to_rgb_frames():
  keypoints = np.zeros((1, TP, J, 3), np.float32)
  keypoints[0, 4:8, 0] = [8.0, 8.0, 1.0]  # only the pose frames of window 1 see a joint (patch 0)
  weights = np.asarray(pose_guidance.patch_weights(jnp.asarray(keypoints), (SIZE, SIZE), 16, T))
  assert weights[0, 1].argmax() == 0
  np.testing.assert_allclose(np.delete(weights[0], 1, axis=0), 1 / 196, rtol=1e-6)


@pytest.mark.parametrize("variant", ["full", "pose_only", "no_cross_attention"])
def test_a_zero_confidence_joint_changes_nothing(variant):
  _, params = model_and_params(variant)
  frames, keypoints = make_batch(4)
  moved = keypoints.at[:, :, 12].set(jnp.array([57.0, 190.0, 0.0]))  # joint 12 has confidence 0 in the batch
  weak = keypoints.at[:, :, 13].set(jnp.array([120.0, 20.0, 0.09]))  # below the 0.1 threshold
  base = logits_of(variant, params, frames, keypoints)
  np.testing.assert_array_equal(logits_of(variant, params, frames, moved), base)
  np.testing.assert_array_equal(logits_of(variant, params, frames, weak), base)
  w = lambda k: np.asarray(pose_guidance.patch_weights(k, (SIZE, SIZE), 16, T))
  np.testing.assert_array_equal(w(moved), w(keypoints))
  # ...while a confident joint does change the output.
  confident = keypoints.at[:, :, 12].set(jnp.array([57.0, 190.0, 1.0]))
  assert not np.allclose(logits_of(variant, params, frames, confident), base)


def set_gate_bias(params, value):
  return {**params, "gate": {**params["gate"], "bias": jnp.asarray(value, jnp.float32)}}


def test_gate_closed_is_exactly_the_visual_only_model():
  """g = 0 (bias -> -inf): the full model computes the visual_only model with the same vit/attention/head."""
  _, params = model_and_params("full")
  frames, keypoints = make_batch(5)
  closed = logits_of("full", set_gate_bias(params, -1e4), frames, keypoints)
  shared = {k: params[k] for k in EXPECTED_MODULES["visual_only"]}
  visual = logits_of("visual_only", shared, frames, keypoints)
  np.testing.assert_allclose(np.asarray(closed), np.asarray(visual), atol=1e-5, rtol=0)
  # With the gate closed, keypoints do not matter at all.
  other = make_batch(6)[1]
  again = logits_of("full", set_gate_bias(params, -1e4), frames, other)
  np.testing.assert_allclose(np.asarray(again), np.asarray(closed), atol=1e-5, rtol=0)


def test_gate_open_is_exactly_the_no_gate_model():
  """g = 1 (bias -> +inf): the full model computes the no_gate model (query fully pose-guided)."""
  _, params = model_and_params("full")
  frames, keypoints = make_batch(7)
  opened = logits_of("full", set_gate_bias(params, 1e4), frames, keypoints)
  shared = {k: params[k] for k in EXPECTED_MODULES["no_gate"]}
  no_gate = logits_of("no_gate", shared, frames, keypoints)
  np.testing.assert_allclose(np.asarray(opened), np.asarray(no_gate), atol=1e-5, rtol=0)


def test_pose_context_enters_the_head_only_where_there_is_a_skeleton():
  """The head's context weights (S, hidden) exist in the skeleton variants with head.pose_context; without them the
  same parameters give other logits (the context is not a no-op), and visual_only never has them."""
  _, params = model_and_params("full")
  assert params["head"]["context"]["kernel"].shape == (24, 32)  # skeleton embed_dim x head hidden_dim
  assert "context" not in model_and_params("visual_only")[1]["head"]
  frames, keypoints = make_batch(1)
  without = clipmg.ClipMG(small_config("full", head=dict(hidden_dim=32, dropout=0.0, pose_context=False)))
  variables = jax.jit(without.init)(jax.random.key(0), frames, keypoints)
  assert "context" not in variables["params"]["head"]
  shared = {**params, "head": {k: v for k, v in params["head"].items() if k != "context"}}
  plain = np.asarray(jax.jit(without.apply)({"params": shared}, frames, keypoints))
  assert np.abs(logits_of("full", params, frames, keypoints) - plain).max() > 1e-3


def test_auxiliary_pose_head_is_the_pose_only_model_on_the_shared_skeleton_tower():
  """The sown auxiliary logits are exactly pose_only's with the full model's skeleton tower and pose_aux_head; they
  are computed only when the "aux" collection is asked for, and never change the main logits."""
  model, params = model_and_params("full")
  frames, keypoints = make_batch(4)
  main, aux = jax.jit(lambda p: model.apply({"params": p}, frames, keypoints, mutable=["aux"]))(params)
  (pose_logits,) = aux["aux"]["pose_logits"]
  pose_only, _ = model_and_params("pose_only")
  reference = pose_only.apply({"params": {"skeleton_encoder": params["skeleton_encoder"],
                                          "head": params["pose_aux_head"]}}, frames, keypoints)
  np.testing.assert_allclose(np.asarray(pose_logits), np.asarray(reference), atol=1e-5, rtol=0)
  np.testing.assert_allclose(np.asarray(main), logits_of("full", params, frames, keypoints), atol=1e-5, rtol=0)
  assert not np.allclose(np.asarray(main), np.asarray(pose_logits), atol=1e-2)
  without = clipmg.ClipMG(small_config("full", **{"head.pose_aux_weight": 0.0}))
  variables = jax.jit(without.init)(jax.random.key(0), frames, keypoints)
  assert "pose_aux_head" not in variables["params"]
  assert "pose_aux_head" not in model_and_params("visual_only")[1]


def test_the_variant_table_in_the_docs_is_variants_uses():
  text = (pathlib.Path(__file__).parents[2] / "docs" / "method.md").read_text()
  header = "| variant | " + " | ".join(f.name for f in dataclasses.fields(variants.Uses)) + " |"
  assert header in text
  rows = text.split(header, 1)[1].splitlines()[2:2 + len(variants.USES)]
  documented = {row.split("|")[1].strip(" `"): tuple(c.strip() == "yes" for c in row.split("|")[2:-1])
                for row in rows}
  assert documented == {v: dataclasses.astuple(u) for v, u in variants.USES.items()}


def test_paper_defaults_have_no_extras():
  """The default model config is the paper's: no pose context in the head, no auxiliary pose head."""
  config = clipmg.get_model_config("tiny")
  assert config.head.pose_context is False and config.head.pose_aux_weight == 0.0
  overrides = variants.model_overrides("no_gate+extras")
  assert overrides == {"variant": "no_gate", "head.pose_context": True, "head.pose_aux_weight": 1.0}
  assert variants.model_overrides("no_gate") == {"variant": "no_gate"}
  with pytest.raises(ValueError, match=r"<variant>\[\+extras\]\[\+robust\]"):
    variants.parse("full+more")
  paper = small_config("full", head=dict(hidden_dim=32, dropout=0.0))
  frames, keypoints = make_batch()
  params = jax.eval_shape(lambda r: clipmg.ClipMG(paper).init(r, frames, keypoints), jax.random.key(0))["params"]
  assert set(params) == EXPECTED_MODULES["full"] - {"pose_aux_head"}
  assert "context" not in params["head"]


@pytest.mark.parametrize("variant", ["full", "no_gate"])
def test_sown_pose_values_are_those_of_the_forward_pass(variant):
  """Asking for "intermediates" leaves the logits unchanged and returns the reliability, patch weights and gate
  the forward pass used (at initialisation the gate's feature weights are 0, so g = sigmoid(a r + b))."""
  model, params = model_and_params(variant)
  frames, keypoints = make_batch(3)
  logits, state = jax.jit(lambda p: model.apply({"params": p}, frames, keypoints, mutable=["intermediates"]))(params)
  np.testing.assert_allclose(np.asarray(logits), logits_of(variant, params, frames, keypoints), atol=1e-5, rtol=0)
  # Top-level sows are tuples of one value; submodules' (e.g. cross_attention) are nested dicts, not checked here.
  sown = {k: np.asarray(v[0]) for k, v in state["intermediates"].items() if isinstance(v, tuple)}
  reliability = np.asarray(pose_guidance.window_reliability(keypoints, (SIZE, SIZE), T))
  np.testing.assert_allclose(sown["reliability"], reliability, atol=1e-6)
  np.testing.assert_allclose(sown["patch_weights"], np.asarray(pose_guidance.patch_weights(keypoints, (SIZE, SIZE), 16, T)),
                             atol=1e-6)
  if variant == "no_gate":
    assert "gate_values" not in sown
    return
  gate = params["gate"]
  expected = jax.nn.sigmoid(gate["confidence_scale"] * reliability + gate["bias"])
  np.testing.assert_allclose(sown["gate_values"], np.asarray(expected), atol=1e-6)
  assert sown["gate_values"].shape == (B, T)


def test_gate_at_initialisation_follows_pose_reliability():
  gate = pose_guidance.PoseGate()
  features = jnp.asarray(np.random.default_rng(0).normal(size=(1, 3, 24)), jnp.float32)
  reliability = jnp.array([[0.0, 0.5, 1.0]])
  params = gate.init(jax.random.key(0), features, reliability)
  g = np.asarray(gate.apply(params, features, reliability))[0]
  np.testing.assert_allclose(g, 1 / (1 + np.exp(-(4.0 * np.array([0.0, 0.5, 1.0]) - 2.0))), rtol=1e-6)


def test_window_reliability():
  keypoints = np.zeros((1, TP, J, 3), np.float32)
  keypoints[0, :4, :9] = [50.0, 50.0, 1.0]  # window 0: half the joints at confidence 1
  keypoints[0, 4:8, :] = [50.0, 50.0, 0.5]  # window 1: all joints at 0.5
  keypoints[0, 8:12, :] = [-5.0, 50.0, 1.0]  # window 2: outside the frame
  r = np.asarray(pose_guidance.window_reliability(jnp.asarray(keypoints), (SIZE, SIZE), T))
  np.testing.assert_allclose(r[0, :3], [0.5, 0.5, 0.0], rtol=1e-6)


def test_bfloat16_compute_keeps_float32_params_and_tracks_float32():
  _, params = model_and_params("full")
  model16 = clipmg.ClipMG(small_config("full", dtype="bfloat16"))
  frames, keypoints = make_batch(8)
  shapes16 = jax.eval_shape(model16.init, jax.random.key(0), frames, keypoints)["params"]
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(shapes16))
  logits16 = jax.jit(model16.apply)({"params": params}, frames, keypoints)
  logits32 = logits_of("full", params, frames, keypoints)
  assert logits16.dtype == jnp.float32
  scale = np.abs(logits32).max()
  np.testing.assert_allclose(np.asarray(logits16), logits32, atol=0.1 * scale + 0.05)


def test_dropout_uses_the_dropout_rng_in_training():
  _, params = model_and_params("pose_only")  # dropout creates no parameters
  model = clipmg.ClipMG(small_config("pose_only", head=dict(hidden_dim=32, dropout=0.5)))
  frames, keypoints = make_batch(9)
  apply = jax.jit(lambda r: model.apply({"params": params}, frames, keypoints, train=True, rngs={"dropout": r}))
  a, b = apply(jax.random.key(1)), apply(jax.random.key(2))
  assert not np.allclose(np.asarray(a), np.asarray(b))
  # In evaluation dropout is the identity: the same logits as the model without dropout.
  np.testing.assert_allclose(np.asarray(jax.jit(model.apply)({"params": params}, frames, keypoints)),
                             logits_of("pose_only", params, frames, keypoints), rtol=1e-6, atol=1e-6)


def test_with_pretrained_vit_drops_the_projection_and_checks_shapes():
  _, params = model_and_params("visual_only")
  vit = jax.tree.map(lambda x: x + 1.0, params["vit"])
  loaded = clipmg_params.with_pretrained_vit(params, {**vit, "proj": jnp.zeros((64, 32))})
  assert "proj" not in loaded["vit"]
  np.testing.assert_array_equal(np.asarray(loaded["vit"]["ln_pre"]["scale"]), np.asarray(vit["ln_pre"]["scale"]))
  bad = {**vit, "class_embedding": jnp.zeros((65,))}
  with pytest.raises(ValueError, match="class_embedding"):
    clipmg_params.with_pretrained_vit(params, bad)


def test_config_overrides_and_validation():
  config = clipmg.get_model_config("tiny", **{"heatmap.resolution": 64}, variant="no_gate")
  assert config.heatmap.resolution == 64 and config.heatmap.sigma == 2.5 and config.variant == "no_gate"
  with pytest.raises(KeyError, match="unknown"):
    clipmg.get_model_config("tiny", not_a_field=1)
  with pytest.raises(ValueError, match="variant"):
    clipmg.get_model_config("tiny", variant="pose-only")
  with pytest.raises(ValueError, match="trainable_blocks"):
    clipmg.get_model_config("tiny", trainable_blocks=3)
  with pytest.raises(ValueError, match="num_pose_frames"):
    clipmg.get_model_config("tiny", num_pose_frames=30)


def test_bad_input_shapes_are_named():
  model, params = model_and_params("full")
  frames, keypoints = make_batch()
  with pytest.raises(ValueError, match="keypoints"):
    model.apply({"params": params}, frames, keypoints[:, :16])
  with pytest.raises(ValueError, match="frames"):
    model.apply({"params": params}, frames[:, :4], keypoints)
