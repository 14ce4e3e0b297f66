"""CLIP-MG: pose-guided semantic query, gated fusion and cross-attention pooling over CLIP patch tokens.

Shapes: B clips, T = num_frames RGB frames (8), T_p = num_pose_frames (32), J = 18 joints, P = patches per frame
(196 for 224 x 224 frames and patch 16), D = ViT width (768), S = skeleton feature width (512).
The equations, their reasons and the parameter/FLOP table are in docs/method.md.

Variants (config.variant; which parts each uses is the table variants.USES), each a model of its own whose unused
parameters do not exist:
  full                 tokens, pose-guided query, skeleton feature, gate, cross-attention, head.
  visual_only          no keypoints at all: mean-patch query, cross-attention over plain tokens, head.
  pose_only            no RGB at all: skeleton feature (averaged over windows) -> head.
  no_guidance          as full, but the patch weights are uniform (the query is the mean patch token).
  no_cross_attention   as full, but the gated query itself is classified.
  no_gate              as full, with the gate fixed at 1 (always fully pose-driven).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from clipmg_jax.models import skeleton as skeleton_lib
from clipmg_jax.models import variants as variants_lib
from clipmg_jax.models import vit as vit_lib

VARIANTS = variants_lib.VARIANTS  # what each one uses: variants_lib.USES

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def get_model_config(vit: Any = "B/16", **overrides) -> ml_collections.ConfigDict:
  """The model configuration; the defaults are the paper's setup (ViT-B/16, 8 RGB / 32 pose frames).

  Args:
    vit: a name in VIT_CONFIGS ("B/16", "tiny", ...) or a dict of VisionTransformer fields.
    **overrides: values to replace, nested dicts (heatmap=dict(resolution=64)) or dotted keys
      (**{"heatmap.resolution": 64}). Unknown keys raise KeyError.
  """
  config = ml_collections.ConfigDict()
  config.vit = vit if isinstance(vit, str) else dict(vit)
  config.num_classes = 32
  config.num_frames = 8  # RGB frames T
  config.num_pose_frames = 32  # pose frames T_p; window t holds pose frames [t T_p/T, (t+1) T_p/T)
  config.num_joints = 18  # COCO-18
  config.trainable_blocks = 2  # last ViT blocks updated (plus ln_post); the rest is frozen
  config.variant = "full"
  config.dtype = "float32"  # compute dtype: "float32" | "bfloat16"; parameters are always float32
  # Rematerialisation (memory for time; the function is unchanged): "vit" recomputes each trainable ViT block's
  # activations in the backward pass, "skeleton" the 3D-CNN's; e.g. ("vit", "skeleton"). docs/performance.md.
  config.remat = ()
  # Joints with confidence below this, or outside the frame, count for nothing (heatmaps, patch weights, gate).
  config.confidence_threshold = 0.1
  config.heatmap = ml_collections.ConfigDict(dict(
      resolution=256,  # heatmap cells per side (int or (R_h, R_w))
      sigma=2.5,  # Gaussian sigma in cells of a 256 x 256 heatmap; scales with the resolution
  ))
  config.skeleton = ml_collections.ConfigDict(dict(
      features=(64, 128, 256),
      kernels=((3, 5, 5), (3, 3, 3), (3, 3, 3)),
      strides=((2, 4, 4), (2, 2, 2), (1, 2, 2)),  # 32 x 256^2 -> 16 x 64^2 -> 8 x 32^2 -> 8 x 16^2
      depths=(1, 2, 2),
      embed_dim=512,
      num_groups=16,
      # How it is computed, not what: "separable" builds the stem's output from each heatmap's row and column
      # factors, "heatmaps" renders and convolves them; conv "auto" = im2col matmuls on CPU, XLA convs elsewhere.
      stem="separable",
      conv="auto",
  ))
  config.patch_weights = ml_collections.ConfigDict(dict(
      sigma=1.0,  # Gaussian kernel width in patches (1.0 = 16 px at patch 16)
      uniform_mass=1e-3,  # added to every patch before normalising: no valid joint -> uniform weights
  ))
  config.gate = ml_collections.ConfigDict(dict(
      confidence_scale_init=4.0,  # initial a in g = sigmoid(u . LN(s_t) + a r_t + b)
      bias_init=-2.0,  # initial b: g = 0.12 with no reliable joint, 0.88 with all joints at confidence 1
  ))
  config.cross_attention = ml_collections.ConfigDict(dict(num_heads=0))  # 0 = as many heads as the ViT
  # Two additions beyond the paper, off by default (clipmg_jax/models/variants.py EXTRAS turns both on):
  # pose_context: the head also gets the gated skeleton feature mean_t g_t LN(s_t) (variants with a skeleton).
  # pose_aux_weight > 0: an auxiliary pose-only head on mean_t s_t whose loss, times this weight, is added in
  # training (variants with both towers); predictions always come from the main head.
  config.head = ml_collections.ConfigDict(dict(hidden_dim=512, dropout=0.1, pose_context=False, pose_aux_weight=0.0))
  flat = {k: v for k, v in overrides.items() if "." in k}
  nested = {k: v for k, v in overrides.items() if "." not in k}
  unknown = sorted(k for k in nested if k not in config)
  if unknown:
    raise KeyError(f"unknown model config keys {unknown}; known: {sorted(config.keys())}")
  config.update(nested)
  if flat:
    config.update_from_flattened_dict(flat)
  validate_config(config)
  return config


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the field when the configuration is inconsistent."""
  if config.variant not in VARIANTS:
    raise ValueError(f"config.variant={config.variant!r}; expected one of {VARIANTS}")
  if config.dtype not in _DTYPES:
    raise ValueError(f"config.dtype={config.dtype!r}; expected one of {sorted(_DTYPES)}")
  if config.num_pose_frames % config.num_frames:
    raise ValueError(f"num_pose_frames={config.num_pose_frames} is not a multiple of num_frames="
                     f"{config.num_frames}; each RGB frame needs a whole window of pose frames")
  remat_parts(config)
  layers = vit_fields(config)["layers"]
  if config.head.pose_aux_weight < 0:
    raise ValueError(f"head.pose_aux_weight={config.head.pose_aux_weight} must be >= 0")
  if not 0 <= config.trainable_blocks <= layers:
    raise ValueError(f"trainable_blocks={config.trainable_blocks} outside [0, {layers}] for ViT {config.vit!r}")


def vit_fields(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """VisionTransformer fields of the model's tower. proj_dim is dropped: CLIP-MG uses tokens, not the embedding."""
  vit = config.vit if isinstance(config.vit, str) else dict(config.vit)
  fields = vit_lib.vit_config(vit)
  fields.pop("dtype", None)
  fields["proj_dim"] = None
  return fields


def remat_parts(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  parts = config.get("remat", ()) or ()
  parts = (parts,) if isinstance(parts, str) else tuple(parts)
  unknown = set(parts) - {"vit", "skeleton"}
  if unknown:
    raise ValueError(f"remat={parts!r}: unknown parts {sorted(unknown)}; expected some of ('vit', 'skeleton')")
  return parts


def compute_dtype(config: ml_collections.ConfigDict) -> Any:
  return _DTYPES[config.dtype]


# ----------------------------------------------------------------------------------------------- pose geometry


def patch_centres(frame_size: tuple[int, int], patch_size: int) -> jax.Array:
  """Centres of the (H/p) x (W/p) patches in pixels of the frame, row-major: (P, 2) = (x, y).

  Patch (r, c) covers pixels [c p, (c+1) p - 1] x [r p, (r+1) p - 1]; pixel centres sit at integer coordinates.
  """
  h, w = frame_size
  if h % patch_size or w % patch_size:
    raise ValueError(f"frame size {h}x{w} is not a multiple of the patch size {patch_size}")
  offset = (patch_size - 1) / 2
  xs = jnp.arange(w // patch_size, dtype=jnp.float32) * patch_size + offset
  ys = jnp.arange(h // patch_size, dtype=jnp.float32) * patch_size + offset
  grid_y, grid_x = jnp.meshgrid(ys, xs, indexing="ij")
  return jnp.stack([grid_x.reshape(-1), grid_y.reshape(-1)], axis=-1)


def _windows(x: jax.Array, num_windows: int) -> jax.Array:
  """(B, T_p, ...) -> (B, num_windows, T_p / num_windows, ...): consecutive pose frames grouped per RGB frame."""
  b, tp = x.shape[:2]
  if tp % num_windows:
    raise ValueError(f"{tp} pose frames do not split into {num_windows} windows")
  return x.reshape(b, num_windows, tp // num_windows, *x.shape[2:])


def patch_weights(
    keypoints: jax.Array,
    frame_size: tuple[int, int],
    patch_size: int,
    num_windows: int,
    *,
    sigma: float = 1.0,
    uniform_mass: float = 1e-3,
    confidence_threshold: float = 0.1,
) -> jax.Array:
  """Pose-guided patch weights w[b, t, p], summing to 1 over the patches of each RGB frame.

  S[t, p] = mean over the pose frames tau of window t of sum_j c_{tau j} m_{tau j} exp(-|x_{tau j} - o_p|^2 /
  (2 (sigma p)^2)),   w[t, p] = (S[t, p] + uniform_mass) / sum_p' (S[t, p'] + uniform_mass),
  with x_{tau j} the joint in pixels, o_p the patch centre, c its confidence and m its validity. A joint with
  zero (or sub-threshold) confidence adds exactly 0 to S, so it changes nothing; a window with no valid joint
  gets uniform weights 1/P.

  Args:
    keypoints: (B, T_p, J, 3) in pixels of the H x W frames.
    frame_size: (H, W).
    patch_size: ViT patch side p in pixels.
    num_windows: T; T_p must be a multiple of it.
    sigma: kernel width in patches.
    uniform_mass: mass added to every patch before normalising (> 0).
    confidence_threshold: see skeleton.joint_validity.

  Returns:
    float32 (B, T, P), P = (H/p) (W/p) in row-major patch order (the ViT's token order).
  """
  if uniform_mass <= 0:
    raise ValueError(f"uniform_mass must be > 0, got {uniform_mass}")
  keypoints = keypoints.astype(jnp.float32)
  conf = skeleton_lib.joint_weights(keypoints, frame_size, confidence_threshold)  # (B, T_p, J)
  xy = jnp.where(conf[..., None] > 0, keypoints[..., :2], 0.0)  # park invalid (maybe NaN) joints at 0
  centres = patch_centres(frame_size, patch_size)  # (P, 2)
  dist2 = jnp.sum(jnp.square(xy[..., None, :] - centres), axis=-1)  # (B, T_p, J, P)
  kernel = jnp.exp(-dist2 / (2 * (sigma * patch_size) ** 2))
  score = jnp.einsum("btj,btjp->btp", conf, kernel)  # (B, T_p, P)
  score = _windows(score, num_windows).mean(axis=2) + uniform_mass  # (B, T, P)
  return score / jnp.sum(score, axis=-1, keepdims=True)


def window_reliability(
    keypoints: jax.Array, frame_size: tuple[int, int], num_windows: int, confidence_threshold: float = 0.1,
) -> jax.Array:
  """Pose reliability r[b, t] in [0, 1]: mean of c m over the joints and pose frames of window t. (B, T)."""
  conf = skeleton_lib.joint_weights(keypoints, frame_size, confidence_threshold)  # (B, T_p, J)
  return _windows(conf, num_windows).mean(axis=(2, 3))


# -------------------------------------------------------------------------------------------------- modules


class PoseGate(nn.Module):
  """g[b, t] = sigmoid(u . LN(s[b, t]) + a r[b, t] + b): how much pose information enters frame t.

  u starts at 0, so at initialisation the gate follows pose reliability only; a and b are learnable scalars.
  """

  confidence_scale_init: float = 4.0
  bias_init: float = -2.0

  @nn.compact
  def __call__(self, skeleton_features: jax.Array, reliability: jax.Array) -> jax.Array:
    """skeleton_features (B, T, S), reliability (B, T) in [0, 1] -> gate float32 (B, T) in [0, 1]."""
    # No affine LN parameters: a scale and shift would be redundant with u and b.
    x = nn.LayerNorm(use_scale=False, use_bias=False, name="norm")(skeleton_features.astype(jnp.float32))
    feature_term = nn.Dense(1, use_bias=False, kernel_init=nn.initializers.zeros, param_dtype=jnp.float32,
                            name="feature")(x)[..., 0]
    scale = self.param("confidence_scale", nn.initializers.constant(self.confidence_scale_init), (), jnp.float32)
    bias = self.param("bias", nn.initializers.constant(self.bias_init), (), jnp.float32)
    return jax.nn.sigmoid(feature_term + scale * reliability.astype(jnp.float32) + bias)


class CrossAttentionPool(nn.Module):
  """One query attends over N tokens: out = q + W_o MHA(LN_q(q), LN_kv(tokens)); new projections.

  Sows into "intermediates", when it is mutable: "attention_weights" (B, H, N), each head's softmax weights over the
  tokens, and "values" (B, H, N, D/H), the projected values they average (out = q + W_o concat_h sum_n a v).

  Attributes:
    num_heads: attention heads (must divide D).
    dtype: compute dtype; the softmax runs in float32.
  """

  num_heads: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, query: jax.Array, tokens: jax.Array) -> jax.Array:
    """query (B, D), tokens (B, N, D) -> (B, D)."""
    b, n, d = tokens.shape
    if d % self.num_heads:
      raise ValueError(f"width {d} is not divisible by {self.num_heads} heads")
    head_dim = d // self.num_heads
    dense = lambda name: nn.Dense(d, dtype=self.dtype, param_dtype=jnp.float32, name=name)
    ln = lambda name: nn.LayerNorm(dtype=self.dtype, param_dtype=jnp.float32, name=name)
    q = dense("query")(ln("ln_query")(query)) * jnp.asarray(head_dim**-0.5, self.dtype)
    q = q.reshape(b, self.num_heads, 1, head_dim)
    kv = ln("ln_tokens")(tokens)
    split = lambda y: y.reshape(b, n, self.num_heads, head_dim).transpose(0, 2, 1, 3)  # (B, H, N, Dh)
    # vit_lib.attend's two steps, spelled out so that the weights can be sown (the same operations, bit for bit).
    weights = vit_lib.attention_weights(q, split(dense("key")(kv)), self.dtype)  # (B, H, 1, N)
    values = split(dense("value")(kv))
    self.sow("intermediates", "attention_weights", weights[:, :, 0])
    self.sow("intermediates", "values", values)
    out = jnp.matmul(weights, values).reshape(b, d)
    return query.astype(jnp.float32) + dense("out")(out).astype(jnp.float32)


class ClassifierHead(nn.Module):
  """LN -> Dense(hidden) [+ W_c context] -> GELU -> Dropout -> Dense(num_classes) -> float32 logits (B, num_classes).

  `context` (B, C), when given, enters the hidden layer through its own bias-free weights W_c (parameter
  "context"), so a zero context computes exactly the head without one.
  """

  num_classes: int
  hidden_dim: int
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, context: jax.Array | None = None, *, train: bool = False) -> jax.Array:
    x = nn.LayerNorm(dtype=self.dtype, param_dtype=jnp.float32, name="norm")(x)
    x = nn.Dense(self.hidden_dim, dtype=self.dtype, param_dtype=jnp.float32, name="hidden")(x)
    if context is not None:
      x = x + nn.Dense(self.hidden_dim, use_bias=False, dtype=self.dtype, param_dtype=jnp.float32,
                       name="context")(context.astype(self.dtype))
    x = nn.gelu(x)
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    x = nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32, name="out")(x)
    return x.astype(jnp.float32)


class ClipMG(nn.Module):
  """CLIP-MG classifier; see the module docstring for the variants and docs/method.md for the equations.

  Parameter tree (top level): vit, skeleton_encoder, skeleton_embed, gate, cross_attention, head, pose_aux_head —
  each present only in the variants that use it. With head.pose_aux_weight > 0 the variants with both towers sow
  the auxiliary pose logits (B, num_classes) into the "aux" collection (key "pose_logits") when it is mutable.
  The variants with both towers sow into "intermediates", when it is mutable: "reliability" r (B, T), and where
  they exist "patch_weights" w (B, T, P) and "gate_values" g (B, T) — the values the forward pass used. For
  inspection (clipmg_jax/inspect_clip.py) every variant with a vision tower also sows "patch_tokens" (B, T, P, D), the
  tokens after ln_post, and "pooling_query" (B, D), the query of the cross-attention (or of the head without one);
  the variants with both towers "skeleton_embedding" e (B, T, D); and CrossAttentionPool its weights and values
  (key "cross_attention"). Sowing changes no value and no parameter; callers that do not ask for the collection
  (training) never compute any of it, and a jitted caller that does not return a sown value drops it.
  """

  config: ml_collections.ConfigDict

  def _check_inputs(self, frames: jax.Array, keypoints: jax.Array) -> None:
    cfg = self.config
    if frames.ndim != 5 or frames.shape[1] != cfg.num_frames or frames.shape[-1] != 3:
      raise ValueError(f"frames must be (B, {cfg.num_frames}, H, W, 3) CLIP-normalised floats, got {frames.shape}")
    expected = (frames.shape[0], cfg.num_pose_frames, cfg.num_joints, 3)
    if tuple(keypoints.shape) != expected:
      raise ValueError(f"keypoints must be {expected} = (B, pose frames, joints, x/y/confidence), "
                       f"got {tuple(keypoints.shape)}")

  def _visual_tokens(self, frames: jax.Array) -> jax.Array:
    """(B, T, H, W, 3) -> patch tokens after ln_post, (B, T, P, D) in the compute dtype."""
    cfg = self.config
    fields = vit_fields(cfg)
    vit = vit_lib.VisionTransformer(**fields, dtype=compute_dtype(cfg), remat="vit" in remat_parts(cfg),
                                    name="vit")
    b, t, h, w, c = frames.shape
    # All B*T frames go through the tower as one batch; the frozen prefix runs under stop_gradient.
    hidden = vit(frames.reshape(b * t, h, w, c).astype(compute_dtype(cfg)),
                 frozen_blocks=fields["layers"] - cfg.trainable_blocks)["last_hidden_state"]
    # CLIP's ln_post is applied to every patch token (it is trained to normalise the final residual stream).
    tokens = vit.ln_post(hidden[:, 1:])
    return tokens.reshape(b, t, tokens.shape[1], tokens.shape[2])

  def _skeleton_features(self, keypoints: jax.Array, frame_size: tuple[int, int]) -> jax.Array:
    """(B, T_p, J, 3) -> per-window skeleton features (B, T, S): heatmaps + 3D-CNN."""
    return skeleton_encoder(self.config, name="skeleton_encoder")(keypoints, frame_size)

  def _fuse_pose(self, tokens: jax.Array, query_vision: jax.Array, skeleton_features: jax.Array,
                 keypoints: jax.Array, frame_size: tuple[int, int]) -> tuple[jax.Array, jax.Array, jax.Array | None]:
    """Gated pose fusion (docs/method.md sections 5-6).

    Args:
      tokens: (B, T, P, D) patch tokens after ln_post.
      query_vision: (B, T, D) mean patch token of each frame.
      skeleton_features: (B, T, S) per-window skeleton features.
      keypoints: (B, T_p, J, 3) in pixels of the frames.
      frame_size: (H, W).

    Returns:
      gated per-frame queries float32 (B, T, D), gated tokens (B, T, P, D) in the compute dtype, and the gated
      pose context float32 (B, S) = mean_t g_t LN(s_t) for the classifier head (None without head.pose_context).
    """
    cfg, dtype = self.config, compute_dtype(self.config)
    uses = variants_lib.uses(cfg.variant)
    b, t, _, d = tokens.shape
    tokens32 = tokens.astype(jnp.float32)
    skeleton_embed = nn.Dense(d, dtype=dtype, param_dtype=jnp.float32, name="skeleton_embed")(
        nn.LayerNorm(dtype=dtype, param_dtype=jnp.float32, name="skeleton_norm")(skeleton_features))
    skeleton_embed = skeleton_embed.astype(jnp.float32)  # (B, T, D)
    self.sow("intermediates", "skeleton_embedding", skeleton_embed)  # "skeleton_embed" names the Dense
    # Sown values (collection "intermediates", mutable only in the eval step) feed the pose monitoring of
    # evaluation (clipmg_jax/training/pose_monitoring.py); sow is a no-op when the collection is not mutable.
    reliability = window_reliability(keypoints, frame_size, t, cfg.confidence_threshold)  # (B, T)
    self.sow("intermediates", "reliability", reliability)
    if uses.guidance:
      weights = patch_weights(
          keypoints, frame_size, vit_fields(cfg)["patch_size"], t, sigma=cfg.patch_weights.sigma,
          uniform_mass=cfg.patch_weights.uniform_mass, confidence_threshold=cfg.confidence_threshold)
      self.sow("intermediates", "patch_weights", weights)
      query_pose = jnp.einsum("btp,btpd->btd", weights, tokens32)  # (B, T, D)
    else:  # no_guidance: uniform patch weights
      query_pose = query_vision
    if uses.gate:
      gate = PoseGate(cfg.gate.confidence_scale_init, cfg.gate.bias_init, name="gate")(
          skeleton_features, reliability)[..., None]  # (B, T, 1)
      self.sow("intermediates", "gate_values", gate[..., 0])  # "gate" names the module
    else:  # no_gate: always fully pose-driven
      gate = jnp.ones((b, t, 1), jnp.float32)
    # g = 0: exactly the vision-only computation; g = 1: pose-guided query plus skeleton context.
    query = query_vision + gate * (query_pose - query_vision + skeleton_embed)  # (B, T, D)
    tokens = (tokens32 + (gate * skeleton_embed)[:, :, None, :]).astype(dtype)  # (B, T, P, D)
    if not cfg.head.pose_context:
      return query, tokens, None
    # The head also sees the gated skeleton feature on its own channels, not only mixed into the D-wide visual
    # stream: there its (subject-specific) visual variance would drown the small pose motions. g = 0 -> zero.
    normed = nn.LayerNorm(use_scale=False, use_bias=False, dtype=jnp.float32, name="context_norm")(
        skeleton_features.astype(jnp.float32))
    context = jnp.mean(gate * normed, axis=1)  # (B, S)
    return query, tokens, context

  @nn.compact
  def __call__(self, frames: jax.Array, keypoints: jax.Array, *, train: bool = False) -> jax.Array:
    """Logits for a batch of clips.

    Args:
      frames: float (B, T, H, W, 3), CLIP-normalised (vit.normalize_images).
      keypoints: float (B, T_p, J, 3) = (x, y, confidence), x and y in pixels of the H x W frames.
      train: enables dropout (needs the 'dropout' rng).

    Returns:
      float32 logits (B, num_classes).
    """
    cfg = self.config
    validate_config(cfg)
    self._check_inputs(frames, keypoints)
    uses, dtype = variants_lib.uses(cfg.variant), compute_dtype(cfg)
    b, t, h, w, _ = frames.shape
    head = ClassifierHead(cfg.num_classes, cfg.head.hidden_dim, cfg.head.dropout, dtype, name="head")

    if not uses.vision:  # pose_only
      features = self._skeleton_features(keypoints, (h, w))  # (B, T, S)
      return head(jnp.mean(features.astype(jnp.float32), axis=1), train=train)

    tokens = self._visual_tokens(frames)  # (B, T, P, D)
    self.sow("intermediates", "patch_tokens", tokens)
    query_vision = jnp.mean(tokens.astype(jnp.float32), axis=2)  # (B, T, D): uniform patch weights
    context = None
    if not uses.skeleton:  # visual_only
      query = query_vision
    else:
      skeleton_features = self._skeleton_features(keypoints, (h, w))  # (B, T, S)
      if cfg.head.pose_aux_weight > 0:
        # Auxiliary pose-only classifier (docs/method.md section 8): its loss keeps the skeleton tower learning the
        # pose classes however much the fused head leans on the visual tokens. Sown into the "aux" collection,
        # which only the train step asks for; evaluation never computes it.
        aux_head = ClassifierHead(cfg.num_classes, cfg.head.hidden_dim, cfg.head.dropout, dtype,
                                  name="pose_aux_head")
        self.sow("aux", "pose_logits", aux_head(jnp.mean(skeleton_features.astype(jnp.float32), axis=1),
                                                train=train))
      query, tokens, context = self._fuse_pose(tokens, query_vision, skeleton_features, keypoints, (h, w))

    d = tokens.shape[-1]
    query = jnp.mean(query, axis=1)  # (B, D): one semantic query per clip
    self.sow("intermediates", "pooling_query", query)
    if not uses.cross_attention:
      return head(query.astype(dtype), context, train=train)
    num_heads = cfg.cross_attention.num_heads or vit_fields(cfg)["heads"]
    pooled = CrossAttentionPool(num_heads, dtype, name="cross_attention")(
        query.astype(dtype), tokens.reshape(b, -1, d))  # over all T*P tokens of the clip
    return head(pooled.astype(dtype), context, train=train)


def skeleton_encoder(config: ml_collections.ConfigDict, **kwargs) -> skeleton_lib.SkeletonEncoder:
  """The SkeletonEncoder of a model config (heatmap settings, CNN shape, implementation, dtype)."""
  sk = config.skeleton
  # frame_size (argument 2, counting self) is static under remat.
  encoder = (nn.remat(skeleton_lib.SkeletonEncoder, static_argnums=(2,)) if "skeleton" in remat_parts(config)
             else skeleton_lib.SkeletonEncoder)
  return encoder(
      features=tuple(sk.features), kernels=tuple(map(tuple, sk.kernels)), strides=tuple(map(tuple, sk.strides)),
      depths=tuple(sk.depths), embed_dim=sk.embed_dim, num_windows=config.num_frames, num_groups=sk.num_groups,
      resolution=config.heatmap.resolution, sigma=config.heatmap.sigma,
      confidence_threshold=config.confidence_threshold, stem=sk.get("stem", "separable"),
      conv=sk.get("conv", "auto"), dtype=compute_dtype(config), **kwargs)


# ---------------------------------------------------------------------------------------- parameter partition


def _key_name(entry: Any) -> str:
  return str(getattr(entry, "key", getattr(entry, "name", entry)))


def trainable_mask(params: Any, config: ml_collections.ConfigDict) -> Any:
  """Pytree of bools with the structure of `params` (True = updated by the optimizer).

  Trainable: the last `config.trainable_blocks` ViT blocks (params["vit"]["resblocks_<i>"]), the ViT's ln_post
  (applied to every token) and every module outside params["vit"]. Frozen: the rest of the ViT (conv1, class and
  position embeddings, ln_pre, the first blocks, and `proj` if a checkpoint brought one). Accepts the params
  collection or the whole variables dict ({"params": ...}).
  """
  if "params" in params and "vit" not in params:
    return {**{k: jax.tree.map(lambda _: False, v) for k, v in params.items() if k != "params"},
            "params": trainable_mask(params["params"], config)}
  layers = vit_fields(config)["layers"]
  trainable_vit = {f"resblocks_{i}" for i in range(layers - config.trainable_blocks, layers)} | {"ln_post"}

  def is_trainable(path, _):
    names = [_key_name(p) for p in path]
    if names[0] == "vit":
      return len(names) > 1 and names[1] in trainable_vit
    return True

  return jax.tree_util.tree_map_with_path(is_trainable, params)


def with_pretrained_vit(params: Any, vit_params: Any) -> Any:
  """Returns params with params["vit"] replaced by pretrained tower parameters (e.g. a ported CLIP checkpoint).

  Entries the model does not use (the CLIP projection `proj`) are dropped; every other leaf must match the
  model's shape, else ValueError names the path.
  """
  if "vit" not in params:
    raise ValueError("params has no 'vit' entry (the pose_only variant has no vision tower)")
  vit_params = {k: v for k, v in vit_params.items() if k != "proj"}
  expected = jax.tree_util.tree_flatten_with_path(params["vit"])[0]
  given = dict((jax.tree_util.keystr(p), v) for p, v in jax.tree_util.tree_flatten_with_path(vit_params)[0])
  for path, leaf in expected:
    key = jax.tree_util.keystr(path)
    if key not in given:
      raise ValueError(f"pretrained ViT parameters lack vit{key} (expected shape {leaf.shape})")
    if tuple(given[key].shape) != tuple(leaf.shape):
      raise ValueError(f"pretrained vit{key} has shape {tuple(given[key].shape)}, model expects {leaf.shape}")
  extra = sorted(set(given) - {jax.tree_util.keystr(p) for p, _ in expected})
  if extra:
    raise ValueError(f"pretrained ViT parameters hold entries the model does not have: {extra[:5]}")
  return {**params, "vit": jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), vit_params)}
