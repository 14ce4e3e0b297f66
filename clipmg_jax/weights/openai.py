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
  width, = common.require(vision, "class_embedding", 1, source)
  _, _, ph, pw = common.require(vision, "conv1.weight", 4, source)
  if ph != pw:
    raise common.CheckpointError(f"{source}: key 'conv1.weight' has non-square patches {ph}x{pw}")
  positions, _ = common.require(vision, "positional_embedding", 2, source)
  mlp_dim, _ = common.require(vision, "transformer.resblocks.0.mlp.c_fc.weight", 2, source)
  proj_dim = None
  if "proj" in vision:
    proj_dim = common.require(vision, "proj", 2, source)[1]
  fields = dict(width=width, layers=common.count_blocks(list(vision), "transformer.resblocks."),
                heads=max(width // 64, 1), patch_size=ph,
                image_size=common.grid_image_size(positions, ph, "positional_embedding", source), mlp_dim=mlp_dim,
                proj_dim=proj_dim)
  if width % fields["heads"]:
    raise common.CheckpointError(f"{source}: width {width} is not divisible by {fields['heads']} heads")
  return fields


def key_specs(config: dict[str, Any]) -> list[common.KeySpec]:
  """Every key an OpenAI vision tower of this config holds (prefix removed)."""
  d, m, p = config["width"], config["mlp_dim"], config["patch_size"]
  n = (config["image_size"] // p)**2 + 1
  t, spec = common.transpose, common.spec
  layer_norm = lambda key, path: common.layer_norm_specs(key, path, d)
  linear = common.linear_specs

  specs = [
      spec("class_embedding", (d,), ("class_embedding",)),
      spec("conv1.weight", (d, 3, p, p), ("conv1", "kernel"), common.conv_to_hwio),
      spec("positional_embedding", (n, d), ("positional_embedding",)),
      *layer_norm("ln_pre", ("ln_pre",)),
      *layer_norm("ln_post", ("ln_post",)),
  ]
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
    specs.append(spec("proj", (d, config["proj_dim"]), ("proj",)))
  return specs
