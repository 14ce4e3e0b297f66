"""Reading checkpoint files into {key: numpy array}.

safetensors files are read without torch; PyTorch files (torch.save pickles
and TorchScript archives) import torch lazily, only when one is read.
"""

import json
import os
import warnings
import zipfile
from typing import Any, Optional

import numpy as np

from clipmg_jax.weights.common import CheckpointError

# Weight files looked for, in order, when the path is a directory.
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.bin",
)


def _read_safetensors(path: str) -> dict[str, np.ndarray]:
  try:
    from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
    return load_file(path)
  except (TypeError, ValueError):
    # numpy has no bfloat16; the flax reader returns jax arrays, which do.
    from safetensors.flax import load_file as load_jax  # pylint: disable=g-import-not-at-top
    return {k: np.asarray(v, np.float32) for k, v in load_jax(path).items()}


def is_torchscript(path: str) -> bool:
  """TorchScript archives are zip files with a constants.pkl next to the code; torch.save zips have none."""
  if not zipfile.is_zipfile(path):
    return False
  with zipfile.ZipFile(path) as archive:
    return any(name.endswith("/constants.pkl") or name == "constants.pkl" for name in archive.namelist())


def _to_numpy(value: Any) -> np.ndarray:
  import torch  # pylint: disable=g-import-not-at-top
  value = value.detach().cpu()
  if value.is_floating_point():
    value = value.to(torch.float32)  # fp16 / bf16 checkpoints: widening to float32 is exact
  return value.numpy()


def _read_torch(path: str) -> dict[str, np.ndarray]:
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(f"reading the PyTorch checkpoint {path} needs torch (pip install 'clipmg_jax[torch]'); "
                      "or port it once with data_prep/port_clip.py where torch is installed") from e
  if is_torchscript(path):
    with warnings.catch_warnings():  # torch marks TorchScript deprecated, but OpenAI ships its weights that way
      warnings.simplefilter("ignore", DeprecationWarning)
      state = torch.jit.load(path, map_location="cpu").state_dict()
  else:
    state = torch.load(path, map_location="cpu", weights_only=True)
  if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
    state = state["state_dict"]
  if not isinstance(state, dict):
    raise CheckpointError(f"{path}: expected a state dict (key -> tensor), got {type(state).__name__}")
  bad = sorted(k for k, v in state.items() if not isinstance(v, torch.Tensor))
  if bad:
    raise CheckpointError(f"{path}: entries that are not tensors: {bad[:10]}")
  return {k: _to_numpy(v) for k, v in state.items()}


def _read_index(path: str) -> dict[str, np.ndarray]:
  """Sharded Hugging Face checkpoint: an index JSON whose weight_map names the shard files."""
  with open(path) as f:
    weight_map = json.load(f).get("weight_map")
  if not isinstance(weight_map, dict):
    raise CheckpointError(f"{path}: no 'weight_map' in the shard index")
  state = {}
  for shard in sorted(set(weight_map.values())):
    state.update(read_weight_file(os.path.join(os.path.dirname(path), shard)))
  return state


def read_weight_file(path: str) -> dict[str, np.ndarray]:
  """One file (safetensors, shard index JSON, torch.save or TorchScript) -> {key: array}."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"checkpoint file not found: {path}")
  if path.endswith(".safetensors"):
    return _read_safetensors(path)
  if path.endswith(".index.json"):
    return _read_index(path)
  return _read_torch(path)


def read_checkpoint(path: str) -> tuple[dict[str, np.ndarray], Optional[dict[str, Any]], str]:
  """A directory (config.json + weights) or a single weights file -> (state, config.json or None, weights path)."""
  path = os.fspath(path)
  if os.path.isdir(path):
    for name in WEIGHT_FILES:
      weights = os.path.join(path, name)
      if os.path.isfile(weights):
        break
    else:
      raise FileNotFoundError(f"{path}: no weights file; looked for {', '.join(WEIGHT_FILES)}")
    config_json = None
    config_path = os.path.join(path, "config.json")
    if os.path.isfile(config_path):
      with open(config_path) as f:
        config_json = json.load(f)
    return read_weight_file(weights), config_json, weights
  return read_weight_file(path), None, path
