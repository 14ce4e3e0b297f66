"""What identifies a prefix cache, and the checks before a run uses one (PrefixCacheError otherwise).

A cache (built by clipmg_jax/training/prefix_cache.py, read by token_pipeline.py) holds the frozen ViT prefix's
output tokens. It belongs to one tower and one dataset:
- the tower: `tower_digest`, a sha256 of the prefix's parameters (patch embedding, class and position embeddings,
  ln_pre, the frozen blocks) as the run holds them — whatever checkpoint or initialisation they came from; the
  checkpoint's path is recorded beside it for people;
- the depth (frozen blocks) and the tower's shape;
- the data: the source shards' record identity and the view settings (token_pipeline.check_data).
Only the prefix is frozen in such a run: config.train_all_params (everything trains) cannot use a cache.
"""

import hashlib

import jax
import ml_collections
import numpy as np

from clipmg_jax.data.loader import token_pipeline
from clipmg_jax.data.records import manifest as manifest_lib
from clipmg_jax.models import clipmg_config
from clipmg_jax.models import variants

PrefixCacheError = token_pipeline.PrefixCacheError
# The tower's parameters that the prefix uses besides its blocks (vit.VisionTransformer.embed).
_STEM = ("conv1", "class_embedding", "positional_embedding", "ln_pre")


def depth(model_config: ml_collections.ConfigDict) -> int:
  """Frozen ViT blocks: the prefix is the embedding and blocks [0, depth)."""
  return clipmg_config.vit_fields(model_config)["layers"] - int(model_config.trainable_blocks)


def class_token_kept(model_config: ml_collections.ConfigDict) -> bool:
  """Whether the cached tokens keep the class token: the trainable blocks attend to it; with none, nothing reads it."""
  return int(model_config.trainable_blocks) > 0


def tower_digest(params, model_config: ml_collections.ConfigDict) -> str:
  """sha256 of the frozen prefix's parameters (float32 bytes, in name order) of a CLIP-MG parameter tree."""
  vit = params["vit"]
  names = list(_STEM) + [f"resblocks_{i}" for i in range(depth(model_config))]
  digest = hashlib.sha256()
  for name in names:
    for path, leaf in sorted(jax.tree_util.tree_flatten_with_path(vit[name])[0], key=lambda x: jax.tree_util.keystr(x[0])):
      digest.update(f"{name}{jax.tree_util.keystr(path)}".encode())
      digest.update(np.ascontiguousarray(np.asarray(leaf, np.float32)).tobytes())
  return digest.hexdigest()


def tower_identity(model_config: ml_collections.ConfigDict) -> dict:
  return {"vit": clipmg_config.vit_fields(model_config), "frozen_blocks": depth(model_config),
          "class_token": class_token_kept(model_config)}


def check_config(config: ml_collections.ConfigDict) -> None:
  """PrefixCacheError when the run has nothing a cache could stand in for, or trains the prefix."""
  if not variants.uses(config.model.variant).vision:
    raise PrefixCacheError(f"config.data.prefix_cache is set but the variant {config.model.variant!r} has no vision "
                           "tower: leave it empty")
  if config.get("train_all_params", False):
    raise PrefixCacheError("config.data.prefix_cache is set with config.train_all_params=True: the ViT prefix would "
                           "train, so its tokens change every step. Leave one of them off.")


def check_run(config: ml_collections.ConfigDict, data: ml_collections.ConfigDict, source_manifest: dict) -> None:
  """Everything of the cache config.data.prefix_cache checkable before the parameters exist: the config can use one,
  the depth and tower shape, the data (token_pipeline.check_data)."""
  check_config(config)
  cache = token_pipeline.read_manifest(data.prefix_cache)
  where = manifest_lib.path(data.prefix_cache)
  ours = tower_identity(config.model)
  for key, value in ours.items():
    if cache["tower"][key] != value:
      raise PrefixCacheError(f"{where} was made for tower {key}={cache['tower'][key]!r}, this run has {value!r} "
                             f"(model.trainable_blocks={config.model.trainable_blocks}). Build a cache for this "
                             "run's model.")
  token_pipeline.check_data(data.prefix_cache, cache, data, source_manifest, (data.train_split, data.eval_split))
  check_files(data.prefix_cache, cache, (data.train_split, data.eval_split))


def check_files(cache_dir, cache: dict, splits) -> None:
  """PrefixCacheError unless every shard of `splits` that the manifest lists is there with an offset index of its
  record count (the shards' own check, manifest.check_splits): a missing or cut file is found before step 1, not at
  the final evaluation."""
  try:
    manifest_lib.check_splits(cache_dir, cache, splits,
                              remedy="Build the cache again (python -m clipmg_jax.cache_prefix).")
  except manifest_lib.DataSetupError as e:  # the cache's own error type: its other checks raise it too
    raise PrefixCacheError(f"prefix cache: {e}") from None


def check_tower(config: ml_collections.ConfigDict, params) -> None:
  """PrefixCacheError unless the run's prefix parameters are the ones the cache was computed with (nothing when the
  run has no cache)."""
  cache_dir = config.data.get("prefix_cache") if config.get("data") else None
  if not cache_dir:
    return
  cache = token_pipeline.read_manifest(cache_dir)
  ours = tower_digest(params, config.model)
  if cache["tower"]["digest"] != ours:
    raise PrefixCacheError(
        f"{manifest_lib.path(cache_dir)} was computed by another tower (parameter digest {cache['tower']['digest'][:12]}"
        f", from {cache['tower'].get('checkpoint') or 'its random initialisation'}) than this run's ({ours[:12]}, "
        f"from {config.get('init', {}).get('vit_checkpoint') or 'random initialisation, seed ' + str(config.seed)}). "
        "Build a cache with this run's config.")
