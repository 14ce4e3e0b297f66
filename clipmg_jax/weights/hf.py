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
    fields = common.fields_from_shapes(vision, dict(
        class_embedding="embeddings.class_embedding", patch_embedding="embeddings.patch_embedding.weight",
        position_embedding="embeddings.position_embedding.weight", fc1="encoder.layers.0.mlp.fc1.weight",
        blocks="encoder.layers."), proj_dim, source)
  return common.check_heads(fields, source)


def key_specs(config: dict[str, Any]) -> list[common.KeySpec]:
  """Every key a Hugging Face vision tower of this config holds (prefix removed)."""
  d, m = config["width"], config["mlp_dim"]
  layer_norm = lambda key, path: common.layer_norm_specs(key, path, d)
  linear = common.linear_specs
  specs = common.stem_specs(config, dict(
      class_embedding="embeddings.class_embedding", patch_embedding="embeddings.patch_embedding.weight",
      position_embedding="embeddings.position_embedding.weight", ln_pre="pre_layrnorm", ln_post="post_layernorm"))
  for i in range(config["layers"]):
    src, dst = f"encoder.layers.{i}", (f"resblocks_{i}",)
    specs += layer_norm(f"{src}.layer_norm1", dst + ("ln_1",))
    specs += layer_norm(f"{src}.layer_norm2", dst + ("ln_2",))
    for hf_name, name in [("q_proj", "query"), ("k_proj", "key"), ("v_proj", "value"), ("out_proj", "out")]:
      specs += linear(f"{src}.self_attn.{hf_name}", dst + ("attn", name), d, d)
    specs += linear(f"{src}.mlp.fc1", dst + ("mlp", "c_fc"), d, m)
    specs += linear(f"{src}.mlp.fc2", dst + ("mlp", "c_proj"), m, d)
  if config["proj_dim"] is not None:
    specs.append(common.spec(PROJECTION_KEY, (config["proj_dim"], d), ("proj",), common.transpose))
  return specs
