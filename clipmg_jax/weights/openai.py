"""OpenAI CLIP / open_clip vision layout.

Keys: `visual.conv1.weight`, `visual.class_embedding`,
`visual.positional_embedding`, `visual.ln_pre.*`,
`visual.transformer.resblocks.N.{ln_1, attn.in_proj_weight (3D, D), attn.in_proj_bias (3D,), attn.out_proj, ln_2,
mlp.c_fc, mlp.c_proj}`, `visual.ln_post.*`, `visual.proj` (D, E, applied as x @ proj).
The `visual.` prefix is optional (a tower saved on its own); in a full CLIP
state dict every key outside `visual.` belongs to the text tower and is
reported as ignored.
"""

from typing import Any

import numpy as np

from clipmg_jax.weights import common

PREFIX = "visual."
_MARKER = "conv1.weight"


def is_openai_layout(keys) -> bool:
  return any(k == _MARKER or k == PREFIX + _MARKER for k in keys)


def split_state(state: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], list[tuple[str, str]]]:
  """-> (vision keys without prefix; ignored (key, reason))."""
  if not any(k.startswith(PREFIX) for k in state):
    return dict(state), []
  vision, ignored = {}, []
  for key, value in state.items():
    if key.startswith(PREFIX):
      vision[key[len(PREFIX):]] = value
    else:
      ignored.append((key, "not part of the vision tower"))
  return vision, ignored


def infer_config(vision: dict[str, np.ndarray], source: str) -> dict[str, Any]:
  """ViT fields from the weight shapes; heads = width // 64 as in OpenAI's `VisionTransformer` construction."""
  proj_dim = common.require(vision, "proj", 2, source)[1] if "proj" in vision else None
  fields = common.fields_from_shapes(vision, dict(
      class_embedding="class_embedding", patch_embedding="conv1.weight", position_embedding="positional_embedding",
      fc1="transformer.resblocks.0.mlp.c_fc.weight", blocks="transformer.resblocks."), proj_dim, source)
  return common.check_heads(fields, source)

def key_specs(config: dict[str, Any]) -> list[common.KeySpec]:
  """Every key an OpenAI vision tower of this config holds (prefix removed)."""
  d, m = config["width"], config["mlp_dim"]
  layer_norm = lambda key, path: common.layer_norm_specs(key, path, d)
  linear = common.linear_specs
  t = common.transpose
  specs = common.stem_specs(config, dict(class_embedding="class_embedding", patch_embedding="conv1.weight",
                                         position_embedding="positional_embedding", ln_pre="ln_pre",
                                         ln_post="ln_post"))
  for i in range(config["layers"]):
    src, dst = f"transformer.resblocks.{i}", (f"resblocks_{i}",)
    attn = dst + ("attn",)
    specs += layer_norm(f"{src}.ln_1", dst + ("ln_1",))
    specs += layer_norm(f"{src}.ln_2", dst + ("ln_2",))
    # nn.MultiheadAttention packs [W_q; W_k; W_v] as rows of in_proj_weight (3D, D).
    names = ("query", "key", "value")
    specs.append(common.KeySpec(f"{src}.attn.in_proj_weight", (3 * d, d),
                                tuple((attn + (name, "kernel"), common.chunk(j, 3, t)) for j, name in enumerate(names))))
    specs.append(common.KeySpec(f"{src}.attn.in_proj_bias", (3 * d,),
                                tuple((attn + (name, "bias"), common.chunk(j, 3)) for j, name in enumerate(names))))
    specs += linear(f"{src}.attn.out_proj", attn + ("out",), d, d)
    specs += linear(f"{src}.mlp.c_fc", dst + ("mlp", "c_fc"), d, m)
    specs += linear(f"{src}.mlp.c_proj", dst + ("mlp", "c_proj"), m, d)
  if config["proj_dim"] is not None:
    specs.append(common.spec("proj", (d, config["proj_dim"]), ("proj",)))
  return specs
