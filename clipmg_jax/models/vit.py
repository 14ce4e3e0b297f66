"""CLIP vision transformer (ViT) in Flax Linen.

Follows the OpenAI CLIP image tower (Radford et al., 2021): a patch-embedding
convolution without bias, a class token, learned position embeddings,
`ln_pre`, pre-LayerNorm residual blocks with QuickGELU MLPs, and `ln_post`
on the class token followed by an optional linear projection. LayerNorm
epsilon is 1e-5, as in the PyTorch checkpoints.

The tower can run as a frozen prefix (embedding + first k blocks, under
`stop_gradient`) and a trainable suffix, and exposes `embed`, `run_blocks`
and `pool` so that a caller can cache the prefix output.

Parameters are always float32; `dtype` only sets the compute dtype.
"""

from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

# OpenAI CLIP normalisation constants, on the 0-1 RGB scale.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

LN_EPS = 1e-5

# name -> VisionTransformer fields. Official CLIP sizes plus small ones for tests.
VIT_CONFIGS: dict[str, dict[str, Any]] = {
    "B/16": dict(width=768, layers=12, heads=12, patch_size=16, image_size=224, mlp_dim=3072, proj_dim=512),
    "B/32": dict(width=768, layers=12, heads=12, patch_size=32, image_size=224, mlp_dim=3072, proj_dim=512),
    "L/14": dict(width=1024, layers=24, heads=16, patch_size=14, image_size=224, mlp_dim=4096, proj_dim=768),
    "S/16": dict(width=384, layers=12, heads=6, patch_size=16, image_size=224, mlp_dim=1536, proj_dim=None),
    "Ti/16": dict(width=192, layers=12, heads=3, patch_size=16, image_size=224, mlp_dim=768, proj_dim=None),
    "tiny": dict(width=64, layers=2, heads=4, patch_size=16, image_size=224, mlp_dim=256, proj_dim=None),
}


def normalize_images(images: Any, dtype: Any = jnp.float32) -> jax.Array:
  """uint8 RGB (..., H, W, 3) in [0, 255] -> float (..., H, W, 3) CLIP-normalised."""
  x = jnp.asarray(images).astype(jnp.float32) / 255.0
  x = (x - jnp.asarray(CLIP_MEAN, jnp.float32)) / jnp.asarray(CLIP_STD, jnp.float32)
  return x.astype(dtype)


def quick_gelu(x: jax.Array) -> jax.Array:
  """CLIP's GELU approximation x * sigmoid(1.702 x)."""
  return x * jax.nn.sigmoid(1.702 * x)


def _cubic_weights(t: np.ndarray, a: float = -0.75) -> np.ndarray:
  """Keys cubic convolution weights for the 4 taps at offsets -1, 0, 1, 2 of fraction t."""

  def near(x):  # |x| <= 1
    return ((a + 2) * x - (a + 3)) * x * x + 1

  def far(x):  # 1 < |x| < 2
    return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

  return np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], axis=-1)


def bicubic_resize_matrix(in_size: int, out_size: int) -> np.ndarray:
  """(out_size, in_size) matrix of PyTorch's bicubic resize (align_corners=False, a=-0.75, border clamp).

  Matching `torch.nn.functional.interpolate(mode="bicubic")` exactly keeps our
  position-embedding interpolation identical to Hugging Face's
  `interpolate_pos_encoding` and to open_clip's resize.
  """
  scale = in_size / out_size
  src = (np.arange(out_size, dtype=np.float64) + 0.5) * scale - 0.5
  base = np.floor(src)
  weights = _cubic_weights(src - base)
  matrix = np.zeros((out_size, in_size), np.float64)
  for tap in range(4):
    idx = np.clip(base.astype(np.int64) - 1 + tap, 0, in_size - 1)
    np.add.at(matrix, (np.arange(out_size), idx), weights[:, tap])
  return matrix.astype(np.float32)


def interpolate_pos_embedding(pos_emb: jax.Array, grid_hw: tuple[int, int]) -> jax.Array:
  """Resizes (1+N, D) position embeddings (square grid) to a (gh, gw) patch grid -> (1+gh*gw, D)."""
  num_patches = pos_emb.shape[0] - 1
  side = int(round(num_patches**0.5))
  if side * side != num_patches:
    raise ValueError(f"position embeddings hold {num_patches} patch positions, not a square grid")
  gh, gw = grid_hw
  if (gh, gw) == (side, side):
    return pos_emb
  grid = pos_emb[1:].reshape(side, side, -1)
  rows = jnp.asarray(bicubic_resize_matrix(side, gh))
  cols = jnp.asarray(bicubic_resize_matrix(side, gw))
  # Separable resize; HIGHEST keeps the 1e-6-level agreement with PyTorch.
  grid = jnp.einsum("hi,ijd,wj->hwd", rows, grid, cols, precision=jax.lax.Precision.HIGHEST)
  return jnp.concatenate([pos_emb[:1], grid.reshape(gh * gw, -1)], axis=0)


class PatchEmbed(nn.Module):
  """Non-overlapping patch convolution without bias: (B,H,W,3) -> (B, H/p * W/p, D).

  The kernel is stored in Conv layout (p, p, 3, D) but applied as a matmul on
  flattened patches, which is the same arithmetic and faster on CPU.
  """

  width: int
  patch_size: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: jax.Array) -> jax.Array:
    p = self.patch_size
    b, h, w, c = images.shape
    if h % p or w % p:
      raise ValueError(f"image size {h}x{w} is not a multiple of the patch size {p}")
    kernel = self.param("kernel", nn.initializers.lecun_normal(), (p, p, c, self.width), jnp.float32)
    gh, gw = h // p, w // p
    patches = images.reshape(b, gh, p, gw, p, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, gh * gw, p * p * c)
    return jnp.dot(patches.astype(self.dtype), kernel.reshape(p * p * c, self.width).astype(self.dtype))


def attend(q: jax.Array, k: jax.Array, v: jax.Array, dtype: Any) -> jax.Array:
  """Softmax attention on head-major operands: q (B, H, Tq, Dh), already scaled, k and v (B, H, Tk, Dh) -> (B, H, Tq, Dh).

  Head-major operands make both products plain batched matmuls; with a "bqhd,bkhd->bhqk" einsum XLA:CPU fuses the
  dot into the softmax loop and runs ~5x slower. The softmax runs in float32 so that bfloat16 compute stays stable.
  """
  return jnp.matmul(attention_weights(q, k, dtype), v)


def attention_weights(q: jax.Array, k: jax.Array, dtype: Any) -> jax.Array:
  """The softmax weights `attend` applies to v: q (B, H, Tq, Dh), already scaled, k (B, H, Tk, Dh) -> (B, H, Tq, Tk),
  each row summing to 1, in `dtype` (computed in float32)."""
  logits = jnp.matmul(q, k.swapaxes(-1, -2))
  return jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(dtype)


class SelfAttention(nn.Module):
  """Multi-head self-attention with separate query/key/value/out Dense layers ((D, D) kernels + biases)."""

  width: int
  heads: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """x: (B, T, D) -> (B, T, D)."""
    b, t, d = x.shape
    if d % self.heads:
      raise ValueError(f"width {d} is not divisible by {self.heads} heads")
    head_dim = d // self.heads
    dense = lambda name: nn.Dense(self.width, dtype=self.dtype, param_dtype=jnp.float32, name=name)
    split = lambda y: y.reshape(b, t, self.heads, head_dim).transpose(0, 2, 1, 3)  # (B, H, T, Dh)
    q = split(dense("query")(x) * jnp.asarray(head_dim**-0.5, self.dtype))
    out = attend(q, split(dense("key")(x)), split(dense("value")(x)), self.dtype)
    out = out.transpose(0, 2, 1, 3).reshape(b, t, d)
    return dense("out")(out)


class Mlp(nn.Module):
  """c_fc -> QuickGELU -> c_proj."""

  width: int
  mlp_dim: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = nn.Dense(self.mlp_dim, dtype=self.dtype, param_dtype=jnp.float32, name="c_fc")(x)
    x = quick_gelu(x)
    return nn.Dense(self.width, dtype=self.dtype, param_dtype=jnp.float32, name="c_proj")(x)


class ResidualAttentionBlock(nn.Module):
  """Pre-LN transformer block: x + attn(ln_1(x)); x + mlp(ln_2(x))."""

  width: int
  heads: int
  mlp_dim: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    ln = lambda name: nn.LayerNorm(epsilon=LN_EPS, dtype=self.dtype, param_dtype=jnp.float32, name=name)
    x = x + SelfAttention(self.width, self.heads, self.dtype, name="attn")(ln("ln_1")(x))
    x = x + Mlp(self.width, self.mlp_dim, self.dtype, name="mlp")(ln("ln_2")(x))
    return x


class VisionTransformer(nn.Module):
  """CLIP image tower.

  Attributes:
    width: token width D.
    layers: number of residual blocks.
    heads: attention heads.
    patch_size: patch side p in pixels.
    image_size: side of the square training resolution; the position
      embeddings hold (image_size / p)^2 + 1 entries.
    mlp_dim: hidden width of the MLPs.
    proj_dim: output width E of the projection after `ln_post`; None = no projection.
    dtype: compute dtype (parameters stay float32).
    remat: recompute each block's activations in the backward pass instead of keeping them (less memory for
      the trainable blocks, one more forward of them; frozen blocks keep nothing either way).
  """

  width: int = 768
  layers: int = 12
  heads: int = 12
  patch_size: int = 16
  image_size: int = 224
  mlp_dim: int = 3072
  proj_dim: Optional[int] = 512
  dtype: Any = jnp.float32
  remat: bool = False

  @property
  def grid_size(self) -> int:
    return self.image_size // self.patch_size

  def setup(self):
    num_positions = self.grid_size**2 + 1
    self.conv1 = PatchEmbed(self.width, self.patch_size, self.dtype)
    self.class_embedding = self.param(
        "class_embedding", nn.initializers.normal(self.width**-0.5), (self.width,), jnp.float32)
    self.positional_embedding = self.param(
        "positional_embedding", nn.initializers.normal(self.width**-0.5), (num_positions, self.width), jnp.float32)
    ln = lambda: nn.LayerNorm(epsilon=LN_EPS, dtype=self.dtype, param_dtype=jnp.float32)
    self.ln_pre = ln()
    # A list attribute is named resblocks_0 .. resblocks_{L-1}; freezing masks rely on these names.
    block = nn.remat(ResidualAttentionBlock) if self.remat else ResidualAttentionBlock
    self.resblocks = [block(self.width, self.heads, self.mlp_dim, self.dtype) for _ in range(self.layers)]
    self.ln_post = ln()
    if self.proj_dim is not None:
      self.proj = self.param("proj", nn.initializers.normal(self.width**-0.5), (self.width, self.proj_dim), jnp.float32)

  def embed(self, images: jax.Array) -> jax.Array:
    """Normalised float images (B, H, W, 3) -> tokens (B, 1 + H/p * W/p, D) after `ln_pre`.

    H and W must be multiples of patch_size; other sizes than image_size use
    bicubically interpolated position embeddings.
    """
    b, h, w, _ = images.shape
    patches = self.conv1(images)
    cls = jnp.broadcast_to(self.class_embedding.astype(self.dtype), (b, 1, self.width))
    tokens = jnp.concatenate([cls, patches], axis=1)
    pos = interpolate_pos_embedding(self.positional_embedding, (h // self.patch_size, w // self.patch_size))
    tokens = tokens + pos.astype(self.dtype)[None]
    return self.ln_pre(tokens)

  def run_blocks(self, tokens: jax.Array, start: int = 0, stop: Optional[int] = None) -> jax.Array:
    """Applies blocks [start, stop) to tokens (B, T, D) -> (B, T, D)."""
    stop = self.layers if stop is None else stop
    if not 0 <= start <= stop <= self.layers:
      raise ValueError(f"block range [{start}, {stop}) outside [0, {self.layers}]")
    for block in self.resblocks[start:stop]:
      tokens = block(tokens)
    return tokens

  def prefix(self, images: jax.Array, frozen_blocks: int) -> jax.Array:
    """The frozen prefix alone: normalised images (B, H, W, 3) -> the input of block `frozen_blocks`, (B, 1+N, D)
    (what a prefix cache stores; the tower's __call__ computes the same under stop_gradient)."""
    return self.run_blocks(self.embed(images), 0, frozen_blocks)

  def pool(self, tokens: jax.Array) -> jax.Array:
    """Tokens (B, T, D) -> ln_post of the class token (B, D)."""
    return self.ln_post(tokens[:, 0])

  def project(self, pooled: jax.Array) -> jax.Array:
    """Pooled (B, D) -> embedding (B, E); needs proj_dim."""
    return jnp.dot(pooled, self.proj.astype(self.dtype))

  def __call__(self, images: jax.Array, *, frozen_blocks: int = 0) -> dict[str, jax.Array]:
    """Runs the tower.

    Args:
      images: float (B, H, W, 3), CLIP-normalised (see `normalize_images`).
      frozen_blocks: k >= 0; the embedding and the first k blocks run under
        `stop_gradient`, so their parameters get zero gradients.

    Returns:
      dict with last_hidden_state (B, 1+N, D) before ln_post, pooled (B, D) =
      ln_post(class token) and, if proj_dim is set, embedding (B, E).
    """
    if not 0 <= frozen_blocks <= self.layers:
      raise ValueError(f"frozen_blocks={frozen_blocks} outside [0, {self.layers}]")
    tokens = self.embed(images)
    if frozen_blocks:
      tokens = jax.lax.stop_gradient(self.run_blocks(tokens, 0, frozen_blocks))
    tokens = self.run_blocks(tokens, frozen_blocks, self.layers)
    pooled = self.pool(tokens)
    out = dict(last_hidden_state=tokens, pooled=pooled)
    if self.proj_dim is not None:
      out["embedding"] = self.project(pooled)
    return out


def vit_config(name_or_fields: Any) -> dict[str, Any]:
  """Name in VIT_CONFIGS or a dict of fields -> a full dict of VisionTransformer fields (without dtype)."""
  if isinstance(name_or_fields, str):
    if name_or_fields not in VIT_CONFIGS:
      raise KeyError(f"unknown ViT {name_or_fields!r}; known: {sorted(VIT_CONFIGS)}")
    return dict(VIT_CONFIGS[name_or_fields])
  fields = dict(name_or_fields)
  unknown = set(fields) - set(VIT_CONFIGS["B/16"]) - {"dtype"}
  if unknown:
    raise KeyError(f"unknown ViT fields {sorted(unknown)}")
  return fields


def make_vit(name_or_fields: Any, dtype: Any = jnp.float32) -> VisionTransformer:
  """VisionTransformer from a VIT_CONFIGS name or a dict of its fields."""
  fields = vit_config(name_or_fields)
  fields.pop("dtype", None)
  return VisionTransformer(**fields, dtype=dtype)


def forward_flops(config: dict[str, Any], batch: int, image_size: Optional[int] = None) -> float:
  """Multiply-add FLOPs (2 per MAC) of one forward pass over `batch` square images; matmuls only."""
  d, m, p = config["width"], config["mlp_dim"], config["patch_size"]
  size = image_size or config["image_size"]
  n = (size // p)**2
  t = n + 1
  per_block = 2 * t * d * 3 * d + 2 * 2 * t * t * d + 2 * t * d * d + 2 * 2 * t * d * m
  total = 2 * n * p * p * 3 * d + config["layers"] * per_block
  if config.get("proj_dim"):
    total += 2 * d * config["proj_dim"]
  return float(batch * total)
