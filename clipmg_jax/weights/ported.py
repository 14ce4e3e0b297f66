"""Saving and loading a ported Flax ViT: params.msgpack + vit_config.json in one directory.

Reading this format needs neither torch nor transformers, so training jobs
load pretrained towers from it.
"""

import json
import os
from typing import Any

import flax.serialization
import numpy as np

from clipmg_jax.weights.common import CheckpointError

PARAMS_FILE = "params.msgpack"
CONFIG_FILE = "vit_config.json"


def is_ported(path: str) -> bool:
  return os.path.isdir(path) and os.path.isfile(os.path.join(path, PARAMS_FILE)) and os.path.isfile(
      os.path.join(path, CONFIG_FILE))


def save_ported(out_dir: str, config: dict[str, Any], params: Any) -> None:
  """Writes out_dir/params.msgpack (float32 Flax params tree) and out_dir/vit_config.json (ViT fields)."""
  os.makedirs(out_dir, exist_ok=True)
  params = flax.serialization.to_state_dict(params)
  params = _map(lambda x: np.asarray(x, np.float32), params)
  # Write then rename, so an interrupted port never leaves a half-written params file behind.
  tmp = os.path.join(out_dir, PARAMS_FILE + ".tmp")
  with open(tmp, "wb") as f:
    f.write(flax.serialization.msgpack_serialize(params))
  os.replace(tmp, os.path.join(out_dir, PARAMS_FILE))
  with open(os.path.join(out_dir, CONFIG_FILE), "w") as f:
    json.dump(config, f, indent=2, sort_keys=True)


def load_ported(path: str) -> tuple[dict[str, Any], dict[str, Any]]:
  """-> (ViT fields, nested params of numpy float32 arrays), as written by `save_ported`."""
  if not is_ported(path):
    raise CheckpointError(f"{path}: not a ported ViT directory (needs {PARAMS_FILE} and {CONFIG_FILE})")
  with open(os.path.join(path, CONFIG_FILE)) as f:
    config = json.load(f)
  with open(os.path.join(path, PARAMS_FILE), "rb") as f:
    params = flax.serialization.msgpack_restore(f.read())
  return config, params


def _map(fn, tree):
  if isinstance(tree, dict):
    return {k: _map(fn, v) for k, v in tree.items()}
  return fn(tree)
