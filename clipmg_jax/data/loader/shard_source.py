"""A random-access data source over TFRecord shards, built on their offset indexes (Grain's source protocol).

Record i of the source is found through the shards' `.index` files (see tfrecord.py) and read with one pread, so a
Grain MapDataset over it can shuffle globally. Files are opened lazily per process: the source pickles without open
descriptors, as Grain's worker processes require.
"""

import dataclasses
import logging
import os
import pathlib
import threading
from typing import Sequence

import numpy as np

from clipmg_jax.data.records import manifest as manifest_lib
from clipmg_jax.data.records import tfrecord


@dataclasses.dataclass(frozen=True)
class SkippedRecord:
  """Stands in for a record that could not be read when skipping corrupt records is enabled."""
  path: str
  offset: int
  reason: str


class ShardSource:
  """Random access to the records of TFRecord shards: `len(source)`, `source[i] -> bytes`.

  Args:
    shard_paths: TFRecord files, each with `<path>.index` beside it; records are numbered shard by shard in order.
    skip_corrupt: if False a bad record raises tfrecord.CorruptRecordError naming file and byte offset; if True it
      is logged and returned as a SkippedRecord (the pipeline turns it into a masked-out example) and counted in
      `self.skipped` (per process).
  """

  def __init__(self, shard_paths: Sequence[str | os.PathLike], *, skip_corrupt: bool = False):
    self._paths = [str(p) for p in shard_paths]
    if not self._paths:
      raise ValueError("ShardSource needs at least one shard")
    indexes = []
    for path in self._paths:
      index_file = tfrecord.index_path(path)
      if not index_file.is_file():
        raise FileNotFoundError(f"{path}: no offset index {index_file} (rebuild it with tfrecord.build_index)")
      indexes.append(tfrecord.read_index(index_file))
    self._entries = np.concatenate(indexes, axis=0)  # (N, 2) offset, length
    self._shard_of = np.concatenate([np.full(len(ix), s, np.int32) for s, ix in enumerate(indexes)])
    self._skip_corrupt = skip_corrupt
    self.skipped: list[SkippedRecord] = []
    self._fds: dict[int, int] = {}
    self._pid = None
    self._lock = threading.Lock()

  @property
  def paths(self) -> list[str]:
    return list(self._paths)

  def __len__(self) -> int:
    return len(self._entries)

  def __repr__(self) -> str:
    return f"ShardSource({len(self._paths)} shards, {len(self)} records)"

  def location(self, index: int) -> str:
    """Where record `index` lives: "<shard path> at byte offset <offset>"."""
    return f"{self._paths[int(self._shard_of[index])]} at byte offset {int(self._entries[index, 0])}"

  def _fd(self, shard: int) -> int:
    with self._lock:
      if self._pid != os.getpid():  # Forked or unpickled: descriptors of another process are not ours.
        self._fds, self._pid = {}, os.getpid()
      fd = self._fds.get(shard)
      if fd is None:
        fd = self._fds[shard] = os.open(self._paths[shard], os.O_RDONLY)
      return fd

  def __getitem__(self, index: int) -> bytes | SkippedRecord:
    index = int(index)
    if not 0 <= index < len(self._entries):
      raise IndexError(f"record {index} out of range for {len(self._entries)} records")
    shard = int(self._shard_of[index])
    offset, length = (int(v) for v in self._entries[index])
    path = self._paths[shard]
    try:
      return tfrecord.read_record_at(self._fd(shard), path, offset, length)
    except tfrecord.CorruptRecordError as e:
      if not self._skip_corrupt:
        raise
      logging.warning("skipping corrupt record %d: %s", index, e)
      skipped = SkippedRecord(e.path, e.offset, e.reason)
      self.skipped.append(skipped)
      return skipped

  def __getstate__(self):
    state = self.__dict__.copy()
    state.update(_fds={}, _pid=None, _lock=None)
    return state

  def __setstate__(self, state):
    self.__dict__.update(state)
    self._lock = threading.Lock()

  def __del__(self):
    if getattr(self, "_pid", None) == os.getpid():
      for fd in self._fds.values():
        try:
          os.close(fd)
        except OSError:
          pass


def find_shards(shards_dir: str | os.PathLike, split: str) -> list[pathlib.Path]:
  """The shards of `split` in `shards_dir`, from its manifest.json when present, else `<split>-*.tfrecord` sorted."""
  shards_dir = pathlib.Path(shards_dir)
  if manifest_lib.exists(shards_dir):
    entries = manifest_lib.split_shards(manifest_lib.read(shards_dir), split, shards_dir)
    paths = [shards_dir / e["path"] for e in entries]
  else:
    paths = sorted(shards_dir.glob(f"{split}-*.tfrecord"))
  if not paths:
    raise FileNotFoundError(f"no {split!r} shards in {shards_dir}")
  missing = [str(p) for p in paths if not p.is_file()]
  if missing:
    raise FileNotFoundError(f"{shards_dir}: shards listed for {split!r} are missing: {missing[:5]}")
  return paths


def record_table(shards_dir: str | os.PathLike, split: str) -> dict[str, np.ndarray]:
  """Per-record subject and label of `split`, in record order: {"subject": int64 (N,), "label": int64 (N,)}.

  Read from manifest.json, whose shard entries list them (data_prep/convert.py writes them). Raises ValueError
  naming the manifest when it has none (a conversion made before they were recorded).
  """
  manifest = manifest_lib.path(shards_dir)  # named in the errors below
  entries = manifest_lib.split_shards(manifest_lib.read(shards_dir), split, shards_dir)
  columns = {"subject": [], "label": []}
  for entry in entries:
    if "subjects" not in entry or "labels" not in entry:
      raise ValueError(
          f"{manifest}: shard {entry.get('path')} lists no per-record subjects/labels (an older conversion). Run the "
          f"same data_prep/convert.py command again: finished shards are kept and only manifest.json is rewritten "
          f"(for a synthetic dataset made by the trainer, delete its shards folder instead).")
    if not len(entry["subjects"]) == len(entry["labels"]) == entry["num_records"]:
      raise ValueError(f"{manifest}: shard {entry['path']} has {entry['num_records']} records but "
                       f"{len(entry['subjects'])} subjects and {len(entry['labels'])} labels")
    columns["subject"].extend(entry["subjects"])
    columns["label"].extend(entry["labels"])
  return {k: np.asarray(v, np.int64) for k, v in columns.items()}

