"""VisionTransformer: parameter tree, composition, frozen prefix, interpolation, dtype."""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from clipmg_jax.models import vit


def _init(name="tiny", **overrides):
  model = vit.make_vit({**vit.VIT_CONFIGS[name], **overrides})
  size = model.image_size
  params = model.init(jax.random.key(0), jnp.zeros((1, size, size, 3)))["params"]
  return model, params


def _images(n=2, h=224, w=224, seed=0):
  return jnp.asarray(np.random.RandomState(seed).randn(n, h, w, 3).astype(np.float32))


def test_param_tree_follows_contract():
  model, params = _init("tiny", proj_dim=32)
  d, p = 64, 16
  shapes = flax.traverse_util.flatten_dict(jax.tree.map(jnp.shape, params), sep="/")
  assert shapes["conv1/kernel"] == (p, p, 3, d)
  assert shapes["class_embedding"] == (d,)
  assert shapes["positional_embedding"] == (1 + 14 * 14, d)
  assert shapes["proj"] == (d, 32)
  for i in range(model.layers):
    for name in ("query", "key", "value", "out"):
      assert shapes[f"resblocks_{i}/attn/{name}/kernel"] == (d, d)
      assert shapes[f"resblocks_{i}/attn/{name}/bias"] == (d,)
    assert shapes[f"resblocks_{i}/mlp/c_fc/kernel"] == (d, 256)
    assert shapes[f"resblocks_{i}/mlp/c_proj/kernel"] == (256, d)
  assert not any("bias" in k for k in shapes if k.startswith("conv1"))
  assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(params))


def test_configs_have_every_field():
  for name in ("B/16", "B/32", "L/14", "S/16", "Ti/16", "tiny"):
    assert set(vit.VIT_CONFIGS[name]) == {"width", "layers", "heads", "patch_size", "image_size", "mlp_dim",
                                          "proj_dim"}
  assert vit.VIT_CONFIGS["tiny"] == dict(width=64, layers=2, heads=4, patch_size=16, image_size=224, mlp_dim=256,
                                         proj_dim=None)
  with pytest.raises(KeyError, match="H/99"):
    vit.vit_config("H/99")


def test_outputs_and_methods_compose():
  model, params = _init("tiny", proj_dim=32)
  x = _images()
  out = model.apply({"params": params}, x)
  assert out["last_hidden_state"].shape == (2, 197, 64)
  assert out["pooled"].shape == (2, 64)
  assert out["embedding"].shape == (2, 32)
  tokens = model.apply({"params": params}, x, method=model.embed)
  tokens = model.apply({"params": params}, tokens, 0, 1, method=model.run_blocks)
  tokens = model.apply({"params": params}, tokens, 1, 2, method=model.run_blocks)
  np.testing.assert_array_equal(tokens, out["last_hidden_state"])
  pooled = model.apply({"params": params}, tokens, method=model.pool)
  np.testing.assert_array_equal(pooled, out["pooled"])
  np.testing.assert_allclose(out["embedding"], pooled @ params["proj"], atol=1e-5)


def test_no_projection_means_no_embedding():
  model, params = _init("tiny")
  assert "proj" not in params
  assert "embedding" not in model.apply({"params": params}, _images(1))


def test_tokens_depend_on_their_own_patch():
  """Changing one patch changes that token's embedding only (before attention mixes tokens)."""
  model, params = _init("tiny")
  x = _images(1)
  y = x.at[0, 16:32, 32:48].add(1.0)  # patch row 1, column 2 -> token 1 + 1 * 14 + 2
  ex = model.apply({"params": params}, x, method=model.embed)
  ey = model.apply({"params": params}, y, method=model.embed)
  changed = np.flatnonzero(np.abs(np.asarray(ex - ey)).max(-1) > 0)
  assert changed.tolist() == [1 + 14 + 2]


def test_frozen_blocks_zero_gradients_to_prefix():
  model, params = _init("tiny")
  x = _images()

  def loss(p, frozen):
    out = model.apply({"params": p}, x, frozen_blocks=frozen)
    return jnp.sum(out["pooled"]**2) + jnp.sum(out["last_hidden_state"]**2)

  grads = jax.grad(loss)(params, 1)
  frozen = ["conv1", "class_embedding", "positional_embedding", "ln_pre", "resblocks_0"]
  for name in frozen:
    assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(grads[name])), name
  for name in ["resblocks_1", "ln_post"]:
    assert all(float(jnp.abs(g).max()) > 0.0 for g in jax.tree.leaves(grads[name])), name
  # Without freezing every parameter receives gradient, and freezing does not change the forward pass.
  full = jax.grad(loss)(params, 0)
  assert all(float(jnp.abs(g).max()) > 0.0 for g in jax.tree.leaves(full))
  for a, b in zip(jax.tree.leaves(full["resblocks_1"]), jax.tree.leaves(grads["resblocks_1"])):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="frozen_blocks"):
    model.apply({"params": params}, x, frozen_blocks=3)


def test_bicubic_matrix_matches_torch_interpolate():
  torch = pytest.importorskip("torch")
  grid = np.random.RandomState(0).randn(1, 5, 14, 14).astype(np.float32)  # (N, C, H, W)
  for out_h, out_w in [(14, 14), (20, 24), (7, 10), (3, 1)]:
    ref = torch.nn.functional.interpolate(torch.from_numpy(grid), size=(out_h, out_w), mode="bicubic",
                                          align_corners=False).numpy()[0]
    rows, cols = vit.bicubic_resize_matrix(14, out_h), vit.bicubic_resize_matrix(14, out_w)
    ours = np.einsum("hi,cij,wj->chw", rows, grid[0], cols)
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_position_interpolation_sanity():
  side, d = 14, 8
  pos = np.random.RandomState(0).randn(1 + side * side, d).astype(np.float32)
  same = vit.interpolate_pos_embedding(jnp.asarray(pos), (side, side))
  np.testing.assert_array_equal(same, pos)
  # Class position untouched; a constant grid stays constant (cubic weights sum to one).
  const = np.concatenate([pos[:1], np.full((side * side, d), 3.0, np.float32)])
  out = np.asarray(vit.interpolate_pos_embedding(jnp.asarray(const), (20, 11)))
  assert out.shape == (1 + 20 * 11, d)
  np.testing.assert_array_equal(out[0], pos[0])
  np.testing.assert_allclose(out[1:], 3.0, atol=1e-5)
  # Upsampling by 2 then reading the grid back at the original centres stays close to a smooth input.
  yy, xx = np.meshgrid(np.linspace(0, 1, side), np.linspace(0, 1, side), indexing="ij")
  smooth = np.sin(2 * yy + xx)[..., None].repeat(d, -1).reshape(side * side, d).astype(np.float32)
  up = np.asarray(vit.interpolate_pos_embedding(jnp.asarray(np.concatenate([pos[:1], smooth])), (28, 28)))
  up = up[1:].reshape(28, 28, d)
  coarse = (up[0::2, 0::2] + up[1::2, 1::2] + up[0::2, 1::2] + up[1::2, 0::2]) / 4
  np.testing.assert_allclose(coarse[2:-2, 2:-2], smooth.reshape(side, side, d)[2:-2, 2:-2], atol=0.02)


def test_other_resolutions_run_and_reject_bad_sizes():
  model, params = _init("tiny")
  out = model.apply({"params": params}, _images(1, 160, 288))
  assert out["last_hidden_state"].shape == (1, 1 + 10 * 18, 64)
  with pytest.raises(ValueError, match="multiple of the patch size"):
    model.apply({"params": params}, _images(1, 200, 224))


def test_bfloat16_compute_keeps_float32_params():
  model, params = _init("tiny")
  x = _images()
  ref = model.apply({"params": params}, x)
  low = vit.make_vit("tiny", dtype=jnp.bfloat16)
  assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(low.init(jax.random.key(0), x[:1])["params"]))
  out = low.apply({"params": params}, x)
  assert out["pooled"].dtype == jnp.bfloat16
  err = np.abs(np.asarray(out["pooled"], np.float32) - np.asarray(ref["pooled"])).max()
  assert err < 0.1, err


def test_normalize_images():
  pixels = np.array([[[[0, 128, 255]]]], np.uint8)
  got = np.asarray(vit.normalize_images(pixels))
  want = (np.array([0, 128, 255]) / 255.0 - np.array(vit.CLIP_MEAN)) / np.array(vit.CLIP_STD)
  assert got.dtype == np.float32 and got.shape == (1, 1, 1, 3)
  np.testing.assert_allclose(got[0, 0, 0], want, rtol=1e-6)


def test_forward_flops_matches_xla_count_of_dots():
  """The analytic count agrees with XLA's cost analysis up to the non-matmul work (< 3%)."""
  model, params = _init("tiny")
  x = _images(2)
  cost = jax.jit(lambda p, x: model.apply({"params": p}, x)).lower(params, x).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost
  analytic = vit.forward_flops(vit.VIT_CONFIGS["tiny"], 2)
  assert analytic <= cost["flops"] <= 1.1 * analytic, (analytic, cost["flops"])
