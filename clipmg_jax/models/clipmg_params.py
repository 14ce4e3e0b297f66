"""The CLIP-MG parameter tree: which parameters the optimizer updates, and pretrained ViT weights dropped in."""

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from clipmg_jax.models import clipmg_config


def _key_name(entry: Any) -> str:
  return str(getattr(entry, "key", getattr(entry, "name", entry)))


def trainable_mask(params: Any, config: ml_collections.ConfigDict) -> Any:
  """Pytree of bools with the structure of `params` (True = updated by the optimizer).

  Trainable: the last `config.trainable_blocks` ViT blocks (params["vit"]["resblocks_<i>"]), the ViT's ln_post
  (applied to every token) and every module outside params["vit"]. Frozen: the rest of the ViT (conv1, class and
  position embeddings, ln_pre, the first blocks, and `proj` if a checkpoint brought one). Accepts the params
  collection or the whole variables dict ({"params": ...}).
  """
  if "params" in params and "vit" not in params:
    return {**{k: jax.tree.map(lambda _: False, v) for k, v in params.items() if k != "params"},
            "params": trainable_mask(params["params"], config)}
  layers = clipmg_config.vit_fields(config)["layers"]
  trainable_vit = {f"resblocks_{i}" for i in range(layers - config.trainable_blocks, layers)} | {"ln_post"}

  def is_trainable(path, _):
    names = [_key_name(p) for p in path]
    if names[0] == "vit":
      return len(names) > 1 and names[1] in trainable_vit
    return True

  return jax.tree_util.tree_map_with_path(is_trainable, params)


def with_pretrained_vit(params: Any, vit_params: Any) -> Any:
  """Returns params with params["vit"] replaced by pretrained tower parameters (e.g. a ported CLIP checkpoint).

  Entries the model does not use (the CLIP projection `proj`) are dropped; every other leaf must match the
  model's shape, else ValueError names the path.
  """
  if "vit" not in params:
    raise ValueError("params has no 'vit' entry (the pose_only variant has no vision tower)")
  vit_params = {k: v for k, v in vit_params.items() if k != "proj"}
  expected = jax.tree_util.tree_flatten_with_path(params["vit"])[0]
  given = dict((jax.tree_util.keystr(p), v) for p, v in jax.tree_util.tree_flatten_with_path(vit_params)[0])
  for path, leaf in expected:
    key = jax.tree_util.keystr(path)
    if key not in given:
      raise ValueError(f"pretrained ViT parameters lack vit{key} (expected shape {leaf.shape})")
    if tuple(given[key].shape) != tuple(leaf.shape):
      raise ValueError(f"pretrained vit{key} has shape {tuple(given[key].shape)}, model expects {leaf.shape}")
  extra = sorted(set(given) - {jax.tree_util.keystr(p) for p, _ in expected})
  if extra:
    raise ValueError(f"pretrained ViT parameters hold entries the model does not have: {extra[:5]}")
  params = {**params, "vit": jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), vit_params)}
  if VISION_TOP in params:
    # Robust fusion's vision classifier starts from the same pretrained trainable blocks and ln_post as the tower.
    params[VISION_TOP] = {k: params["vit"][k] for k in params[VISION_TOP]}
  return params


# The copy of the tower's trainable blocks and ln_post that robust fusion's vision classifier runs
# (robust.vision_readout="tower"; clipmg.ClipMG).
VISION_TOP = "vision_top"
# The modules of robust fusion's vision classifier (with "head" or "tower" readout): they train as a group of their
# own (own gradient clip, learning rate times robust.vision_lr_scale; optimizer_groups below).
VISION_CLASSIFIER = (VISION_TOP, "vision_cross_attention", "vision_head")


def optimizer_groups(config: ml_collections.ConfigDict) -> dict[str, tuple[tuple[str, ...], float]]:
  """{"vision_classifier": (its modules, learning-rate scale)} for a model with robust fusion's own vision classifier,
  else {} (optimizer.make_optimizer's `groups`). Its own gradient clip keeps the fused model's updates independent of
  it (the distillation target is held fixed), so the fused model trains as the same model without +robust."""
  robust = config.get("robust") or {}
  if robust.get("vision_readout", "shared") == "shared":
    return {}
  return {"vision_classifier": (VISION_CLASSIFIER, float(robust.get("vision_lr_scale", 1.0)))}
