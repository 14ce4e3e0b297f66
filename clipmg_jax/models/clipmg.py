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

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from clipmg_jax.models import clipmg_config
from clipmg_jax.models import clipmg_params
from clipmg_jax.models import pose_guidance
from clipmg_jax.models import readout
from clipmg_jax.models import variants as variants_lib
from clipmg_jax.models import vit as vit_lib

VARIANTS = variants_lib.VARIANTS  # what each one uses: variants_lib.USES
get_model_config = clipmg_config.get_model_config  # the configuration of ClipMG, where most callers look for it


def _robust(cfg: ml_collections.ConfigDict, field: str) -> float:
  """A robust-fusion setting of the model config (0 = off; configs written before it have none)."""
  return float((cfg.get("robust") or {}).get(field, 0.0))


def _readout_kind(cfg: ml_collections.ConfigDict) -> str:
  """robust.vision_readout: "shared", "head" or "tower" (clipmg_config.get_model_config)."""
  return (cfg.get("robust") or {}).get("vision_readout", "shared")


class _TowerTop(nn.Module):
  """Blocks [start, stop) of the ViT and ln_post, a copy with parameters of its own (the same names as the tower's,
  so that pretrained weights copy across: clipmg_params.with_pretrained_vit): tokens (B, N, D) -> (B, N, D)."""

  width: int
  heads: int
  mlp_dim: int
  start: int
  stop: int
  dtype: object = jnp.float32
  remat: bool = False

  @nn.compact
  def __call__(self, tokens: jax.Array) -> jax.Array:
    block = nn.remat(vit_lib.ResidualAttentionBlock) if self.remat else vit_lib.ResidualAttentionBlock
    for i in range(self.start, self.stop):
      tokens = block(self.width, self.heads, self.mlp_dim, self.dtype, name=f"resblocks_{i}")(tokens)
    return nn.LayerNorm(epsilon=vit_lib.LN_EPS, dtype=self.dtype, param_dtype=jnp.float32, name="ln_post")(tokens)


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

  def _check_inputs(self, frames: jax.Array | None, keypoints: jax.Array,
                    prefix_tokens: jax.Array | None) -> tuple[int, int]:
    """Checks the inputs' shapes; returns the frame size (H, W) (from the token grid when the frames are cached)."""
    cfg = self.config
    if prefix_tokens is not None:
      frame_size = self._cached_frame_size(prefix_tokens)
      batch = prefix_tokens.shape[0]
    else:
      if frames is None or frames.ndim != 5 or frames.shape[1] != cfg.num_frames or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (B, {cfg.num_frames}, H, W, 3) CLIP-normalised floats, got "
                         f"{None if frames is None else frames.shape}")
      frame_size, batch = (frames.shape[2], frames.shape[3]), frames.shape[0]
    expected = (batch, cfg.num_pose_frames, cfg.num_joints, 3)
    if tuple(keypoints.shape) != expected:
      raise ValueError(f"keypoints must be {expected} = (B, pose frames, joints, x/y/confidence), "
                       f"got {tuple(keypoints.shape)}")
    return frame_size

  def _cached_frame_size(self, prefix_tokens: jax.Array) -> tuple[int, int]:
    """(H, W) of the square frames whose prefix tokens (B, T, N, D) are given: N = [1 +] (H/p)^2."""
    cfg = self.config
    fields = clipmg_config.vit_fields(cfg)
    cls = 1 if cfg.trainable_blocks else 0  # the frozen prefix's output keeps the class token only when blocks follow
    if prefix_tokens.ndim != 4 or prefix_tokens.shape[1] != cfg.num_frames or prefix_tokens.shape[-1] != fields["width"]:
      raise ValueError(f"prefix_tokens must be (B, {cfg.num_frames}, tokens, {fields['width']}), "
                       f"got {prefix_tokens.shape}")
    side = int(round((prefix_tokens.shape[2] - cls)**0.5))
    if side * side != prefix_tokens.shape[2] - cls:
      raise ValueError(f"prefix_tokens hold {prefix_tokens.shape[2]} tokens per frame: not {cls} + a square grid")
    return side * fields["patch_size"], side * fields["patch_size"]

  def _visual_tokens(self, frames: jax.Array | None, prefix_tokens: jax.Array | None = None,
                     vision_top: bool = False) -> tuple[jax.Array, jax.Array | None]:
    """(B, T, H, W, 3) frames, or the frozen prefix's output tokens (B, T, N, D) of a cache, -> patch tokens after
    ln_post, (B, T, P, D) in the compute dtype. From cached tokens only the trainable blocks run: the result is the
    same function of the same pixels (the prefix is frozen, under stop_gradient, and has no dropout).

    With vision_top (robust fusion's vision classifier with a tower of its own) also the tokens of a copy of the
    trainable blocks and ln_post ("vision_top") over the same prefix; else None in their place."""
    cfg = self.config
    fields = clipmg_config.vit_fields(cfg)
    dtype = clipmg_config.compute_dtype(cfg)
    remat = "vit" in clipmg_config.remat_parts(cfg)
    vit = vit_lib.VisionTransformer(**fields, dtype=dtype, remat=remat, name="vit")
    layers = fields["layers"]
    frozen = layers - cfg.trainable_blocks
    if prefix_tokens is not None:
      b, t, n, d = prefix_tokens.shape
      prefix = prefix_tokens.reshape(b * t, n, d).astype(dtype)
      hidden = vit.run_blocks(prefix, frozen, layers)[:, 1:] if frozen < layers else prefix
    elif not vision_top:
      b, t, h, w, c = frames.shape
      # All B*T frames go through the tower as one batch; the frozen prefix runs under stop_gradient.
      hidden = vit(frames.reshape(b * t, h, w, c).astype(dtype), frozen_blocks=frozen)["last_hidden_state"][:, 1:]
    else:  # the tower's own computation, spelled out, so that the prefix's output feeds both tops
      b, t, h, w, c = frames.shape
      prefix = vit.embed(frames.reshape(b * t, h, w, c).astype(dtype))
      if frozen:
        prefix = jax.lax.stop_gradient(vit.run_blocks(prefix, 0, frozen))
      hidden = vit.run_blocks(prefix, frozen, layers)[:, 1:]
    # CLIP's ln_post is applied to every patch token (it is trained to normalise the final residual stream).
    tokens = vit.ln_post(hidden)
    shape = (b, t, tokens.shape[1], tokens.shape[2])
    if not vision_top:
      return tokens.reshape(shape), None
    top = _TowerTop(fields["width"], fields["heads"], fields["mlp_dim"], frozen, layers, dtype, remat,
                    name=clipmg_params.VISION_TOP)(prefix)
    has_class_token = prefix_tokens is None or frozen < layers  # a cache without trainable blocks drops it
    return tokens.reshape(shape), (top[:, 1:] if has_class_token else top).reshape(shape)

  def _skeleton_features(self, keypoints: jax.Array, frame_size: tuple[int, int]) -> jax.Array:
    """(B, T_p, J, 3) -> per-window skeleton features (B, T, S): heatmaps + 3D-CNN."""
    return clipmg_config.skeleton_encoder(self.config, name="skeleton_encoder")(keypoints, frame_size)

  def _fuse_pose(self, tokens: jax.Array, query_vision: jax.Array, skeleton_features: jax.Array,
                 keypoints: jax.Array, reliability: jax.Array, frame_size: tuple[int, int]
                 ) -> tuple[jax.Array, jax.Array, jax.Array | None]:
    """Gated pose fusion (docs/method.md sections 5-6).

    Args:
      tokens: (B, T, P, D) patch tokens after ln_post.
      query_vision: (B, T, D) mean patch token of each frame.
      skeleton_features: (B, T, S) per-window skeleton features.
      keypoints: (B, T_p, J, 3) in pixels of the frames.
      reliability: (B, T) pose reliability r of each window (pose_guidance.window_reliability).
      frame_size: (H, W).

    Returns:
      gated per-frame queries float32 (B, T, D), gated tokens (B, T, P, D) in the compute dtype, and the gated
      pose context float32 (B, S) = mean_t g_t LN(s_t) for the classifier head (None without head.pose_context).
    """
    cfg, dtype = self.config, clipmg_config.compute_dtype(self.config)
    uses = variants_lib.uses(cfg.variant)
    b, t, _, d = tokens.shape
    tokens32 = tokens.astype(jnp.float32)
    skeleton_embed = nn.Dense(d, dtype=dtype, param_dtype=jnp.float32, name="skeleton_embed")(
        nn.LayerNorm(dtype=dtype, param_dtype=jnp.float32, name="skeleton_norm")(skeleton_features))
    skeleton_embed = skeleton_embed.astype(jnp.float32)  # (B, T, D)
    self.sow("intermediates", "skeleton_embedding", skeleton_embed)  # "skeleton_embed" names the Dense
    # Sown values (collection "intermediates", mutable only in the eval step) feed the pose monitoring of
    # evaluation (clipmg_jax/training/pose_monitoring.py); sow is a no-op when the collection is not mutable.
    self.sow("intermediates", "reliability", reliability)
    if uses.guidance:
      weights = pose_guidance.patch_weights(
          keypoints, frame_size, clipmg_config.vit_fields(cfg)["patch_size"], t, sigma=cfg.patch_weights.sigma,
          uniform_mass=cfg.patch_weights.uniform_mass, confidence_threshold=cfg.confidence_threshold)
      self.sow("intermediates", "patch_weights", weights)
      query_pose = jnp.einsum("btp,btpd->btd", weights, tokens32)  # (B, T, D)
    else:  # no_guidance: uniform patch weights
      query_pose = query_vision
    if uses.gate:
      gate = pose_guidance.PoseGate(cfg.gate.confidence_scale_init, cfg.gate.bias_init, name="gate")(
          skeleton_features, reliability)[..., None]  # (B, T, 1)
    else:  # no_gate: always fully pose-driven
      gate = jnp.ones((b, t, 1), jnp.float32)
    floor = _robust(cfg, "reliability_floor") if _readout_kind(cfg) == "shared" else 0.0
    if floor > 0:
      # Robust fusion through the shared readout: pose below the reliability floor is ignored, linearly, down to
      # exactly g = 0 (the vision path) for a window without a usable joint; the learned gate cannot keep a little
      # pose open there. (A vision classifier of its own takes over at the output instead, leaving the gate as is.)
      gate = gate * jnp.clip(reliability / floor, 0.0, 1.0)[..., None]
    if uses.gate or floor > 0:
      self.sow("intermediates", "gate_values", gate[..., 0])  # "gate" names the module
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
  def __call__(self, frames: jax.Array | None, keypoints: jax.Array, *, train: bool = False,
               prefix_tokens: jax.Array | None = None) -> jax.Array:
    """Logits for a batch of clips.

    Args:
      frames: float (B, T, H, W, 3), CLIP-normalised (vit.normalize_images); None with prefix_tokens.
      keypoints: float (B, T_p, J, 3) = (x, y, confidence), x and y in pixels of the H x W frames.
      train: enables dropout (needs the 'dropout' rng).
      prefix_tokens: instead of frames, the frozen ViT prefix's output for them (B, T, N, D) (a prefix cache,
        clipmg_jax/training/prefix_cache.py): N = 1 + P with the class token, N = P when no block is trainable; the
        frames are square, H = W = sqrt(P) * patch size.

    Returns:
      float32 logits (B, num_classes).
    """
    cfg = self.config
    clipmg_config.validate_config(cfg)
    h, w = self._check_inputs(frames, keypoints, prefix_tokens)
    uses, dtype = variants_lib.uses(cfg.variant), clipmg_config.compute_dtype(cfg)
    b = keypoints.shape[0]
    head = readout.ClassifierHead(cfg.num_classes, cfg.head.hidden_dim, cfg.head.dropout, dtype, name="head")

    if not uses.vision:  # pose_only
      features = self._skeleton_features(keypoints, (h, w))  # (B, T, S)
      return head(jnp.mean(features.astype(jnp.float32), axis=1), train=train)

    readout_kind = _readout_kind(cfg) if uses.skeleton else "shared"
    tokens, top_tokens = self._visual_tokens(frames, prefix_tokens, vision_top=readout_kind == "tower")
    self.sow("intermediates", "patch_tokens", tokens)
    query_vision = jnp.mean(tokens.astype(jnp.float32), axis=2)  # (B, T, D): uniform patch weights
    context, plain_tokens = None, tokens
    if not uses.skeleton:  # visual_only
      query = query_vision
    else:
      skeleton_features = self._skeleton_features(keypoints, (h, w))  # (B, T, S)
      if cfg.head.pose_aux_weight > 0:
        # Auxiliary pose-only classifier (docs/method.md section 8): its loss keeps the skeleton tower learning the
        # pose classes however much the fused head leans on the visual tokens. Sown into the "aux" collection,
        # which only the train step asks for; evaluation never computes it.
        aux_head = readout.ClassifierHead(cfg.num_classes, cfg.head.hidden_dim, cfg.head.dropout, dtype,
                                          name="pose_aux_head")
        self.sow("aux", "pose_logits", aux_head(jnp.mean(skeleton_features.astype(jnp.float32), axis=1),
                                                train=train))
      reliability = pose_guidance.window_reliability(keypoints, (h, w), cfg.num_frames,
                                                     cfg.confidence_threshold)  # (B, T)
      query, tokens, context = self._fuse_pose(tokens, query_vision, skeleton_features, keypoints, reliability,
                                               (h, w))

    d = tokens.shape[-1]
    num_heads = cfg.cross_attention.num_heads or clipmg_config.vit_fields(cfg)["heads"]
    pool = (readout.CrossAttentionPool(num_heads, dtype, name="cross_attention") if uses.cross_attention
            else None)

    def readout_of(query, tokens, context, pool=pool, head=head):
      """(B, T, D) per-frame queries, (B, T, P, D) tokens -> logits: one semantic query per clip, pooled over all
      T*P tokens of the clip (or classified itself without cross-attention)."""
      query = jnp.mean(query, axis=1)  # (B, D)
      if pool is None:
        return query, head(query.astype(dtype), context, train=train)
      pooled = pool(query.astype(dtype), tokens.reshape(b, -1, d))
      return query, head(pooled.astype(dtype), context, train=train)

    own_readout = readout_kind != "shared"
    if uses.skeleton and not own_readout and _robust(cfg, "vision_aux_weight") > 0 and self.is_mutable_collection(
        "aux"):
      # Robust fusion (docs/method.md "Robust fusion"): the g = 0 computation — the mean-patch query over the
      # plain tokens, no pose context — through the same readout, supervised on its own, so that the model with a
      # closed gate is a trained classifier. Only the train step asks for "aux"; evaluation never computes it.
      self.sow("aux", "vision_logits", readout_of(query_vision, plain_tokens, None)[1])
    query, logits = readout_of(query, tokens, context)
    self.sow("intermediates", "pooling_query", query)
    if own_readout:
      # Robust fusion with a vision readout of its own: a visual_only classifier over the same tokens (or, with a
      # tower top of its own, over its own), whose logits take over as the clip's pose reliability falls below
      # the floor.
      vision_tokens = plain_tokens if top_tokens is None else top_tokens
      _, vision_logits = readout_of(
          jnp.mean(vision_tokens.astype(jnp.float32), axis=2), vision_tokens, None,
          pool=readout.CrossAttentionPool(num_heads, dtype, name="vision_cross_attention") if pool else None,
          head=readout.ClassifierHead(cfg.num_classes, cfg.head.hidden_dim, cfg.head.dropout, dtype,
                                      name="vision_head"))
      self.sow("aux", "vision_logits", vision_logits)
      if _robust(cfg, "distill_weight") > 0 and self.is_mutable_collection("aux"):
        # The fused model's class probabilities, held fixed, as soft targets of the vision classifier.
        teacher = jax.nn.softmax(jax.lax.stop_gradient(logits).astype(jnp.float32), axis=-1)
        self.sow("aux", "vision_distill_loss",
                 -jnp.sum(teacher * jax.nn.log_softmax(vision_logits.astype(jnp.float32), axis=-1), axis=-1))
      lam = jnp.clip(jnp.mean(reliability, axis=1) / _robust(cfg, "reliability_floor"), 0.0, 1.0)[:, None]
      self.sow("intermediates", "fallback_weight", lam[:, 0])
      logits = lam * logits + (1.0 - lam) * vision_logits
    return logits
