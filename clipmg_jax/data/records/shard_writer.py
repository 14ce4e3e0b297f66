"""Writing shards atomically: `<name>.tfrecord` + `<name>.tfrecord.index`, and small JSON files.

A shard is written under a temporary name and renamed only when complete, index first, so a killed writer leaves
either a complete shard with its index or nothing under the final names (resumable conversion relies on this).
"""

import json
import os
import pathlib
from typing import Iterable

from clipmg_jax.data.records import tfrecord

def shard_name(split: str, index: int, count: int) -> str:
  """`<split>-<index:05d>-of-<count:05d>.tfrecord`."""
  return f"{split}-{index:05d}-of-{count:05d}.tfrecord"


def write_shard(path: str | os.PathLike, records: Iterable[bytes]) -> int:
  """Writes serialized records to the TFRecord `path` and its offset index; returns the number of records."""
  path = pathlib.Path(path)
  tmp = path.with_name(path.name + f".tmp{os.getpid()}")
  index_final = tfrecord.index_path(path)
  index_tmp = index_final.with_name(index_final.name + f".tmp{os.getpid()}")
  try:
    with tfrecord.TFRecordWriter(tmp) as writer:
      for record in records:
        writer.write(record)
    tfrecord.write_index(index_tmp, writer.entries)
    os.replace(index_tmp, index_final)
    os.replace(tmp, path)
  finally:
    for leftover in (tmp, index_tmp):
      if leftover.exists():
        leftover.unlink()
  return len(writer.entries)


def write_json_atomic(path: str | os.PathLike, data) -> None:
  """Writes `data` as JSON under a temporary name, then renames it: a reader sees the old file or the new one."""
  path = pathlib.Path(path)
  tmp = path.with_name(path.name + f".tmp{os.getpid()}")
  with open(tmp, "w") as f:
    json.dump(data, f, indent=1)
  os.replace(tmp, path)
