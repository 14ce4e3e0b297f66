"""Pretrained CLIP vision towers -> (VisionTransformer, Flax params)."""

import dataclasses
import os
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from clipmg_jax.models import vit
from clipmg_jax.weights import common
from clipmg_jax.weights import hf
from clipmg_jax.weights import openai
from clipmg_jax.weights import ported
from clipmg_jax.weights import readers


@dataclasses.dataclass
class PortedVision:
  """A checkpoint converted to the Flax layout.

  config: VisionTransformer fields (width, layers, heads, patch_size, image_size, mlp_dim, proj_dim).
  params: nested Flax params, float32 numpy arrays.
  layout: "hf", "openai" or "ported" (already converted).
  ignored: (checkpoint key, reason) of tensors deliberately not used (text tower, buffers).
  """

  config: dict[str, Any]
  params: dict[str, Any]
  layout: str
  ignored: list[tuple[str, str]]


def check_params(config: dict[str, Any], params: Any, source: str) -> None:
  """Raises CheckpointError unless `params` has exactly the tree and shapes VisionTransformer(**config) creates."""
  model = vit.VisionTransformer(**config)
  size = config["image_size"]
  expected = jax.eval_shape(model.init, jax.random.key(0), jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32))
  want = {jax.tree_util.keystr(k): v.shape for k, v in jax.tree_util.tree_leaves_with_path(expected["params"])}
  have = {jax.tree_util.keystr(k): np.shape(v) for k, v in jax.tree_util.tree_leaves_with_path(params)}
  problems = [f"missing key '{k}' (expected shape {want[k]})" for k in sorted(set(want) - set(have))]
  problems += [f"unexpected key '{k}' with shape {have[k]}" for k in sorted(set(have) - set(want))]
  problems += [f"key '{k}' has shape {have[k]}, expected {want[k]}"
               for k in sorted(set(want) & set(have)) if tuple(have[k]) != tuple(want[k])]
  if problems:
    raise common.CheckpointError(common.format_problems(source, problems))


def port_checkpoint(path: str) -> PortedVision:
  """Reads a CLIP vision checkpoint and converts it to Flax params, validating every key and shape.

  Args:
    path: a Hugging Face directory (config.json + model.safetensors /
      pytorch_model.bin), a weights file alone (safetensors, torch.save
      pickle or TorchScript archive, Hugging Face or OpenAI/open_clip keys),
      or a directory written by `save_ported`.

  Raises:
    CheckpointError naming every missing, unexpected or mis-shaped key.
  """
  path = os.fspath(path)
  if ported.is_ported(path):
    config, params = ported.load_ported(path)
    config = vit.vit_config(config)
    check_params(config, params, path)
    return PortedVision(config, params, "ported", [])
  state, config_json, source = readers.read_checkpoint(path)
  if state and all(k.startswith("module.") for k in state):  # saved from a DataParallel wrapper
    state = {k[len("module."):]: v for k, v in state.items()}
  if hf.is_hf_layout(state):
    vision, ignored = hf.split_state(state)
    config = hf.infer_config(vision, config_json, source)
    specs, layout = hf.key_specs(config), "hf"
  elif openai.is_openai_layout(state):
    vision, ignored = openai.split_state(state)
    config = openai.infer_config(vision, source)
    specs, layout = openai.key_specs(config), "openai"
  else:
    sample = sorted(state)[:8]
    raise common.CheckpointError(
        f"{source}: neither a Hugging Face CLIP vision checkpoint (needs 'embeddings.patch_embedding.weight') "
        f"nor an OpenAI one (needs 'visual.conv1.weight'); first keys: {sample}")
  result = common.apply_key_map(vision, specs, ignored, source)
  check_params(config, result.params, source)
  if ignored:
    logging.info("%s: ignored %d tensors not in the vision tower (e.g. %s)", source, len(ignored), ignored[0][0])
  return PortedVision(config, result.params, layout, result.ignored)


def load_clip_vision(path: str, *, dtype: Any = jnp.float32) -> tuple[vit.VisionTransformer, dict[str, Any]]:
  """Loads a pretrained CLIP vision tower.

  Args:
    path: see `port_checkpoint` (Hugging Face, OpenAI/open_clip or ported Flax).
    dtype: compute dtype of the returned model; params stay float32.

  Returns:
    (model, params): `model.apply({"params": params}, images)` takes float
    images (B, H, W, 3) normalised with CLIP mean/std and returns a dict with
    last_hidden_state (B, 1+N, D) before ln_post and pooled (B, D) = ln_post of
    the class token (plus embedding (B, E) when the checkpoint has a projection).
  """
  result = port_checkpoint(path)
  model = vit.VisionTransformer(**result.config, dtype=dtype)
  return model, jax.tree.map(jnp.asarray, result.params)


def port_clip(checkpoint: str, out_dir: str) -> PortedVision:
  """Converts `checkpoint` once and writes it to `out_dir` (params.msgpack + vit_config.json)."""
  result = port_checkpoint(checkpoint)
  ported.save_ported(out_dir, result.config, result.params)
  return result
