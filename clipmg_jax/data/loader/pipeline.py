"""The Grain input pipeline: preconverted TFRecord shards -> batches of the data/model contract.

  source (ShardSource over the offset indexes; record i read directly)
    -> train: global shuffle (seeded; reshuffled every epoch) -> repeat
    -> decode + sample + augment (per-element RNG from the seed and the element's global position)
    -> per-process share: process p takes rows [p*L, (p+1)*L) of every global batch of G = P*L examples
    -> batch (per-process batch L = global batch G / process count P)
    -> to_iter_dataset -> mp_prefetch (worker_count processes; 0 = in-process)

The global batches (process 0's rows, then process 1's, ... as make_array_from_process_local_data assembles them)
are therefore the same examples in the same order, with the same augmentation, for every process count: a run on P
processes sees the batches of a one-process run, and a checkpointed position (global batches read) carries over
to another process count (clipmg_jax/training/data_position.py).

Each batch is a dict of numpy arrays (B = per-process batch size):
  frames    uint8   (B, num_frames, S, S, 3)   RGB, S = image_size
  keypoints float32 (B, num_pose_frames, 18, 3) x, y in pixels of the S x S crop, confidence in [0, 1] (0 = missing)
  label     int32   (B,)  0-based class index
  subject   int32   (B,)
  clip_id   int32   (B,)  video_id * 100000 + label_id
  mask      bool    (B,)  False for padding examples (see below); the loss and the metrics must ignore them.

Training: frames by segment-based random sampling from the stored JPEGs, pose frames over the same 8 time segments
(sampling.py); a random resized crop and, with probability 1/2, a horizontal flip, the same for all frames and
keypoints of a clip (augment.py). Evaluation: segment centres and the centre crop (short side resized to S, centre
S x S). Batches are identical for every worker_count (workers take whole batches in turn), so worker_count is a
pure speed setting.

Epochs: training repeats (num_epochs=None: forever) and drops a final partial batch; evaluation is one pass in which
every clip appears exactly once: the split is padded with masked-out examples (mask False, zero frames and keypoints,
label 0, subject and clip_id -1) up to a multiple of the global batch size, so every process yields the same number
of full batches.

Corrupt records: with skip_corrupt=False (default) reading one raises tfrecord.CorruptRecordError naming the shard and
byte offset; with skip_corrupt=True it becomes a masked-out example (mask False, clip_id batch.SKIPPED_CLIP_ID,
counted by evaluation as "skipped_records") and a warning naming file and offset is logged, so batch shapes and
the resume state are unaffected; count them as mask-False examples with clip_id -1 (in evaluation subtract the
padding, which only fills the last batch).

The iterator (`iter(make_dataset(...))`) is checkpointable: `get_state()` returns a small dict, `set_state(state)`
on a fresh iterator of the same dataset resumes exactly (also across processes, and with Orbax through
grain.checkpoint).
"""

import dataclasses
import logging
from typing import Any, Callable

from absl import flags
import grain
import ml_collections
import numpy as np

from clipmg_jax.data import keypoints as kp
from clipmg_jax.data import sampling
from clipmg_jax.data.loader import augment
from clipmg_jax.data.loader import batch as batch_lib
from clipmg_jax.data.loader import shard_source
from clipmg_jax.data.records import example_codec


def get_data_config() -> ml_collections.ConfigDict:
  """The data settings (`config.data` of a training config)."""
  c = ml_collections.ConfigDict()
  c.shards_dir = ""  # Folder with manifest.json and <split>-*.tfrecord (+ .index), as written by data_prep/convert.py.
  c.train_split = "train"
  c.eval_split = "test"
  c.batch_size = 32  # Global batch size (over all processes).
  c.eval_batch_size = 0  # Global evaluation batch size; 0 = batch_size.
  c.num_frames = 8  # RGB frames per clip.
  c.num_pose_frames = 32  # Pose frames per clip (a multiple of num_frames).
  c.image_size = 224  # Side S of the square crops, pixels.
  c.allow_upscale = False  # True: frames stored smaller than image_size are enlarged (clipmg_jax/data/frame_size.py).
  c.crop_scale = (0.4, 1.0)  # Training crop area as a fraction of the stored frame area.
  c.crop_ratio = (3 / 4, 4 / 3)  # Training crop aspect ratio (width / height) range.
  c.flip = True  # Random horizontal flip in training (mirrors x and swaps left/right joints).
  c.num_epochs = ml_collections.config_dict.placeholder(int)  # Training epochs; None = repeat forever.
  c.shuffle_seed = 0  # Seed of the global shuffle and of the augmentations.
  c.worker_count = 2  # Grain worker processes (0 = decode in the calling process).
  c.worker_buffer_size = 2  # Batches each worker prepares ahead.
  c.read_threads = 1  # Threads per process reading and decoding elements (Grain ReadOptions.num_threads).
  c.prefetch_buffer_size = 2  # Batches read ahead per process (Grain ReadOptions.prefetch_buffer_size).
  c.skip_corrupt = False  # True: corrupt records become masked-out examples (logged) instead of raising.
  # A prefix cache (python -m clipmg_jax.cache_prefix): training and evaluation read the frozen ViT prefix's tokens
  # from this folder instead of decoding frames (clipmg_jax/data/loader/token_pipeline.py); "" = off, frames as usual.
  c.prefix_cache = ""
  # Validation: whole training subjects held out of training, for periodic evaluation and checkpoint selection
  # (clipmg_jax/data/loader/validation.py). subjects, when given, wins over split.json's validation_subjects, which wins
  # over the seeded choice of num_subjects; num_subjects=0 and no subjects: no validation split.
  c.validation = ml_collections.ConfigDict(dict(num_subjects=4, seed=0, subjects=()))
  return c


@dataclasses.dataclass(frozen=True)
class _Padding:
  """Stands in for the examples that fill the last evaluation batch."""


_PAD = _Padding()


class _LocatedSource:
  """Yields (global record index, record bytes | SkippedRecord | _PAD) for the records `records` (default: all) in
  that order; positions past them, up to `length`, are padding."""

  def __init__(self, source: shard_source.ShardSource, length: int | None = None, records: np.ndarray | None = None):
    self._source = source
    self._records = np.arange(len(source)) if records is None else np.asarray(records, np.int64)
    if len(self._records) and not (0 <= self._records.min() and self._records.max() < len(source)):
      raise ValueError(f"record indexes outside [0, {len(source)}) for {source}")
    self._length = len(self._records) if length is None else length

  def __len__(self) -> int:
    return self._length

  def __getitem__(self, position):
    position = int(position)
    if position >= len(self._records):
      return position, _PAD
    index = int(self._records[position])
    return index, self._source[index]

  def location(self, index: int) -> str:
    return self._source.location(index)


class ClipDecoder:
  """Record bytes -> one example of the batch layout (frames, keypoints, label, subject, clip_id, mask).

  Called as `decoder((index, record))` for evaluation (deterministic) and `decoder((index, record), rng)` for
  training (random sampling, crop and flip).
  """

  def __init__(self, config: ml_collections.ConfigDict, source: shard_source.ShardSource, *, train: bool):
    self.num_frames = int(config.num_frames)
    self.num_pose_frames = int(config.num_pose_frames)
    self.image_size = int(config.image_size)
    self.crop_scale = tuple(config.crop_scale)
    self.crop_ratio = tuple(config.crop_ratio)
    self.flip = bool(config.flip)
    self.skip_corrupt = bool(config.skip_corrupt)
    self.train = train
    self._source = source

  def _padding(self, skipped: bool = False) -> dict:
    return batch_lib.padding_example(self.num_frames, self.num_pose_frames, self.image_size, skipped=skipped)

  def __call__(self, item, rng: np.random.Generator | None = None) -> dict:
    index, record = item
    if record is _PAD:
      return self._padding()
    if isinstance(record, shard_source.SkippedRecord):
      return self._padding(skipped=True)
    try:
      return self.decode(record, rng if self.train else None)
    except (ValueError, KeyError, OSError) as e:
      where = self._source.location(index)
      if not self.skip_corrupt:
        raise ValueError(f"{where}: cannot decode record: {e}") from e
      logging.warning("skipping undecodable record at %s: %s", where, e)
      return self._padding(skipped=True)

  def decode(self, serialized: bytes, rng: np.random.Generator | None) -> dict:
    """One example from record bytes; rng=None gives the evaluation transform."""
    example = example_codec.parse(serialized)
    meta = example_codec.decode_metadata(example)
    keypoints = example_codec.decode_keypoints(example, meta["num_frames"])
    jpegs = example.features.feature["frames"].bytes_list.value
    height, width = meta["frame_height"], meta["frame_width"]
    size = self.image_size
    rgb_idx, pose_idx = sampling.sample_clip(len(jpegs), meta["num_frames"], num_rgb=self.num_frames,
                                             num_pose=self.num_pose_frames, rng=rng)
    if rng is None:
      box, flip = augment.center_crop_box(height, width), False
    else:
      box = augment.random_resized_crop_box(height, width, rng, scale=self.crop_scale, ratio=self.crop_ratio)
      flip = self.flip and bool(rng.random() < 0.5)

    frames = np.zeros((self.num_frames, size, size, 3), np.uint8)
    if len(jpegs):
      decoded = {}
      for i, k in enumerate(rgb_idx.tolist()):
        if k not in decoded:  # Short clips repeat frames: decode each once.
          decoded[k] = augment.decode_crop_resize(jpegs[k], box, size, flip)
        frames[i] = decoded[k]
    points = augment.crop_keypoints(keypoints[pose_idx], box, size)
    if flip:
      points = augment.flip_keypoints(points, size)
    kp.zero_missing(points)
    return {
        "frames": frames, "keypoints": points, "label": np.int32(meta["label"]),
        "subject": np.int32(meta["subject"]), "clip_id": np.int32(meta["clip_id"]), "mask": np.bool_(True),
    }


class ProcessShare(grain.MapDataset):
  """Process `index` of `count`'s rows of every global batch: element i of this dataset is element
  (i // L) * G + index * L + i % L of the parent (L = local_batch, G = count * L)."""

  _MUTATES_ELEMENT_SPEC = False

  def __init__(self, parent: grain.MapDataset, index: int, count: int, local_batch: int):
    super().__init__(parent)
    self._index, self._count, self._local = index, count, local_batch
    self._length = len(parent) // (count * local_batch) * local_batch  # whole global batches only

  def __len__(self) -> int:
    return self._length

  def parent_index(self, index: int) -> int:
    batch, row = divmod(int(index), self._local)
    return (batch * self._count + self._index) * self._local + row

  def __getitem__(self, index):
    if isinstance(index, slice):
      return self.slice(index)
    return self._parent[self.parent_index(index)]

  def __str__(self) -> str:
    return f"ProcessShare(process {self._index} of {self._count}, {self._local} rows per global batch)"


def process_share(ds: grain.MapDataset, process_index: int, process_count: int,
                  local_batch: int) -> grain.MapDataset:
  """This process's rows of each global batch (the dataset itself for one process)."""
  if process_count == 1:
    return ds
  return ProcessShare(ds, process_index, process_count, local_batch)


def _local_batch_size(global_batch: int, process_count: int) -> int:
  if global_batch % process_count:
    raise ValueError(f"global batch size {global_batch} is not divisible by process_count {process_count}")
  return global_batch // process_count


def make_source(config: ml_collections.ConfigDict, split: str) -> shard_source.ShardSource:
  """The random-access source over the shards of `split` in config.shards_dir."""
  if not config.shards_dir:
    raise ValueError("config.shards_dir is empty: point it at the output folder of data_prep/convert.py")
  paths = shard_source.find_shards(config.shards_dir, split)
  source = shard_source.ShardSource(paths, skip_corrupt=config.skip_corrupt)
  if len(source) == 0:
    raise ValueError(f"{config.shards_dir}: split {split!r} has no records")
  return source


def make_map_dataset(config: ml_collections.ConfigDict, split: str, *, train: bool, seed: int | None = None,
                     process_index: int = 0, process_count: int = 1,
                     records: np.ndarray | None = None) -> grain.MapDataset:
  """The batched MapDataset of this process (before conversion to an iterator); see the module docstring.

  records: indexes of the split's records to use (e.g. those of some subjects); None = all of them."""
  source = make_source(config, split)
  if records is not None and not len(records):
    raise ValueError(f"{config.shards_dir}: no records of split {split!r} selected")
  num = len(source) if records is None else len(records)
  return batch_clips(lambda length: _LocatedSource(source, length, records), num,
                     ClipDecoder(config, source, train=train), config, train=train, seed=seed,
                     process_index=process_index, process_count=process_count)


def batch_clips(positions: Callable[[int | None], Any], num: int, decoder: Callable, config: ml_collections.ConfigDict,
                *, train: bool, seed: int | None, process_index: int, process_count: int) -> grain.MapDataset:
  """The batching every reader of clips shares (frames here, prefix-cache tokens in token_pipeline.py).

  positions(length): a random-access source over the `num` chosen clips in order, padded up to `length` (None: no
  padding); decoder: its element -> one example (with an RNG when training). Training: shuffled, repeated, each
  element's RNG from its global position; evaluation: one ordered pass padded to whole global batches."""
  seed = int(config.shuffle_seed if seed is None else seed)
  if train:
    local_batch = _local_batch_size(int(config.batch_size), process_count)
    ds = grain.MapDataset.source(positions(None)).seed(seed)
    ds = ds.shuffle().repeat(config.num_epochs)
    ds = ds.random_map(decoder)  # each element's RNG follows from its global position, not from the process
    ds = process_share(ds, process_index, process_count, local_batch)
    return ds.batch(local_batch, drop_remainder=True)
  global_batch = int(config.eval_batch_size or config.batch_size)
  local_batch = _local_batch_size(global_batch, process_count)
  padded = -(-num // global_batch) * global_batch
  ds = grain.MapDataset.source(positions(padded)).map(decoder)
  ds = process_share(ds, process_index, process_count, local_batch)
  return ds.batch(local_batch, drop_remainder=False)


def make_dataset(config: ml_collections.ConfigDict, split: str = "train", *, seed: int | None = None,
                 process_index: int = 0, process_count: int = 1, train: bool | None = None,
                 records: np.ndarray | None = None) -> grain.IterDataset:
  """The Grain dataset of batches for `split` on this process.

  Args:
    config: the data config (get_data_config()).
    split: shard split name ("train", "test", ...).
    seed: shuffle/augmentation seed; None = config.shuffle_seed.
    process_index, process_count: this process among the data-loading processes (jax.process_index() /
      jax.process_count()); each reads its contiguous share of every global batch (ProcessShare).
    train: training (shuffle, repeat, random augmentation) or evaluation (one ordered pass, centre crop, padding);
      None = (split == config.train_split).
    records: indexes of the split's records to read (shard_source.record_table selects them by subject);
      None = all. Validation reads the validation subjects' records of the train split this way, and training
      the others: one copy of the data on disk.
  Returns:
    A grain.IterDataset; `iter(ds)` is a checkpointable iterator (get_state / set_state) of batch dicts.
  """
  if train is None:
    train = split == config.train_split
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index {process_index} not in [0, {process_count})")
  ds = make_map_dataset(config, split, train=train, seed=seed, process_index=process_index,
                        process_count=process_count, records=records)
  return to_iter_dataset(ds, config)


def to_iter_dataset(ds: grain.MapDataset, config: ml_collections.ConfigDict) -> grain.IterDataset:
  """The batched MapDataset as the iterable dataset the trainer reads: config's read threads, prefetch and worker
  processes."""
  read_options = grain.ReadOptions(num_threads=int(config.read_threads),
                                   prefetch_buffer_size=int(config.prefetch_buffer_size))
  ds = ds.to_iter_dataset(read_options)
  if config.worker_count > 0:
    # Grain's worker processes read absl flags; callers that parse their own (argparse, pytest) never mark them
    # parsed, and an unparsed flag read raises. Defaults are what is wanted then.
    if not flags.FLAGS.is_parsed():
      flags.FLAGS.mark_as_parsed()
    ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=int(config.worker_count),
                                                     per_worker_buffer_size=int(config.worker_buffer_size)))
  return ds


def num_examples(config: ml_collections.ConfigDict, split: str) -> int:
  """Number of records (clips) of `split`."""
  return len(make_source(config, split))


def num_eval_batches(config: ml_collections.ConfigDict, split: str) -> int:
  """Batches of one evaluation pass (the same on every process)."""
  global_batch = int(config.eval_batch_size or config.batch_size)
  return -(-num_examples(config, split) // global_batch)
