"""The shards' stored frame size against the config's crop size (config.data.image_size), checked at data set-up.

A crop is a square of at most the stored frame's short side (the evaluation's centre crop is exactly that), resized
to image_size. Frames stored smaller than image_size are therefore enlarged — e.g. 128-px frames cropped to 224:
4x the tokens of blurred pixels, usually a conversion made for another config. That stops the run with a
DataSetupError unless config.data.allow_upscale=True asks for it, which logs the scale factor instead.

The stored size is read from the first record of each split (one read each): the manifest records only the
converter's upper bound (options.short_side; frames are never enlarged, so smaller videos stay smaller).
"""

import logging
import os
import pathlib

import ml_collections

from clipmg_jax.data.records import example_codec
from clipmg_jax.data.records import manifest as manifest_lib
from clipmg_jax.data.records import tfrecord


def stored_frame_size(shards_dir: str | os.PathLike, manifest: dict, splits) -> tuple[int, int] | None:
  """(height, width) of the smallest stored frames among the first record of each of `splits`; None when no such
  record stores frames (skeleton-only shards)."""
  sizes = []
  for split in dict.fromkeys(splits):
    entries = [e for e in manifest["splits"][split].get("shards", []) if e.get("num_records", 1)]
    if not entries:
      continue
    shard = pathlib.Path(shards_dir) / entries[0]["path"]
    try:
      offset, length = (int(v) for v in tfrecord.read_index(tfrecord.index_path(shard))[0])
      fd = os.open(shard, os.O_RDONLY)
      try:
        example = example_codec.parse(tfrecord.read_record_at(fd, shard, offset, length))
      finally:
        os.close(fd)
      meta = example_codec.decode_metadata(example)
    except (OSError, ValueError, IndexError) as e:  # a damaged record is reported where it is read for training
      logging.warning("stored frame size of split %r not checked: the first record of %s cannot be read (%s)",
                      split, shard, e)
      continue
    if example.features.feature["frames"].bytes_list.value:
      sizes.append((int(meta["frame_height"]), int(meta["frame_width"])))
  return min(sizes, key=min) if sizes else None


def check(data_config: ml_collections.ConfigDict, manifest: dict) -> dict | None:
  """Checks config.data.image_size against the stored frames of the train and evaluation splits (module doc).
  Returns {"height", "width"} of the stored frames, or None for skeleton-only shards."""
  stored = stored_frame_size(data_config.shards_dir, manifest, (data_config.train_split, data_config.eval_split))
  if stored is None:
    return None
  size, short = int(data_config.image_size), min(stored)
  if size > short:
    scale = size / short
    if not data_config.get("allow_upscale", False):
      raise manifest_lib.DataSetupError(
          f"config.data.image_size={size} is larger than the frames stored in {data_config.shards_dir} "
          f"({stored[0]}x{stored[1]}, short side {short}): every crop would be enlarged {scale:.2f}x. Convert the "
          f"dataset again with --short_side={size} (or more), set --config.data.image_size={short} (or less), or "
          "set --config.data.allow_upscale=True to enlarge the frames on purpose.")
    logging.warning("config.data.image_size=%d is larger than the stored frames (%dx%d): crops are enlarged "
                    "%.2fx (config.data.allow_upscale=True)", size, stored[0], stored[1], scale)
  return {"height": stored[0], "width": stored[1]}
