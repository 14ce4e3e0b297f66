"""The inspection side channel: what ClipMG sows into "intermediates" is what its forward pass used.

The logits are recomputed in numpy (float64) from the sown patch tokens, patch weights, gate, skeleton embedding,
cross-attention weights and values, with the model's parameters; they must equal the model's logits. A wrong sown
value (another layer's weights, pre-gate tokens, an unnormalised attention) would break the recomputation.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from clipmg_jax.models import clipmg
from clipmg_jax.models import pose_guidance
from clipmg_jax.models import readout

B, T, TP, SIZE = 2, 8, 32, 64  # 64 x 64 frames: 4 x 4 patches of 16 px, 128 tokens per clip

LN_EPS = 1e-6  # flax.linen.LayerNorm's default


def layer_norm(x, p=None):
  x = np.asarray(x, np.float64)
  y = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + LN_EPS)
  return y if p is None else y * np.asarray(p["scale"], np.float64) + np.asarray(p["bias"], np.float64)


def dense(x, p):
  return x @ np.asarray(p["kernel"], np.float64) + np.asarray(p["bias"], np.float64)


def small_config(variant):
  """A small ViT over 64 x 64 frames, 16 x 16 heatmaps, a narrow 3D-CNN and the paper's head (no pose context)."""
  vit = dict(width=32, layers=2, heads=4, patch_size=16, image_size=SIZE, mlp_dim=64, proj_dim=None)
  return clipmg.get_model_config(vit, variant=variant, trainable_blocks=1, heatmap=dict(resolution=16),
                                 skeleton=dict(features=(4, 8, 8), depths=(1, 1, 1), embed_dim=16, num_groups=4),
                                 head=dict(hidden_dim=16, dropout=0.0))


def make_batch(seed):
  rng = np.random.default_rng(seed)
  frames = rng.normal(size=(B, T, SIZE, SIZE, 3)).astype(np.float32)
  xy = rng.uniform(0, SIZE - 1, size=(B, TP, 18, 2))
  conf = rng.uniform(0.3, 1.0, size=(B, TP, 18, 1))
  conf[:, :, 10:] = 0.0  # lower body missing
  conf[0, :8] = 0.0  # clip 0: no valid joint in its first two windows (uniform patch weights there)
  return jnp.asarray(frames), jnp.asarray(np.concatenate([xy, conf], -1).astype(np.float32))


def run(variant):
  config = small_config(variant)
  model = clipmg.ClipMG(config)
  frames, keypoints = make_batch(5)
  params = jax.jit(model.init)(jax.random.key(1), frames, keypoints)["params"]
  plain = jax.jit(lambda p: model.apply({"params": p}, frames, keypoints))(params)
  logits, state = jax.jit(lambda p: model.apply({"params": p}, frames, keypoints, mutable=["intermediates"]))(params)
  sown = {}
  for key, value in state["intermediates"].items():  # each sown value is a 1-tuple; the attention's a dict of them
    sown[key] = ({k: np.asarray(v[0], np.float64) for k, v in value.items()} if isinstance(value, dict)
                 else np.asarray(value[0], np.float64))
  return config, model, params, np.asarray(plain), np.asarray(logits), sown, keypoints


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["full", "visual_only"])
def test_logits_recomputed_from_the_sown_values_equal_the_models(variant):
  config, model, params, plain, logits, sown, keypoints = run(variant)
  np.testing.assert_array_equal(logits, plain)  # asking for the side channel changes nothing
  tokens = sown["patch_tokens"]  # (B, T, P, D)
  b, t, p, d = tokens.shape
  assert t == T and p == (SIZE // 16) ** 2
  query_vision = tokens.mean(axis=2)
  if variant == "visual_only":
    assert not {"patch_weights", "gate_values", "skeleton_embedding"} & set(sown)
    query, gated_tokens = query_vision, tokens
  else:
    w = sown["patch_weights"]  # (B, T, P)
    np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-6)
    # The sown w is the pose-guided weighting: recomputed from the keypoints, independently of the model.
    np.testing.assert_allclose(w, np.asarray(pose_guidance.patch_weights(keypoints, (SIZE, SIZE), 16, T)), atol=1e-7)
    g = sown["gate_values"][..., None] if variant == "full" else np.ones((b, t, 1))
    e = sown["skeleton_embedding"]
    query = query_vision + g * (np.einsum("btp,btpd->btd", w, tokens) - query_vision + e)
    gated_tokens = tokens + (g * e)[:, :, None, :]
  query = query.mean(axis=1)
  np.testing.assert_allclose(sown["pooling_query"], query, atol=1e-5)

  attn = params["cross_attention"]
  heads = sown["cross_attention"]["attention_weights"].shape[1]
  dh = d // heads
  q = dense(layer_norm(query, attn["ln_query"]), attn["query"]).reshape(b, heads, dh) / np.sqrt(dh)
  kv = layer_norm(gated_tokens.reshape(b, t * p, d), attn["ln_tokens"])
  k = dense(kv, attn["key"]).reshape(b, t * p, heads, dh)
  v = dense(kv, attn["value"]).reshape(b, t * p, heads, dh).transpose(0, 2, 1, 3)
  scores = np.einsum("bhd,bnhd->bhn", q, k)
  expected = np.exp(scores - scores.max(-1, keepdims=True))
  expected /= expected.sum(-1, keepdims=True)
  a = sown["cross_attention"]["attention_weights"]  # (B, H, N)
  np.testing.assert_allclose(a, expected, atol=1e-5)
  np.testing.assert_allclose(a.sum(-1), 1.0, atol=1e-5)
  np.testing.assert_allclose(sown["cross_attention"]["values"], v, atol=1e-4)
  # The pooled output from the sown weights and values, then the model's head: the model's logits.
  pooled = query + dense(np.einsum("bhn,bhnd->bhd", a, sown["cross_attention"]["values"]).reshape(b, d),
                         attn["out"])
  head = readout.ClassifierHead(config.num_classes, config.head.hidden_dim)
  recomputed = np.asarray(head.apply({"params": params["head"]}, np.asarray(pooled, np.float32)))
  np.testing.assert_allclose(recomputed, logits, atol=2e-5, rtol=0)
  # The check has teeth: attention weights of another head order, or uniform ones, give other logits.
  wrong = np.full_like(a, 1.0 / a.shape[-1])
  pooled_wrong = query + dense(np.einsum("bhn,bhnd->bhd", wrong, v).reshape(b, d), attn["out"])
  assert np.abs(np.asarray(head.apply({"params": params["head"]}, np.asarray(pooled_wrong, np.float32)))
                - logits).max() > 1e-3


def test_sowing_adds_no_parameter_and_pose_only_sows_no_tokens():
  model = clipmg.ClipMG(small_config("full"))
  frames, keypoints = make_batch(0)
  variables = jax.eval_shape(lambda r: model.init(r, frames, keypoints), jax.random.key(0))
  assert set(variables) == {"params"}  # init does not keep the intermediates
  pose_only = clipmg.ClipMG(small_config("pose_only"))
  p = jax.eval_shape(lambda r: pose_only.init(r, frames, keypoints), jax.random.key(0))["params"]
  _, state = jax.eval_shape(lambda q: pose_only.apply({"params": q}, frames, keypoints, mutable=["intermediates"]), p)
  assert not state.get("intermediates")
