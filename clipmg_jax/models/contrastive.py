"""CLIP-style image-caption model for pretraining the vision tower on the captioned synthetic corpus.

Image side: the CLIP vision tower (vit.VisionTransformer, named "vit" so its parameters export as a CLIP vision
checkpoint), pooled as the mean of `ln_post` over the patch tokens, then a linear projection. CLIP pools the
class token; the mean patch token is used here because CLIP-MG reads the tower's patch tokens (ln_post of each,
clipmg.py), never its class token, so the objective trains exactly the features the downstream model uses.

Text side: the captions are lists of phrases from a fixed vocabulary (clipmg_jax/data/synthetic/captions.py), one
per attribute, so the text encoder is an embedding per phrase token, averaged over the caption, and a two-layer
MLP. A text transformer would have to learn from a few thousand captions that word order carries nothing here;
the phrase bag carries every attribute at a fraction of the cost, which matters on a 2-core CPU.

Both embeddings are L2-normalised; the logit scale is learned (CLIP: initialised at 1/0.07, at most 100).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from clipmg_jax.models import vit as vit_lib

MAX_LOGIT_SCALE = 100.0
POOLS = ("mean", "grid")
GRID_TOKEN_DIM = 8  # width of each patch token in the "grid" pooling (49 tokens x 8 = 392 features at 112 px)


class TextEncoder(nn.Module):
  """Phrase tokens int32 (B, L) (0 = padding) -> (B, embed_dim)."""
  vocab_size: int
  width: int
  embed_dim: int

  @nn.compact
  def __call__(self, tokens: jax.Array) -> jax.Array:
    emb = nn.Embed(self.vocab_size, self.width, embedding_init=nn.initializers.normal(0.02), name="token_embedding")
    valid = (tokens > 0).astype(jnp.float32)[..., None]
    x = jnp.sum(emb(tokens) * valid, axis=1) / jnp.maximum(jnp.sum(valid, axis=1), 1.0)
    x = nn.LayerNorm(name="ln")(x)
    x = vit_lib.quick_gelu(nn.Dense(self.width, name="fc")(x))
    return nn.Dense(self.embed_dim, use_bias=False, name="proj")(x)


class ContrastiveModel(nn.Module):
  """apply({"params": p}, images float (B, H, W, 3) CLIP-normalised, tokens int32 (B, L), train=...) ->
  (image embeddings (B, E), text embeddings (B, E), both unit-norm; logit scale, a positive scalar)."""
  vision: dict[str, Any]  # VisionTransformer fields (proj_dim None: the projection lives here)
  vocab_size: int
  embed_dim: int = 64
  text_width: int = 128
  pool: str = "mean"  # how the patch tokens become one image embedding: one of POOLS

  def setup(self):
    if self.pool not in POOLS:
      raise ValueError(f"model.pool={self.pool!r}: expected one of {POOLS}")
    self.vit = vit_lib.make_vit(self.vision)  # params["vit"]: the tower that is exported
    if self.pool == "grid":
      self.token_proj = nn.Dense(GRID_TOKEN_DIM, name="token_proj")
    self.image_proj = nn.Dense(self.embed_dim, use_bias=False)
    self.text = TextEncoder(self.vocab_size, self.text_width, self.embed_dim)
    self.log_scale = self.param("logit_scale", nn.initializers.constant(np.log(1 / 0.07)), ())

  def image_features(self, images: jax.Array) -> jax.Array:
    """(B, H, W, 3) -> mean of ln_post over the patch tokens, (B, D): what the linear probe reads."""
    hidden = self.vit(images)["last_hidden_state"]
    return jnp.mean(self.vit.ln_post(hidden[:, 1:]), axis=1)

  def pooled(self, images: jax.Array) -> jax.Array:
    """(B, H, W, 3) -> the image side's pooled features, before image_proj."""
    if self.pool == "mean":
      return self.image_features(images)
    tokens = self.vit.ln_post(self.vit(images)["last_hidden_state"][:, 1:])  # (B, N, D)
    # grid: every patch token, narrowed, in its place; the embedding sees which patch holds what (a hand at the
    # ear and a hand on the desk differ by where the arm's tokens are, which a mean over the tokens erases).
    narrow = vit_lib.quick_gelu(self.token_proj(tokens))
    return narrow.reshape(narrow.shape[0], -1)

  def __call__(self, images: jax.Array, tokens: jax.Array, train: bool = False):
    del train  # no dropout
    image = self.image_proj(self.pooled(images))
    text = self.text(tokens)
    normalise = lambda x: x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-6)
    scale = jnp.minimum(jnp.exp(self.log_scale), MAX_LOGIT_SCALE)
    return normalise(image), normalise(text), scale


def contrastive_loss(image: jax.Array, text: jax.Array, scale: jax.Array, tokens: jax.Array) -> tuple[jax.Array,
                                                                                                     jax.Array]:
  """Symmetric InfoNCE (CLIP) over a batch -> (loss, image-to-text top-1 accuracy).

  Captions repeat within a batch (many frames show the same attributes), so the target of each row is spread
  evenly over every column with the same caption instead of the diagonal alone: an identical caption is not a
  negative. Accuracy counts a row as right when its best column has its caption.
  """
  logits = scale * image @ text.T
  same = jnp.all(tokens[:, None, :] == tokens[None, :, :], axis=-1).astype(jnp.float32)
  targets = same / jnp.sum(same, axis=1, keepdims=True)  # symmetric: same rows and columns
  image_to_text = -jnp.mean(jnp.sum(targets * jax.nn.log_softmax(logits, axis=1), axis=1))
  text_to_image = -jnp.mean(jnp.sum(targets * jax.nn.log_softmax(logits.T, axis=1), axis=1))
  best = jnp.argmax(logits, axis=1)
  accuracy = jnp.mean(jnp.take_along_axis(same, best[:, None], axis=1))
  return (image_to_text + text_to_image) / 2, accuracy
