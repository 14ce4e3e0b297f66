"""Skeleton branch of CLIP-MG: Gaussian joint heatmaps rendered in JAX, and the 3D-CNN that encodes them.

Heatmaps are rendered inside the jitted model from raw keypoints, so the host only ships (B, T, 18, 3) floats.

Two formulations of the same function (docs/method.md section 3, docs/performance.md):
- The stem (stage 0's first convolution) never sees a dense heatmap by default: each joint's Gaussian is an outer
  product of a row and a column profile, so the convolution of a heatmap channel separates into two small
  contractions (`separable_stem`). That is ~5x fewer FLOPs than the dense convolution and skips the 151 MB
  (B, 32, 256, 256, 18) float32 heatmap tensor per clip. `stem="heatmaps"` renders the heatmaps and convolves them
  (the reference; equal to 1e-6).
- The other convolutions run either as XLA convolutions or as one matmul over gathered patches (`conv3d`, im2col):
  XLA:CPU computes the gradients of strided 3D convolutions at a few percent of its matmul rate, so "auto" picks
  the matmul form on CPU and XLA's convolution (cuDNN, TPU convolutions) elsewhere.

Coordinate convention (OpenPose's): a keypoint (x, y) is in pixels of the H x W frame it was detected on, the
centre of pixel (row i, column k) is at (x, y) = (k, i), so the frame spans [-0.5, W - 0.5] x [-0.5, H - 0.5].
A heatmap of R_h x R_w cells covers the same area; cell (i, k) has its centre at frame coordinates
((k + 0.5) W / R_w - 0.5, (i + 0.5) H / R_h - 0.5).
"""

from typing import Any, Sequence, Union

import numpy as np

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

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
  res_h, res_w = _pair(resolution)
  rows, cols = _joint_profiles(keypoints, frame_size, resolution, sigma, confidence_threshold,
                               np.arange(res_h), np.arange(res_w))
  # The 2D Gaussian is separable: heat = (amplitude * g_rows) outer g_cols, which costs O(R_h + R_w) exps per
  # joint instead of O(R_h R_w).
  heat = rows[..., :, None, :] * cols[..., None, :, :]  # (..., R_h, R_w, J)
  return heat.astype(dtype)


def _joint_profiles(keypoints: jax.Array, frame_size: Any, resolution: Any, sigma: float,
                    confidence_threshold: float, row_cells: np.ndarray, col_cells: np.ndarray,
                    ) -> tuple[jax.Array, jax.Array]:
  """The row and column factors of each joint's heatmap, evaluated at given integer cells.

  Returns (rows (..., *row_cells.shape, J) including the joint's amplitude c m, cols (..., *col_cells.shape, J)),
  float32, so that heat[..., i, k, j] = rows[..., i, j] * cols[..., k, j]. Cells outside [0, R) are 0 (padding).
  """
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

  def profile(cells, centre, size, sig):
    inside = jnp.asarray((cells >= 0) & (cells < size))
    cells = jnp.asarray(cells, jnp.float32)
    lead = centre.shape[:-1]
    centre = centre.reshape(lead + (1,) * cells.ndim + centre.shape[-1:])
    g = jnp.exp(-jnp.square(cells[..., None] - centre) / (2 * sig**2))
    return jnp.where(inside[..., None], g, 0.0)

  rows = profile(row_cells, v, res_h, sigma_h)
  amplitude = amplitude.reshape(amplitude.shape[:-1] + (1,) * row_cells.ndim + amplitude.shape[-1:])
  return rows * amplitude, profile(col_cells, u, res_w, sigma_w)


# ------------------------------------------------------------------------------------------- convolutions


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int, int]:
  """XLA's "SAME" rule: (output size, padding before, padding after) of one axis."""
  out = -(-size // stride)
  total = max((out - 1) * stride + kernel - size, 0)
  return out, total // 2, total - total // 2


def _tap_indices(size: int, kernel: int, stride: int) -> np.ndarray:
  """Input index read by output o and tap d under SAME padding: (out, kernel) ints, outside [0, size) = padding."""
  out, before, _ = same_padding(size, kernel, stride)
  return np.arange(out)[:, None] * stride + np.arange(kernel)[None, :] - before


def conv3d(x: jax.Array, kernel: jax.Array, strides: Sequence[int], impl: str = "auto") -> jax.Array:
  """SAME 3D convolution, channels last: x (B, T, H, W, C), kernel (kt, kh, kw, C, O) -> (B, T', H', W', O).

  impl: "xla" (lax.conv_general_dilated), "matmul" (the kt kh kw strided slices of x concatenated along the
  channels, then one (B T' H' W', kt kh kw C) x (kt kh kw C, O) matmul: the same arithmetic, and gradients that
  are matmuls and slice-adds), or "auto" ("matmul" on CPU, "xla" on accelerators).
  """
  impl = resolve_conv_impl(impl)
  strides = tuple(int(s) for s in strides)
  if impl == "xla":
    return lax.conv_general_dilated(x, kernel, strides, "SAME", dimension_numbers=("NDHWC", "DHWIO", "NDHWC"))
  geometry = [same_padding(n, k, s) for n, k, s in zip(x.shape[1:4], kernel.shape[:3], strides)]
  padded = jnp.pad(x, ((0, 0),) + tuple((lo, hi) for _, lo, hi in geometry) + ((0, 0),))
  outs = [out for out, _, _ in geometry]
  columns = []
  for dt in range(kernel.shape[0]):
    for dy in range(kernel.shape[1]):
      for dx in range(kernel.shape[2]):
        start = (0, dt, dy, dx, 0)
        limit = (x.shape[0],) + tuple(d + (o - 1) * s + 1 for d, o, s in zip((dt, dy, dx), outs, strides))
        columns.append(lax.slice(padded, start, limit + (x.shape[4],), (1,) + strides + (1,)))
  patches = jnp.concatenate(columns, axis=-1).reshape(-1, kernel.shape[0] * kernel.shape[1] * kernel.shape[2]
                                                      * kernel.shape[3])
  out = patches @ kernel.reshape(-1, kernel.shape[-1])  # taps in (kt, kh, kw, C) order, as the kernel's layout
  return out.reshape((x.shape[0], *outs, kernel.shape[-1]))


def resolve_conv_impl(impl: str) -> str:
  if impl == "auto":
    return "matmul" if jax.default_backend() == "cpu" else "xla"
  if impl not in ("xla", "matmul"):
    raise ValueError(f"conv implementation {impl!r}; expected 'auto', 'xla' or 'matmul'")
  return impl


def separable_stem(keypoints: jax.Array, kernel: jax.Array, strides: Sequence[int], frame_size: Any, *,
                   resolution: Any = 256, sigma: float = 2.5, confidence_threshold: float = 0.1,
                   dtype: Any = jnp.float32) -> jax.Array:
  """conv3d(render_heatmaps(keypoints, ...), kernel, strides) without rendering the heatmaps.

  Heatmap channel j of pose frame t is rank one, heat[t, i, k, j] = r_tj(i) c_tj(k), so the convolution's sum over
  its (dt, dy, dx, j) window factorises:
    out[t', y, x, o] = sum_{dt, j, dy} r(s_h y + dy) ( sum_dx W[dt, dy, dx, j, o] c(s_w x + dx) ),
  with t = s_t t' + dt (SAME padding: padded cells and frames have r = c = 0). The inner sum is small (kw per
  entry); the outer one is a (Y, kt J kh) x (kt J kh, O X) matmul per clip and output frame. At paper size that
  is 2.4 GFLOP per clip instead of the dense convolution's 11.3.

  Args:
    keypoints: (B, T, J, 3) = (x, y, confidence) in pixels of the frame.
    kernel: (kt, kh, kw, J, O) the stem's convolution kernel.
    strides: (st, sh, sw).
    frame_size, resolution, sigma, confidence_threshold: as for `render_heatmaps`.
    dtype: compute dtype of the contractions (profiles are computed in float32).

  Returns:
    (B, T', R_h', R_w', O), as conv3d of the rendered heatmaps with SAME padding.
  """
  kt, kh, kw, joints, width = kernel.shape
  st, sh, sw = (int(s) for s in strides)
  res_h, res_w = _pair(resolution)
  if keypoints.ndim != 4 or keypoints.shape[2:] != (joints, 3):
    raise ValueError(f"keypoints must be (B, T, {joints}, 3) for a stem kernel {kernel.shape}, got {keypoints.shape}")
  rows, cols = _joint_profiles(keypoints, frame_size, resolution, sigma, confidence_threshold,
                               _tap_indices(res_h, kh, sh), _tap_indices(res_w, kw, sw))
  # rows (B, T, Y, kh, J), cols (B, T, X, kw, J); now gather the frames each output frame reads: (B, T', kt, ...)
  frames = _tap_indices(keypoints.shape[1], kt, st)  # (T', kt)
  frame_inside = jnp.asarray((frames >= 0) & (frames < keypoints.shape[1]), jnp.float32)
  frames = np.clip(frames, 0, keypoints.shape[1] - 1)
  rows = rows[:, frames] * frame_inside[None, :, :, None, None, None]  # (B, T', kt, Y, kh, J)
  cols = cols[:, frames]  # (B, T', kt, X, kw, J)
  b, steps, _, out_h, _, _ = rows.shape
  out_w = cols.shape[3]
  # inner[b, t', dt, j, (dy, o), x] = sum_dx W[dt, dy, dx, j, o] c(s_w x + dx): a batched matmul over
  # (b, t', dt, j) with the kernel broadcast over (b, t') (11 MB at paper size), so that its output is already in
  # the layout the second contraction reads and autodiff's transposes stay matmuls. (Written as a broadcast
  # multiply + sum, its backward materialises a 700 MB broadcast on XLA:CPU.)
  w = kernel.astype(dtype).transpose(0, 3, 1, 4, 2).reshape(kt, joints, kh * width, kw)  # (dt, j, (dy, o), dx)
  w = jnp.broadcast_to(w, (b, steps) + w.shape)
  c = cols.astype(dtype).transpose(0, 1, 2, 5, 4, 3)  # (B, T', dt, j, dx, X)
  inner = lax.dot_general(w, c, (((5,), (4,)), ((0, 1, 2, 3), (0, 1, 2, 3))))  # (B, T', dt, j, (dy, o), X)
  inner = inner.reshape(b, steps, kt * joints * kh, width * out_w)
  r = rows.astype(dtype).transpose(0, 1, 3, 2, 5, 4).reshape(b, steps, out_h, kt * joints * kh)  # (B,T',Y,K)
  out = lax.dot_general(r, inner, (((3,), (2,)), ((0, 1), (0, 1))))  # (B, T', Y, (O, X))
  return out.reshape(b, steps, out_h, width, out_w).transpose(0, 1, 2, 4, 3)


class Conv3D(nn.Module):
  """Bias-free SAME 3D convolution holding a "kernel" (kt, kh, kw, C, O) exactly as flax.linen.Conv does."""

  features: int
  kernel_size: Sequence[int]
  strides: Sequence[int]
  impl: str = "auto"
  dtype: Any = jnp.float32

  def kernel(self, in_features: int) -> jax.Array:
    shape = tuple(self.kernel_size) + (in_features, self.features)
    return self.param("kernel", nn.initializers.lecun_normal(), shape, jnp.float32)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.kernel(x.shape[-1]).astype(self.dtype)
    return conv3d(x.astype(self.dtype), kernel, self.strides, self.impl)


class SeparableStem(Conv3D):
  """The stem conv applied to keypoints: the heatmaps it would convolve are never built (see separable_stem)."""

  frame_size: Any = None
  resolution: Any = 256
  sigma: float = 2.5
  confidence_threshold: float = 0.1

  @nn.compact
  def __call__(self, keypoints: jax.Array) -> jax.Array:
    return separable_stem(keypoints, self.kernel(keypoints.shape[-2]), self.strides, self.frame_size,
                          resolution=self.resolution, sigma=self.sigma,
                          confidence_threshold=self.confidence_threshold, dtype=self.dtype)




class SkeletonEncoder(nn.Module):
  """Heatmaps + 3D-CNN over keypoints: (B, T, J, 3) -> per-window skeleton features (B, num_windows, embed_dim).

  The keypoints' Gaussian heatmaps (`render_heatmaps` with this module's resolution, sigma and threshold) go
  through stages of a strided Conv3D (kernel `kernels[s]`, stride `strides[s]`, `features[s]` channels) followed
  by `depths[s] - 1` stride-1 3x3x3 convs; every conv is followed by GroupNorm and ReLU. The last feature map is
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
    resolution, sigma, confidence_threshold: the heatmaps (see `render_heatmaps`).
    stem: "separable" (the first conv computed from the heatmaps' row and column factors, `separable_stem`) or
      "heatmaps" (render them, then convolve) — the same function.
    conv: the other convolutions' implementation, see `conv3d` ("auto", "xla" or "matmul").
    dtype: compute dtype; parameters are float32.
  """

  features: Sequence[int] = (64, 128, 256)
  kernels: Sequence[Sequence[int]] = ((3, 5, 5), (3, 3, 3), (3, 3, 3))
  strides: Sequence[Sequence[int]] = ((2, 4, 4), (2, 2, 2), (1, 2, 2))
  depths: Sequence[int] = (1, 1, 1)
  embed_dim: int = 512
  num_windows: int = 8
  num_groups: int = 16
  resolution: Any = 256
  sigma: float = 2.5
  confidence_threshold: float = 0.1
  stem: str = "separable"
  conv: str = "auto"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, keypoints: jax.Array, frame_size: tuple[int, int]) -> jax.Array:
    """keypoints (B, T, J, 3) in pixels of the frame_size = (H, W) frames -> (B, num_windows, embed_dim)."""
    if not len(self.features) == len(self.kernels) == len(self.strides) == len(self.depths):
      raise ValueError("features, kernels, strides and depths must have one entry per stage")
    if self.stem not in ("separable", "heatmaps"):
      raise ValueError(f"stem={self.stem!r}; expected 'separable' or 'heatmaps'")
    x = keypoints
    for stage, (width, kernel, stride, depth) in enumerate(
        zip(self.features, self.kernels, self.strides, self.depths)):
      for block in range(depth):
        name = f"stage{stage}_conv{block}"
        kernel_size, strides = (tuple(kernel), tuple(stride)) if block == 0 else ((3, 3, 3), (1, 1, 1))
        if stage == block == 0 and self.stem == "separable":
          x = SeparableStem(width, kernel_size, strides, self.conv, self.dtype, frame_size, self.resolution,
                            self.sigma, self.confidence_threshold, name=name)(x)
        else:
          if stage == block == 0:
            x = render_heatmaps(x, frame_size, resolution=self.resolution, sigma=self.sigma,
                                confidence_threshold=self.confidence_threshold, dtype=self.dtype)
          x = Conv3D(width, kernel_size, strides, self.conv, self.dtype, name=name)(x)
        x = nn.GroupNorm(num_groups=self.num_groups, dtype=self.dtype, param_dtype=jnp.float32,
                         name=f"stage{stage}_norm{block}")(x)
        x = nn.relu(x)
    b, steps = x.shape[:2]
    if steps % self.num_windows:
      raise ValueError(
          f"the 3D-CNN turns {keypoints.shape[1]} pose frames into {steps} time steps, which do not split into "
          f"{self.num_windows} windows; change the temporal strides or num_pose_frames")
    x = jnp.mean(x.astype(jnp.float32), axis=(2, 3))  # (B, T', C), averaged in float32
    x = x.reshape(b, self.num_windows, steps // self.num_windows, -1).mean(axis=2)  # (B, num_windows, C)
    return nn.Dense(self.embed_dim, dtype=self.dtype, param_dtype=jnp.float32, name="proj")(x)
