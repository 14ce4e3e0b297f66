"""Writes a Flax CLIP vision tower as a Hugging Face `CLIPVisionModel` checkpoint (config.json + model.safetensors).

The inverse of hf.key_specs: every key a Hugging Face vision tower of this config holds, with the `vision_model.`
prefix `transformers` writes, so that both `transformers.CLIPVisionModel.from_pretrained(dir)` and
`clipmg_jax.weights.load_clip_vision(dir)` (and data_prep/port_clip.py) read the directory as they read a
downloaded CLIP. A projection (`proj`), when the tower has one, is written as `visual_projection.weight`.
"""

import json
import os
from typing import Any

import numpy as np

from clipmg_jax.weights import common
from clipmg_jax.weights import hf

WEIGHTS_FILE = "model.safetensors"

# Each forward transform of a key spec -> its inverse (Flax leaf -> checkpoint tensor).
_INVERSE = {
    common.identity: lambda x: x,
    common.transpose: lambda x: x.T,
    common.conv_to_hwio: lambda x: x.transpose(3, 2, 0, 1),  # (p, p, 3, D) -> (D, 3, p, p)
}


def _leaf(params: Any, path: tuple[str, ...]) -> np.ndarray:
  node = params
  for name in path:
    if name not in node:
      raise KeyError(f"params have no entry {'/'.join(path)} (at {name!r})")
    node = node[name]
  return np.asarray(node, np.float32)


def hf_state_dict(config: dict[str, Any], params: Any) -> dict[str, np.ndarray]:
  """Flax ViT params (the tree VisionTransformer(**config) creates) -> {Hugging Face key: float32 array}."""
  state = {}
  for spec in hf.key_specs(config):
    (path, forward), = spec.targets
    value = np.ascontiguousarray(_INVERSE[forward](_leaf(params, path)))
    if value.shape != tuple(spec.shape):
      raise ValueError(f"{spec.key}: shape {value.shape}, expected {tuple(spec.shape)}")
    key = spec.key if spec.key == hf.PROJECTION_KEY else hf.PREFIX + spec.key
    state[key] = value
  return state


def config_json(config: dict[str, Any]) -> dict[str, Any]:
  """The transformers CLIPVisionConfig of a ViT config (fields of vit.VisionTransformer)."""
  out = dict(architectures=["CLIPVisionModel"], model_type="clip_vision_model",
             hidden_size=config["width"], intermediate_size=config["mlp_dim"],
             num_hidden_layers=config["layers"], num_attention_heads=config["heads"],
             image_size=config["image_size"], patch_size=config["patch_size"], num_channels=3,
             hidden_act="quick_gelu", layer_norm_eps=1e-5, attention_dropout=0.0, torch_dtype="float32")
  if config.get("proj_dim") is not None:
    out.update(architectures=["CLIPVisionModelWithProjection"], projection_dim=config["proj_dim"])
  return out


def save_hf_vision(out_dir: str | os.PathLike, config: dict[str, Any], params: Any) -> str:
  """Writes out_dir/config.json and out_dir/model.safetensors; returns out_dir."""
  from safetensors.numpy import save_file  # pylint: disable=import-outside-toplevel
  os.makedirs(out_dir, exist_ok=True)
  state = hf_state_dict(config, params)
  tmp = os.path.join(out_dir, WEIGHTS_FILE + ".tmp")
  save_file(state, tmp, metadata={"format": "pt"})
  os.replace(tmp, os.path.join(out_dir, WEIGHTS_FILE))
  # The writer creates its file private (0600); an exported tower is meant to be shared: the umask's usual mode.
  umask = os.umask(0)
  os.umask(umask)
  os.chmod(os.path.join(out_dir, WEIGHTS_FILE), 0o666 & ~umask)
  with open(os.path.join(out_dir, "config.json"), "w") as f:
    json.dump(config_json(config), f, indent=2)
  return str(out_dir)
