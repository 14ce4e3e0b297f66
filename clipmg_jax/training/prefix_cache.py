"""The prefix cache built: the frozen ViT prefix's output tokens computed once, for training and evaluation to read.

In the paper's model 10 of ViT-B/16's 12 blocks are frozen: their forward pass gives the same tokens for the same
pixels in every epoch, ablation and seed. `build` computes them once for a run's config and shards — K views per
training clip (view 0 the evaluation transform, views 1..K-1 drawn from the training augmentation with the RNG
`np.random.default_rng([seed, clip, view])`) and the evaluation view of the evaluation split's clips — and stores
them as token records (data/records/token_record.py) in TFRecord shards with offset indexes and a manifest.json
written last. With config.data.prefix_cache set, data/loader/token_pipeline.py reads them and the model starts at
the first trainable block (models/clipmg.py, `prefix_tokens`). What identifies a cache, and the checks before a run
uses one: data/loader/token_cache.py.
"""

import functools
import json
import itertools
import logging
import math
import pathlib
import time

import jax
import ml_collections
import numpy as np
import tqdm

from clipmg_jax.data.loader import pipeline
from clipmg_jax.data.loader import shard_source
from clipmg_jax.data.loader import token_cache
from clipmg_jax.data.loader import token_pipeline
from clipmg_jax.data.records import manifest as manifest_lib
from clipmg_jax.data.records import shard_writer
from clipmg_jax.data.records import token_record
from clipmg_jax.data.synthetic import prepare as synthetic_prepare
from clipmg_jax.models import clipmg_config
from clipmg_jax.models import vit as vit_lib
from clipmg_jax.training import model_setup


def initial_params(config: ml_collections.ConfigDict, image_size: int):
  """The run's step-0 parameters as setup.Setup.fresh_state makes them (same init key, then the pretrained tower)."""
  bundle = model_setup.build_model(config.model)
  init_rng, _ = jax.random.split(jax.random.PRNGKey(config.seed))
  params = model_setup.init_params(bundle, init_rng, image_size)
  return model_setup.load_pretrained_vision(params, config.get("init", ml_collections.ConfigDict()))


def prefix_function(model_config: ml_collections.ConfigDict):
  """jitted (vit params, uint8 frames (B, T, S, S, 3)) -> the prefix's output tokens (B, T, N, D) in the compute
  dtype: N = 1 + P, or P without the class token. One per model configuration, so that builds reuse its compilation."""
  return _prefix_function(model_config.to_json(sort_keys=True))


@functools.lru_cache(maxsize=4)
def _prefix_function(model_json: str):
  model_config = ml_collections.ConfigDict(json.loads(model_json))
  fields = clipmg_config.vit_fields(model_config)
  dtype = clipmg_config.compute_dtype(model_config)
  tower = vit_lib.VisionTransformer(**fields, dtype=dtype)
  frozen, keep_cls = token_cache.depth(model_config), token_cache.class_token_kept(model_config)

  @jax.jit
  def prefix(vit_params, frames):
    b, t, h, w, c = frames.shape
    images = vit_lib.normalize_images(frames.reshape(b * t, h, w, c), dtype)
    tokens = tower.apply({"params": vit_params}, images, frozen, method=vit_lib.VisionTransformer.prefix)
    tokens = tokens if keep_cls else tokens[:, 1:]
    return tokens.reshape(b, t, tokens.shape[1], tokens.shape[2])

  return prefix


def view_rng(seed: int, clip: int, view: int) -> np.random.Generator | None:
  """The augmentation RNG of a clip's view; None for view 0 (the evaluation transform)."""
  return None if view == 0 else np.random.default_rng([int(seed), int(clip), int(view)])


def build(config: ml_collections.ConfigDict, out_dir: str | pathlib.Path, *, workdir: str | pathlib.Path | None = None,
          views: int = 1, seed: int = 0, dtype: str = "bfloat16", batch_size: int = 8, records_per_shard: int = 256,
          max_clips: int | None = None, progress: bool = True) -> dict:
  """Writes the prefix cache of `config`'s model and data into out_dir and returns its manifest.

  workdir: where a synthetic config's dataset lives (as for training; unused when config.data.shards_dir is set).
  views: K views per training-split clip; the evaluation split gets its evaluation view. seed: of views 1..K-1.
  dtype: "bfloat16" (default; half the disk) or "float32" (the live path's tokens to the last bits the compiler
  allows). max_clips: only the first clips of each split (timing; such a cache cannot train: check_data refuses it).
  """
  if views < 1:
    raise ValueError(f"views={views}: at least 1 (the evaluation view)")
  storage = token_record.DTYPES[dtype]
  token_cache.check_config(config)
  data = synthetic_prepare.make_shards(config.data, workdir or out_dir)
  source_manifest = manifest_lib.read(data.shards_dir)
  splits = {data.train_split: views}
  splits.setdefault(data.eval_split, 1)
  manifest_lib.check_splits(data.shards_dir, source_manifest, splits)
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  # A rebuild first removes the manifest, which is written last: a build killed half way leaves a folder that no run
  # reads as a cache (never the old manifest over new shards: a run would train on two towers' tokens).
  manifest_lib.path(out_dir).unlink(missing_ok=True)
  params = initial_params(config, int(data.image_size))
  vit_params = params["vit"]
  prefix = prefix_function(config.model)
  started = time.perf_counter()
  entries, tokens_shape = {}, None
  for split, k in splits.items():
    source = pipeline.make_source(data, split)
    decoder = pipeline.ClipDecoder(data, source, train=True)
    num_clips = len(source) if max_clips is None else min(len(source), int(max_clips))
    items = [(clip, view) for clip in range(num_clips) for view in range(k)]  # record clip * k + view
    bar = tqdm.tqdm(total=len(items), desc=f"{split} views", unit="view", disable=not progress)

    def records(items=items, source=source, decoder=decoder, bar=bar):
      for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        examples = [decoder.decode(source[clip], view_rng(seed, clip, view)) for clip, view in chunk]
        frames = np.stack([e["frames"] for e in examples])
        pad = batch_size - len(chunk)  # one compiled shape: the last chunk is padded, its padding dropped
        if pad:
          frames = np.concatenate([frames, np.zeros((pad,) + frames.shape[1:], frames.dtype)])
        tokens = np.asarray(jax.device_get(prefix(vit_params, frames).astype(storage)))
        for (clip, view), example, clip_tokens in zip(chunk, examples, tokens):
          yield token_record.encode(token_record.TokenRecord(
              tokens=clip_tokens, keypoints=example["keypoints"], label=int(example["label"]),
              subject=int(example["subject"]), clip_id=int(example["clip_id"]), view=view))
        bar.update(len(chunk))

    stream = records()
    count = max(1, math.ceil(len(items) / records_per_shard))
    shards = []
    for i in range(count):
      name = shard_writer.shard_name(split, i, count)
      written = shard_writer.write_shard(out_dir / name, itertools.islice(stream, records_per_shard))
      shards.append({"path": name, "index": name + ".index", "num_records": written})
    bar.close()
    first = token_record.decode(shard_source.ShardSource([out_dir / shards[0]["path"]])[0])
    tokens_shape = list(first.tokens.shape)
    entries[split] = {"num_clips": num_clips, "views": k, "shards": shards}
  seconds = time.perf_counter() - started
  num_views = sum(e["num_clips"] * e["views"] for e in entries.values())
  document = {
      "kind": token_pipeline.KIND, "version": token_pipeline.VERSION,
      "tower": {"digest": token_cache.tower_digest(params, config.model), **token_cache.tower_identity(config.model),
                "checkpoint": str(config.get("init", {}).get("vit_checkpoint") or ""),
                "compute_dtype": config.model.dtype, "seed": int(config.seed)},
      "dtype": dtype, "tokens_shape": tokens_shape,
      "views": {"per_training_clip": views, "seed": seed,
                "rule": "view 0: evaluation transform; view v >= 1: training augmentation with "
                        "np.random.default_rng([seed, clip, v])"},
      "data": {"shards_dir": str(pathlib.Path(data.shards_dir).absolute()),
               "source_digest": token_pipeline.source_digest(source_manifest),
               "settings": token_pipeline.view_settings(data)},
      "splits": entries,
      "build": {"seconds": seconds, "views": num_views, "seconds_per_view": seconds / max(num_views, 1),
                "batch_size": batch_size, "partial": max_clips is not None},
  }
  manifest_lib.write(out_dir, document)  # last: its presence means the cache is complete
  logging.info("prefix cache %s: %d views in %.1f s", out_dir, num_views, seconds)
  return document
