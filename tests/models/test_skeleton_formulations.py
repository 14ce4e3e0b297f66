"""The skeleton branch's fast formulations compute the model as defined: dense heatmaps into XLA convolutions.

- conv3d's im2col matmul form equals XLA's convolution (outputs and both gradients) for the strides, kernels and
  odd sizes SAME padding has to get right;
- the separable stem equals rendering the heatmaps and convolving them, including joints outside the frame,
  below the confidence threshold, NaN, and the padded last frame;
- the whole encoder and the whole model agree at paper size (logits and gradients), which is what training sees.
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from clipmg_jax.models import clipmg
from clipmg_jax.models import skeleton
from clipmg_jax.models import vit as vit_lib


def relative_error(got, want):
  """||got - want|| / ||want||: float32 rounding shows up as ~1e-7 to 1e-5 here."""
  got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
  return float(np.linalg.norm((got - want).ravel()) / max(np.linalg.norm(want.ravel()), 1e-30))


def keypoints_with_every_case(rng, batch, frames, joints=18, frame=(224, 224)):
  h, w = frame
  xy = rng.uniform(-0.1, 1.1, (batch, frames, joints, 2)) * np.array([w, h])
  conf = rng.uniform(0, 1, (batch, frames, joints, 1))
  kp = np.concatenate([xy, conf], -1).astype(np.float32)
  kp[0, 1, 2] = [np.nan, np.nan, 0.9]  # undetected joint written as NaN
  kp[0, 2, 3] = [np.inf, 10.0, 0.8]
  kp[-1, -1, :, 2] = 0.0  # a whole frame without a person
  kp[-1, 0, 5] = [w - 0.5, h - 0.5, 1.0]  # on the last pixel
  return kp


@pytest.mark.parametrize("shape,kernel,strides", [
    ((2, 8, 12, 12, 5), (3, 3, 3), (1, 1, 1)),
    ((1, 9, 13, 11, 4), (3, 3, 3), (2, 2, 2)),  # odd sizes: SAME pads after
    ((2, 8, 12, 12, 6), (3, 3, 3), (1, 2, 2)),
    ((1, 16, 20, 20, 3), (3, 5, 5), (2, 4, 4)),  # the stem's shape at a small size
    ((1, 6, 7, 9, 2), (2, 4, 1), (1, 3, 1)),  # even kernel: SAME pads before and after differently
])
def test_conv3d_matmul_equals_xla(shape, kernel, strides):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=shape), jnp.float32)
  w = jnp.asarray(rng.normal(size=kernel + (shape[-1], 7)), jnp.float32)
  outs = {impl: skeleton.conv3d(x, w, strides, impl) for impl in ("xla", "matmul")}
  assert outs["matmul"].shape == outs["xla"].shape
  assert relative_error(outs["matmul"], outs["xla"]) < 1e-5
  cot = jnp.asarray(rng.normal(size=outs["xla"].shape), jnp.float32)
  grads = {impl: jax.grad(lambda x, w: jnp.sum(skeleton.conv3d(x, w, strides, impl) * cot), argnums=(0, 1))(x, w)
           for impl in ("xla", "matmul")}
  for got, want in zip(grads["matmul"], grads["xla"]):
    assert relative_error(got, want) < 1e-5


def test_conv_impl_auto_is_matmul_on_cpu_and_rejects_unknown():
  assert skeleton.resolve_conv_impl("auto") == ("matmul" if jax.default_backend() == "cpu" else "xla")
  with pytest.raises(ValueError, match="conv implementation"):
    skeleton.conv3d(jnp.zeros((1, 2, 2, 2, 1)), jnp.zeros((1, 1, 1, 1, 1)), (1, 1, 1), "cudnn")


@pytest.mark.parametrize("resolution,kernel,strides,frames", [
    (32, (3, 5, 5), (2, 4, 4), 8),
    ((24, 40), (3, 3, 3), (2, 2, 2), 7),  # non-square, odd frame count
    (16, (3, 3, 3), (1, 1, 1), 4),
])
def test_separable_stem_equals_rendered_heatmaps_convolved(resolution, kernel, strides, frames):
  rng = np.random.default_rng(1)
  kp = jnp.asarray(keypoints_with_every_case(rng, 2, frames))
  w = jnp.asarray(rng.normal(size=kernel + (18, 8)), jnp.float32)
  opts = dict(resolution=resolution, sigma=40.0, confidence_threshold=0.1)

  def dense(w):
    heat = skeleton.render_heatmaps(kp, (224, 224), **opts)
    return skeleton.conv3d(heat, w, strides, "xla")

  def separable(w):
    return skeleton.separable_stem(kp, w, strides, (224, 224), **opts)

  want, got = dense(w), separable(w)
  assert got.shape == want.shape
  assert np.isfinite(np.asarray(got)).all()
  assert relative_error(got, want) < 1e-5
  cot = jnp.asarray(rng.normal(size=want.shape), jnp.float32)
  grad = lambda f: jax.grad(lambda w: jnp.sum(f(w) * cot))(w)
  assert relative_error(grad(separable), grad(dense)) < 1e-5


def paper_config(variant, stem, conv, vit_layers=12):
  config = clipmg.get_model_config(dict(vit_lib.VIT_CONFIGS["B/16"], layers=vit_layers), variant=variant)
  config = ml_collections.ConfigDict(config.to_dict())
  config.skeleton.stem, config.skeleton.conv = stem, conv
  return config


def logits_and_grads(config, frames, keypoints, labels, params=None):
  """(logits, gradients of the loss, params). Given `params` (another formulation's), they are checked to have this
  model's own initial tree and shapes (no compilation) and used: compiling `init` costs as much as the step."""
  model = clipmg.ClipMG(config)
  if params is None:
    params = jax.jit(model.init)(jax.random.key(0), frames, keypoints)["params"]
  else:
    own = jax.eval_shape(model.init, jax.random.key(0), frames, keypoints)["params"]
    assert jax.tree.structure(own) == jax.tree.structure(params)
    assert jax.tree.map(lambda x: (x.shape, x.dtype), own) == jax.tree.map(lambda x: (x.shape, x.dtype), params)

  def loss(p):
    logits, aux = model.apply({"params": p}, frames, keypoints, mutable=["aux"])
    ce = lambda z: -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(z), labels[:, None], axis=1))
    return ce(logits) + sum(ce(z) for z in jax.tree.leaves(aux)), logits

  (_, logits), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
  return logits, grads, params


def worst_gradient_error(grads, ref_grads):
  """(leaf name, ||got - want|| / max(||want||, 1e-3 ||all of want||)) of the worst gradient leaf."""
  ref_leaves = jax.tree_util.tree_leaves_with_path(ref_grads)
  assert jax.tree.structure(grads) == jax.tree.structure(ref_grads)
  total = np.sqrt(sum(float(jnp.sum(jnp.square(x))) for x in jax.tree.leaves(ref_grads)))
  errors = {}
  for (path, want), got in zip(ref_leaves, jax.tree.leaves(grads)):
    scale = max(float(np.linalg.norm(np.ravel(want))), 1e-3 * total)
    errors[jax.tree_util.keystr(path)] = float(np.linalg.norm(np.ravel(got) - np.ravel(want))) / scale
  worst = max(errors, key=errors.get)
  return worst, errors[worst]


@pytest.mark.slow
@pytest.mark.parametrize("variant,convs,vit_layers", [("pose_only", ("matmul", "xla"), 12), ("full", ("auto",), 3)])
def test_paper_size_model_equals_the_reference_formulation(variant, convs, vit_layers):
  """ViT-B/16, 8 x 224^2 frames, 32 x 256^2 heatmaps, the 64-128-256 3D-CNN: logits and every gradient leaf.

  `full` keeps 3 of the 12 ViT blocks (1 frozen, 2 trainable, as in the paper): the formulation under test is the
  skeleton stream's and its fusion with the visual tokens, which the depth of the frozen prefix does not change.

  Each gradient leaf is compared relative to its own norm, or to 1e-3 of the whole gradient's norm for leaves
  whose true gradient is ~0 (the attention key biases: softmax is invariant to them).
  """
  rng = np.random.default_rng(2)
  frames = jnp.asarray(rng.normal(size=(2, 8, 224, 224, 3)), jnp.float32)
  keypoints = jnp.asarray(keypoints_with_every_case(rng, 2, 32))
  labels = jnp.asarray([3, 17])
  ref_logits, ref_grads, params = logits_and_grads(paper_config(variant, "heatmaps", "xla", vit_layers), frames,
                                                  keypoints, labels)
  for conv in convs:
    logits, grads, _ = logits_and_grads(paper_config(variant, "separable", conv, vit_layers), frames, keypoints, labels,
                                        params)
    assert relative_error(logits, ref_logits) < 1e-5
    worst, error = worst_gradient_error(grads, ref_grads)
    assert error < 1e-4, (conv, worst, error)


def test_remat_changes_neither_parameters_nor_numbers():
  base = dict(variant="full", trainable_blocks=1, heatmap=dict(resolution=32),
              skeleton=dict(features=(8, 16, 16), depths=(1, 1, 1), embed_dim=24, num_groups=4),
              head=dict(hidden_dim=32, dropout=0.0))
  rng = np.random.default_rng(3)
  frames = jnp.asarray(rng.normal(size=(2, 8, 224, 224, 3)), jnp.float32)
  keypoints = jnp.asarray(keypoints_with_every_case(rng, 2, 32))
  labels = jnp.asarray([1, 2])
  plain = logits_and_grads(clipmg.get_model_config("tiny", **base), frames, keypoints, labels)
  # Same parameter tree and shapes (checked by logits_and_grads), so the remat model runs on the plain one's values.
  remat = logits_and_grads(clipmg.get_model_config("tiny", remat=("vit", "skeleton"), **base), frames, keypoints,
                           labels, plain[2])
  assert relative_error(remat[0], plain[0]) < 1e-6
  worst, error = worst_gradient_error(remat[1], plain[1])  # same parameter tree, same gradients up to rounding
  assert error < 1e-5, (worst, error)
  with pytest.raises(ValueError, match="remat"):
    clipmg.get_model_config("tiny", remat=("attention",))
