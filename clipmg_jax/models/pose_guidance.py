"""Pose guidance of CLIP-MG: patch weights from the joints, per-window pose reliability, and the pose gate.

Shapes as in clipmg.py: B clips, T RGB frames, T_p pose frames, J joints, P patches per frame, S skeleton width.
docs/method.md sections 5-6 give the equations.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from clipmg_jax.models import skeleton as skeleton_lib


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
