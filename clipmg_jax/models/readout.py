"""The readout of CLIP-MG: cross-attention pooling of the tokens by one query, and the classifier head."""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from clipmg_jax.models import vit as vit_lib


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
