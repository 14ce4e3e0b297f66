"""The Grain pipeline over a prefix cache: batches of the frozen ViT prefix's tokens instead of frames.

A prefix cache (written by `python -m clipmg_jax.cache_prefix`, clipmg_jax/training/prefix_cache.py) holds, for every
clip of the source shards' training split, K views' tokens (view 0 = the evaluation transform, views 1..K-1 drawn
from the training augmentation with a recorded seed) and for the evaluation split the evaluation view, as token
records (records/token_record.py) in TFRecord shards, record clip * K + view. Set config.data.prefix_cache to its
folder; config.data.shards_dir stays the source shards (their manifest gives the classes, the subjects and the
validation split, as without a cache).

The datasets mirror pipeline.py's: the same global shuffle of the same clip indexes, the same per-element RNG, the
same process share, padding and batch sizes. Training takes one of the K views per clip and epoch, drawn from the
element's RNG (K = 1: always the evaluation view, i.e. no augmentation); evaluation reads view 0. A batch is the
frame pipeline's with `frames` replaced by
  tokens  bfloat16 or float32 (B, num_frames, N, D)  N = 1 + P (class token first) or P when no ViT block trains
and keypoints, label, subject, clip_id, mask as before (the keypoints of the view the tokens come from).

The cache is checked against the run before anything is read (check_data here: the source shards' identity, the
split sizes, the frame and augmentation settings; clipmg_jax/training/prefix_cache.py: the tower and the depth);
a mismatch is a PrefixCacheError naming the field, the cache's value and the run's.
"""

import hashlib
import json
import logging
import pathlib

import grain
import ml_collections
import numpy as np

from clipmg_jax.data.loader import batch as batch_lib
from clipmg_jax.data.loader import pipeline
from clipmg_jax.data.loader import shard_source
from clipmg_jax.data.records import manifest as manifest_lib
from clipmg_jax.data.records import token_record

KIND = "prefix_cache"
VERSION = 1
# The data settings a view depends on: a cache made with other values holds other pixels than the run would see.
VIEW_SETTINGS = ("image_size", "num_frames", "num_pose_frames", "crop_scale", "crop_ratio", "flip")


class PrefixCacheError(manifest_lib.DataSetupError):
  """A prefix cache that does not belong to the run (other tower, depth, data or settings) or cannot be read."""


def read_manifest(cache_dir: str | pathlib.Path) -> dict:
  """The cache's manifest.json; PrefixCacheError when the folder holds no finished cache."""
  file = manifest_lib.path(cache_dir)
  if not file.is_file():
    raise PrefixCacheError(f"config.data.prefix_cache={cache_dir}: no {manifest_lib.FILENAME} there. Build the cache "
                           "with `python -m clipmg_jax.cache_prefix --config=<the run's config> --out=<folder>` (its "
                           "manifest is written last, so a missing one also means an unfinished build).")
  document = json.loads(file.read_text())
  if document.get("kind") != KIND:
    raise PrefixCacheError(f"{file} is not a prefix cache's manifest (kind {document.get('kind')!r})")
  return document


def source_digest(source_manifest: dict) -> str:
  """sha256 of what identifies the source shards' records: their classes, and per split the shards with each record's
  subject and label, in order (the conversion's other bookkeeping is left out)."""
  identity = {"classes": source_manifest.get("classes"),
              "splits": {name: [{k: e.get(k) for k in ("path", "num_records", "subjects", "labels")}
                                for e in split.get("shards", [])]
                         for name, split in source_manifest.get("splits", {}).items()}}
  return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def view_settings(data_config: ml_collections.ConfigDict) -> dict:
  return {k: (list(v) if isinstance(v, (tuple, list)) else v) for k, v in
          ((k, data_config.get(k)) for k in VIEW_SETTINGS)}


def check_data(cache_dir: str | pathlib.Path, cache: dict, data_config: ml_collections.ConfigDict,
               source_manifest: dict, splits) -> None:
  """PrefixCacheError unless the cache was made from these source shards with these view settings and holds every
  clip of `splits` (names of the source's splits)."""
  where = manifest_lib.path(cache_dir)
  made_from = cache["data"]
  if made_from["source_digest"] != source_digest(source_manifest):
    raise PrefixCacheError(f"{where} was made from other shards ({made_from['shards_dir']}) than "
                           f"config.data.shards_dir={data_config.shards_dir}: their records differ. Build a cache of "
                           "these shards.")
  ours = view_settings(data_config)
  for key in VIEW_SETTINGS:
    if made_from["settings"].get(key) != ours[key]:
      raise PrefixCacheError(f"{where} was made with data.{key}={made_from['settings'].get(key)!r}, this run has "
                             f"{ours[key]!r}: its views are not the ones the run would see. Build a cache with the "
                             "run's config.")
  for split in dict.fromkeys(splits):
    entry = cache["splits"].get(split)
    expected = source_manifest["splits"][split]["num_clips"]
    if entry is None:
      raise PrefixCacheError(f"{where} holds no split {split!r} (has {sorted(cache['splits'])})")
    if entry["num_clips"] != expected:
      raise PrefixCacheError(f"{where}: split {split!r} has {entry['num_clips']} clips, the source shards "
                             f"{expected} (a cache of part of the data, e.g. --max_clips, cannot train)")


class _ClipPositions:
  """Position -> global clip index of the split (the `records` chosen, in order), -1 past them (padding)."""

  def __init__(self, num_clips: int, length: int | None = None, records: np.ndarray | None = None):
    self._records = np.arange(num_clips) if records is None else np.asarray(records, np.int64)
    self._length = len(self._records) if length is None else length

  def __len__(self) -> int:
    return self._length

  def __getitem__(self, position):
    position = int(position)
    return int(self._records[position]) if position < len(self._records) else -1


class TokenDecoder:
  """Clip index -> one example of the cache's batch layout; `decoder(index, rng)` picks one of the clip's views
  (training), `decoder(index)` view 0 (evaluation); index -1 is a padding example."""

  def __init__(self, source: shard_source.ShardSource, views: int, tokens_shape, dtype: str,
               num_pose_frames: int, skip_corrupt: bool):
    self._source, self.views = source, int(views)
    self.tokens_shape, self.dtype = tuple(tokens_shape), token_record.DTYPES[dtype]
    self.num_pose_frames, self.skip_corrupt = int(num_pose_frames), skip_corrupt

  @property
  def num_clips(self) -> int:
    return len(self._source) // self.views

  def record(self, index: int) -> token_record.TokenRecord:
    """Record `index` (= clip * views + view) of the split, decoded."""
    return token_record.decode(self._source[index])

  def _padding(self, skipped: bool = False) -> dict:
    example = batch_lib.padding_example(1, self.num_pose_frames, 1, skipped=skipped)
    del example["frames"]
    return {"tokens": np.zeros(self.tokens_shape, self.dtype), **example}

  def __call__(self, clip: int, rng: np.random.Generator | None = None) -> dict:
    if clip < 0:
      return self._padding()
    view = 0 if rng is None or self.views == 1 else int(rng.integers(self.views))
    index = clip * self.views + view
    data = self._source[index]
    if isinstance(data, shard_source.SkippedRecord):
      return self._padding(skipped=True)
    try:
      record = token_record.decode(data)
      if record.tokens.shape != self.tokens_shape:
        raise ValueError(f"tokens of shape {record.tokens.shape}, the cache's manifest says {self.tokens_shape}")
    except (ValueError, KeyError) as e:
      where = self._source.location(index)
      if not self.skip_corrupt:
        raise ValueError(f"{where}: cannot decode token record: {e}") from e
      logging.warning("skipping undecodable token record at %s: %s", where, e)
      return self._padding(skipped=True)
    return {"tokens": record.tokens, "keypoints": record.keypoints, "label": np.int32(record.label),
            "subject": np.int32(record.subject), "clip_id": np.int32(record.clip_id), "mask": np.bool_(True)}


def make_decoder(config: ml_collections.ConfigDict, split: str) -> TokenDecoder:
  cache_dir = pathlib.Path(config.prefix_cache)
  cache = read_manifest(cache_dir)
  if split not in cache["splits"]:
    raise PrefixCacheError(f"{manifest_lib.path(cache_dir)} holds no split {split!r} (has {sorted(cache['splits'])})")
  entry = cache["splits"][split]
  source = shard_source.ShardSource([cache_dir / s["path"] for s in entry["shards"]], skip_corrupt=config.skip_corrupt)
  if len(source) != entry["num_clips"] * entry["views"]:
    raise PrefixCacheError(f"{cache_dir}: split {split!r} holds {len(source)} records, its manifest "
                           f"{entry['num_clips']} clips x {entry['views']} views")
  return TokenDecoder(source, entry["views"], cache["tokens_shape"], cache["dtype"], int(config.num_pose_frames),
                      bool(config.skip_corrupt))


def make_map_dataset(config: ml_collections.ConfigDict, split: str, *, train: bool, seed: int | None = None,
                     process_index: int = 0, process_count: int = 1,
                     records: np.ndarray | None = None) -> grain.MapDataset:
  """pipeline.make_map_dataset's batches, of tokens read from config.prefix_cache."""
  decoder = make_decoder(config, split)
  if records is not None and not len(records):
    raise ValueError(f"{config.prefix_cache}: no records of split {split!r} selected")
  num = decoder.num_clips if records is None else len(records)
  return pipeline.batch_clips(lambda length: _ClipPositions(decoder.num_clips, length, records), num, decoder,
                              config, train=train, seed=seed, process_index=process_index,
                              process_count=process_count)


def make_dataset(config: ml_collections.ConfigDict, split: str = "train", *, seed: int | None = None,
                 process_index: int = 0, process_count: int = 1, train: bool | None = None,
                 records: np.ndarray | None = None) -> grain.IterDataset:
  """pipeline.make_dataset (same arguments, same order of clips) over the prefix cache config.prefix_cache."""
  if train is None:
    train = split == config.train_split
  ds = make_map_dataset(config, split, train=train, seed=seed, process_index=process_index,
                        process_count=process_count, records=records)
  return pipeline.to_iter_dataset(ds, config)
