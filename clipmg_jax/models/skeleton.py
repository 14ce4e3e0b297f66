"""Skeleton branch of CLIP-MG: Gaussian joint heatmaps rendered in JAX, and the 3D-CNN that encodes them.

Heatmaps are rendered inside the jitted model from raw keypoints, so the host only ships (B, T, 18, 3) floats.

Coordinate convention (OpenPose's): a keypoint (x, y) is in pixels of the H x W frame it was detected on, the
centre of pixel (row i, column k) is at (x, y) = (k, i), so the frame spans [-0.5, W - 0.5] x [-0.5, H - 0.5].
A heatmap of R_h x R_w cells covers the same area; cell (i, k) has its centre at frame coordinates
((k + 0.5) W / R_w - 0.5, (i + 0.5) H / R_h - 0.5).
"""

from typing import Any, Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp

# The heatmap sigma is specified in cells of a 256 x 256 heatmap (the paper's setting); at another resolution
# it scales with the resolution so that the blob covers the same part of the frame.
SIGMA_REFERENCE_RESOLUTION = 256


def _pair(value: Union[int, Sequence[int]]) -> tuple[int, int]:
  if isinstance(value, int):
    return value, value
  value = tuple(int(v) for v in value)
  if len(value) != 2:
    raise ValueError(f"expected an int or a (height, width) pair, got {value}")
  return value


def joint_validity(keypoints: jax.Array, frame_size: tuple[int, int], confidence_threshold: float) -> jax.Array:
  """Which joints count: (..., J, 3) -> float32 (..., J) equal to 1 or 0.

  A joint counts when its confidence is >= confidence_threshold and > 0, its coordinates are finite, and it lies
  inside the frame: 0 <= x < W and 0 <= y < H (pixels of the H x W frame).
  """
  h, w = frame_size
  x, y, c = keypoints[..., 0], keypoints[..., 1], keypoints[..., 2]
  finite = jnp.isfinite(x) & jnp.isfinite(y) & jnp.isfinite(c)
  inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
  confident = (c >= confidence_threshold) & (c > 0)
  return (finite & inside & confident).astype(jnp.float32)


def joint_weights(keypoints: jax.Array, frame_size: tuple[int, int], confidence_threshold: float) -> jax.Array:
  """Confidence of each joint where it counts (see `joint_validity`), else 0: (..., J, 3) -> float32 (..., J)."""
  valid = joint_validity(keypoints, frame_size, confidence_threshold)
  conf = jnp.where(valid > 0, keypoints[..., 2].astype(jnp.float32), 0.0)
  return conf * valid


def render_heatmaps(
    keypoints: jax.Array,
    frame_size: tuple[int, int],
    *,
    resolution: Union[int, Sequence[int]] = 256,
    sigma: float = 2.5,
    confidence_threshold: float = 0.1,
    dtype: Any = jnp.float32,
) -> jax.Array:
  """Renders one confidence-weighted Gaussian heatmap per joint.

  heat[..., i, k, j] = c_j * m_j * exp(-((k - u_j)^2 + (i - v_j)^2) / (2 s^2)), with (u_j, v_j) the joint in
  heatmap cells, u = (x + 0.5) R_w / W - 0.5, v = (y + 0.5) R_h / H - 0.5, c_j its confidence, m_j its validity
  (`joint_validity`: confident enough and inside the frame) and s = sigma * R / 256 per axis.

  Args:
    keypoints: float (..., J, 3) = (x, y, confidence), x and y in pixels of the frame.
    frame_size: (H, W) of the frame the keypoints refer to, in pixels.
    resolution: heatmap size R, an int (square) or (R_h, R_w).
    sigma: Gaussian standard deviation in cells of a 256 x 256 heatmap (scaled to the resolution).
    confidence_threshold: joints with a lower confidence contribute nothing.
    dtype: output dtype (computation is float32).

  Returns:
    (..., R_h, R_w, J) heatmaps, channels last.
  """
  if keypoints.ndim < 2 or keypoints.shape[-1] != 3:
    raise ValueError(f"keypoints must be (..., J, 3) = (x, y, confidence), got shape {keypoints.shape}")
  frame_h, frame_w = _pair(frame_size)
  res_h, res_w = _pair(resolution)
  keypoints = keypoints.astype(jnp.float32)
  sigma_h = sigma * res_h / SIGMA_REFERENCE_RESOLUTION
  sigma_w = sigma * res_w / SIGMA_REFERENCE_RESOLUTION
  u = (keypoints[..., 0] + 0.5) * (res_w / frame_w) - 0.5  # (..., J) heatmap columns
  v = (keypoints[..., 1] + 0.5) * (res_h / frame_h) - 0.5  # (..., J) heatmap rows
  amplitude = joint_weights(keypoints, (frame_h, frame_w), confidence_threshold)  # (..., J)
  # Invalid joints may sit at NaN/inf; park them at 0 so that 0 * exp(...) stays 0.
  u = jnp.where(amplitude > 0, u, 0.0)
  v = jnp.where(amplitude > 0, v, 0.0)
  # The 2D Gaussian is separable: heat = (amplitude * g_rows) outer g_cols, which costs O(R_h + R_w) exps per
  # joint instead of O(R_h R_w).
  cols = jnp.arange(res_w, dtype=jnp.float32)
  rows = jnp.arange(res_h, dtype=jnp.float32)
  g_cols = jnp.exp(-jnp.square(cols[:, None] - u[..., None, :]) / (2 * sigma_w**2))  # (..., R_w, J)
  g_rows = jnp.exp(-jnp.square(rows[:, None] - v[..., None, :]) / (2 * sigma_h**2))  # (..., R_h, J)
  g_rows = g_rows * amplitude[..., None, :]
  heat = g_rows[..., :, None, :] * g_cols[..., None, :, :]  # (..., R_h, R_w, J)
  return heat.astype(dtype)


class SkeletonEncoder(nn.Module):
  """3D-CNN over joint heatmaps: (B, T, R, R, J) -> per-window skeleton features (B, num_windows, embed_dim).

  Each stage is a strided Conv3D (kernel `kernels[s]`, stride `strides[s]`, `features[s]` channels) followed by
  `depths[s] - 1` stride-1 3x3x3 convs; every conv is followed by GroupNorm and ReLU. The last feature map is
  averaged over space, its time axis is averaged into `num_windows` equal windows (time step t of the output
  covers input frames [t T / T', (t + 1) T / T') ), and a Dense projects 256 -> embed_dim.

  Attributes:
    features: channels of the stages.
    kernels: (kt, kh, kw) of each stage's first conv.
    strides: (st, sh, sw) of each stage's first conv.
    depths: convs per stage (>= 1).
    embed_dim: output width.
    num_windows: output time steps; the CNN's output length must be a multiple of it.
    num_groups: GroupNorm groups (must divide every entry of features).
    dtype: compute dtype; parameters are float32.
  """

  features: Sequence[int] = (64, 128, 256)
  kernels: Sequence[Sequence[int]] = ((3, 5, 5), (3, 3, 3), (3, 3, 3))
  strides: Sequence[Sequence[int]] = ((2, 4, 4), (2, 2, 2), (1, 2, 2))
  depths: Sequence[int] = (1, 1, 1)
  embed_dim: int = 512
  num_windows: int = 8
  num_groups: int = 16
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, heatmaps: jax.Array) -> jax.Array:
    """heatmaps: (B, T, R_h, R_w, J) -> (B, num_windows, embed_dim)."""
    if not len(self.features) == len(self.kernels) == len(self.strides) == len(self.depths):
      raise ValueError("features, kernels, strides and depths must have one entry per stage")
    x = heatmaps.astype(self.dtype)
    for stage, (width, kernel, stride, depth) in enumerate(
        zip(self.features, self.kernels, self.strides, self.depths)):
      for block in range(depth):
        x = nn.Conv(
            width,
            kernel_size=tuple(kernel) if block == 0 else (3, 3, 3),
            strides=tuple(stride) if block == 0 else (1, 1, 1),
            padding="SAME",
            use_bias=False,  # GroupNorm's bias follows.
            dtype=self.dtype,
            param_dtype=jnp.float32,
            name=f"stage{stage}_conv{block}")(x)
        x = nn.GroupNorm(num_groups=self.num_groups, dtype=self.dtype, param_dtype=jnp.float32,
                         name=f"stage{stage}_norm{block}")(x)
        x = nn.relu(x)
    b, steps = x.shape[:2]
    if steps % self.num_windows:
      raise ValueError(
          f"the 3D-CNN turns {heatmaps.shape[1]} pose frames into {steps} time steps, which do not split into "
          f"{self.num_windows} windows; change the temporal strides or num_pose_frames")
    x = jnp.mean(x.astype(jnp.float32), axis=(2, 3))  # (B, T', C), averaged in float32
    x = x.reshape(b, self.num_windows, steps // self.num_windows, -1).mean(axis=2)  # (B, num_windows, C)
    return nn.Dense(self.embed_dim, dtype=self.dtype, param_dtype=jnp.float32, name="proj")(x)
