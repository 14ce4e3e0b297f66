"""Hugging Face CLIP vision layout (CLIPVisionModel, CLIPVisionModelWithProjection, CLIPModel).

Keys come with the `vision_model.` prefix (CLIPModel, ...WithProjection) or
without it (CLIPVisionModel in transformers 5.x). The projection is
`visual_projection.weight` (E, D). Text-tower keys of a full CLIPModel are
set aside and reported as ignored.
"""

from typing import Any, Optional

import numpy as np

from clipmg_jax.weights import common

PREFIX = "vision_model."
PROJECTION_KEY = "visual_projection.weight"
_MARKER = "embeddings.patch_embedding.weight"
# Non-parameter buffers some transformers versions stored in checkpoints.
_BUFFERS = ("embeddings.position_ids",)
# CLIPVisionConfig defaults, for fields a config.json leaves out.
_HF_DEFAULTS = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                    image_size=224, patch_size=32, hidden_act="quick_gelu", layer_norm_eps=1e-5)


def is_hf_layout(keys) -> bool:
  return any(k == _MARKER or k == PREFIX + _MARKER for k in keys)


def split_state(state: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], list[tuple[str, str]]]:
  """-> (vision keys without prefix, incl. the projection; ignored (key, reason))."""
  prefixed = any(k.startswith(PREFIX) for k in state)
  vision, ignored = {}, []
  for key, value in state.items():
    if key == PROJECTION_KEY:
      vision[key] = value
    elif prefixed and key.startswith(PREFIX):
      vision[key[len(PREFIX):]] = value
    elif prefixed or key.startswith(("text_model.", "text_projection.")) or key == "logit_scale":
      ignored.append((key, "not part of the vision tower"))
    else:
      vision[key] = value
  for key in _BUFFERS:
    if key in vision:
      del vision[key]
      ignored.append((key, "buffer, not a parameter"))
  return vision, ignored


def _vision_config_json(config_json: Optional[dict[str, Any]]) -> dict[str, Any]:
  if config_json is None:
    return {}
  if "vision_config" in config_json:  # CLIPModel
    return dict(config_json["vision_config"] or {})
  return dict(config_json)


def infer_config(vision: dict[str, np.ndarray], config_json: Optional[dict[str, Any]], source: str) -> dict[str, Any]:
  """ViT fields: from config.json when given (so that a mis-shaped tensor is reported by its own key), else from
  the weight shapes.

  Heads cannot be read from shapes: without config.json they are width // 64
  (every released CLIP ViT uses 64-wide heads).
  """
  proj_dim = vision[PROJECTION_KEY].shape[0] if PROJECTION_KEY in vision else None
  if config_json is not None:
    cfg = {**_HF_DEFAULTS, **_vision_config_json(config_json)}
    if cfg["hidden_act"] != "quick_gelu":
      raise common.CheckpointError(f"{source}: config.json hidden_act={cfg['hidden_act']!r}; only quick_gelu is supported")
    if abs(float(cfg["layer_norm_eps"]) - 1e-5) > 1e-12:
      raise common.CheckpointError(f"{source}: config.json layer_norm_eps={cfg['layer_norm_eps']}; only 1e-5 is supported")
    if proj_dim is not None:
      # CLIPModel keeps projection_dim at the top level (its vision_config carries an unused default).
      owner = config_json if "vision_config" in config_json else cfg
      proj_dim = int(owner.get("projection_dim", 512))
    fields = dict(width=int(cfg["hidden_size"]), layers=int(cfg["num_hidden_layers"]),
                  heads=int(cfg["num_attention_heads"]), patch_size=int(cfg["patch_size"]),
                  image_size=int(cfg["image_size"]), mlp_dim=int(cfg["intermediate_size"]), proj_dim=proj_dim)
  else:
    width, = common.require(vision, "embeddings.class_embedding", 1, source)
    _, _, ph, pw = common.require(vision, "embeddings.patch_embedding.weight", 4, source)
    if ph != pw:
      raise common.CheckpointError(
          f"{source}: key 'embeddings.patch_embedding.weight' has non-square patches {ph}x{pw}")
    positions, _ = common.require(vision, "embeddings.position_embedding.weight", 2, source)
    mlp_dim, _ = common.require(vision, "encoder.layers.0.mlp.fc1.weight", 2, source)
    fields = dict(width=width, layers=common.count_blocks(list(vision), "encoder.layers."),
                  heads=max(width // 64, 1), patch_size=ph,
                  image_size=common.grid_image_size(positions, ph, "embeddings.position_embedding.weight", source),
                  mlp_dim=mlp_dim, proj_dim=proj_dim)
  if fields["width"] % fields["heads"]:
    raise common.CheckpointError(f"{source}: width {fields['width']} is not divisible by {fields['heads']} heads")
  return fields


def key_specs(config: dict[str, Any]) -> list[common.KeySpec]:
  """Every key a Hugging Face vision tower of this config holds (prefix removed)."""
  d, m, p = config["width"], config["mlp_dim"], config["patch_size"]
  n = (config["image_size"] // p)**2 + 1
  t, spec = common.transpose, common.spec
  layer_norm = lambda key, path: common.layer_norm_specs(key, path, d)
  linear = common.linear_specs

  specs = [
      spec("embeddings.class_embedding", (d,), ("class_embedding",)),
      spec("embeddings.patch_embedding.weight", (d, 3, p, p), ("conv1", "kernel"), common.conv_to_hwio),
      spec("embeddings.position_embedding.weight", (n, d), ("positional_embedding",)),
      *layer_norm("pre_layrnorm", ("ln_pre",)),
      *layer_norm("post_layernorm", ("ln_post",)),
  ]
  for i in range(config["layers"]):
    src, dst = f"encoder.layers.{i}", (f"resblocks_{i}",)
    specs += layer_norm(f"{src}.layer_norm1", dst + ("ln_1",))
    specs += layer_norm(f"{src}.layer_norm2", dst + ("ln_2",))
    for hf_name, name in [("q_proj", "query"), ("k_proj", "key"), ("v_proj", "value"), ("out_proj", "out")]:
      specs += linear(f"{src}.self_attn.{hf_name}", dst + ("attn", name), d, d)
    specs += linear(f"{src}.mlp.fc1", dst + ("mlp", "c_fc"), d, m)
    specs += linear(f"{src}.mlp.fc2", dst + ("mlp", "c_proj"), m, d)
  if config["proj_dim"] is not None:
    specs.append(spec(PROJECTION_KEY, (config["proj_dim"], d), ("proj",), t))
  return specs
