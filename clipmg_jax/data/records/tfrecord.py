"""TFRecord files without TensorFlow: framing, CRC checks, and an offset index for random access.

A TFRecord file is a concatenation of records, each framed as (all integers little-endian)

  uint64 length | uint32 masked_crc32c(length bytes) | data[length] | uint32 masked_crc32c(data)

with masked_crc = ((crc >> 15) | (crc << 17)) + 0xa282ead8 (mod 2**32) over the CRC-32C (Castagnoli) checksum.

The offset index (`<shard>.index`, written beside each shard) lets a random-access source read record i directly:
an 8-byte magic `CMGIDX1\\0`, a uint64 record count N, then N (uint64 offset, uint64 length) pairs, little-endian,
where offset is the byte position of the record's 12-byte header and length the size of its data.
"""

import dataclasses
import logging
import os
import pathlib
import struct
from typing import Callable, Iterator

import crc32c as _crc32c
import numpy as np

HEADER_BYTES = 12  # uint64 length + uint32 masked CRC of the length.
FOOTER_BYTES = 4  # uint32 masked CRC of the data.
_MASK_DELTA = 0xA282EAD8
_INDEX_MAGIC = b"CMGIDX1\0"
_INDEX_SUFFIX = ".index"


class CorruptRecordError(ValueError):
  """A record that cannot be read: truncated, or failing a CRC check. Names the file and byte offset.

  `framing_intact` is True when only the data is bad (its length was verified), so the next record can be found.
  """

  def __init__(self, path: str | os.PathLike, offset: int, reason: str, *, framing_intact: bool = False):
    self.path = str(path)
    self.offset = int(offset)
    self.reason = reason
    self.framing_intact = framing_intact
    super().__init__(f"{self.path}: corrupt TFRecord at byte offset {self.offset}: {reason}")


def crc32c(data: bytes) -> int:
  """CRC-32C (Castagnoli) of `data`, as an unsigned 32-bit int."""
  return _crc32c.crc32c(data)


def mask_crc(crc: int) -> int:
  """The TFRecord masking of a CRC (makes CRCs of data that embeds CRCs well-behaved)."""
  return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
  return mask_crc(crc32c(data))


def frame_record(data: bytes) -> bytes:
  """The bytes of one framed record holding `data`."""
  length = struct.pack("<Q", len(data))
  return b"".join((length, struct.pack("<I", masked_crc32c(length)), data, struct.pack("<I", masked_crc32c(data))))


def index_path(shard_path: str | os.PathLike) -> pathlib.Path:
  """Where the offset index of a shard lives: `<shard>.index`."""
  return pathlib.Path(str(shard_path) + _INDEX_SUFFIX)


class TFRecordWriter:
  """Appends framed records to a file and remembers (offset, length) of each for the offset index.

  Use as a context manager; `close()` flushes. `write(data)` returns the byte offset of the record's header.
  """

  def __init__(self, path: str | os.PathLike):
    self.path = pathlib.Path(path)
    self._file = open(self.path, "wb")
    self._offset = 0
    self.entries: list[tuple[int, int]] = []  # (offset, data length) per record.

  def write(self, data: bytes) -> int:
    framed = frame_record(data)
    self._file.write(framed)
    offset = self._offset
    self.entries.append((offset, len(data)))
    self._offset += len(framed)
    return offset

  def close(self):
    if not self._file.closed:
      self._file.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


def write_index(path: str | os.PathLike, entries) -> None:
  """Writes an offset index file. `entries`: sequence of (offset, length) pairs, or an int array (N, 2)."""
  arr = np.asarray(entries, dtype="<u8").reshape(-1, 2)
  with open(path, "wb") as f:
    f.write(_INDEX_MAGIC)
    f.write(struct.pack("<Q", len(arr)))
    f.write(arr.tobytes())


def read_index(path: str | os.PathLike) -> np.ndarray:
  """Reads an offset index: int64 array (N, 2) of (header offset, data length). ValueError names the file."""
  path = pathlib.Path(path)
  raw = path.read_bytes()
  if len(raw) < 16 or raw[:8] != _INDEX_MAGIC:
    raise ValueError(f"{path}: not an offset index (expected magic {_INDEX_MAGIC!r} and a record count)")
  (count,) = struct.unpack_from("<Q", raw, 8)
  if len(raw) != 16 + 16 * count:
    raise ValueError(f"{path}: offset index says {count} records but holds {(len(raw) - 16) / 16:g} entries")
  return np.frombuffer(raw, dtype="<u8", offset=16).reshape(count, 2).astype(np.int64)


def _check_header(path, offset: int, header: bytes) -> int:
  """Length of the record whose 12-byte header is `header`; CorruptRecordError on truncation or a bad CRC."""
  if len(header) < HEADER_BYTES:
    raise CorruptRecordError(path, offset, f"truncated header ({len(header)} of {HEADER_BYTES} bytes)")
  length_bytes = header[:8]
  (want,) = struct.unpack("<I", header[8:12])
  got = masked_crc32c(length_bytes)
  if got != want:
    raise CorruptRecordError(path, offset, f"length CRC mismatch (stored 0x{want:08x}, computed 0x{got:08x})")
  return struct.unpack("<Q", length_bytes)[0]


def _check_payload(path, offset: int, length: int, payload: bytes) -> bytes:
  """The data of a record given its `payload` = data + footer; CorruptRecordError on truncation or a bad CRC."""
  if len(payload) < length + FOOTER_BYTES:
    raise CorruptRecordError(path, offset, f"truncated record (data length {length}, "
                                           f"only {max(len(payload) - FOOTER_BYTES, 0)} data bytes present)")
  data = payload[:length]
  (want,) = struct.unpack("<I", payload[length:length + FOOTER_BYTES])
  got = masked_crc32c(data)
  if got != want:
    raise CorruptRecordError(path, offset, f"data CRC mismatch (stored 0x{want:08x}, computed 0x{got:08x})",
                             framing_intact=True)
  return data


def read_record_at(fd: int, path: str | os.PathLike, offset: int, length: int | None = None) -> bytes:
  """Reads and CRC-checks the record whose header starts at byte `offset` of the open file descriptor `fd` (of the
  file `path`, named in errors).

  With `length` (from the offset index) header and payload are read in one pread; the header must agree with it.
  Thread-safe (os.pread). Raises CorruptRecordError naming `path` and `offset`.
  """
  if length is None:
    length = _check_header(path, offset, os.pread(fd, HEADER_BYTES, offset))
    payload = os.pread(fd, length + FOOTER_BYTES, offset + HEADER_BYTES)
  else:
    buf = os.pread(fd, HEADER_BYTES + length + FOOTER_BYTES, offset)
    stored = _check_header(path, offset, buf[:HEADER_BYTES])
    if stored != length:
      raise CorruptRecordError(path, offset, f"header says {stored} data bytes, the offset index says {length}")
    payload = buf[HEADER_BYTES:]
  return _check_payload(path, offset, length, payload)


@dataclasses.dataclass
class SkipCounter:
  """Counts records skipped as corrupt, keeping (path, offset, reason) of each."""
  skipped: list[tuple[str, int, str]] = dataclasses.field(default_factory=list)

  def __call__(self, error: CorruptRecordError):
    self.skipped.append((error.path, error.offset, error.reason))

  @property
  def count(self) -> int:
    return len(self.skipped)


def iter_records(path: str | os.PathLike, *, skip_corrupt: bool = False,
                 on_skip: Callable[[CorruptRecordError], None] | None = None) -> Iterator[tuple[int, bytes]]:
  """Yields (header offset, data) of every record of a TFRecord file, in order, checking both CRCs.

  A corrupt record raises CorruptRecordError naming the file and its byte offset. With skip_corrupt=True the
  record is reported to `on_skip` (and logged) instead: after a bad data CRC reading continues with the next record
  (the length was trustworthy); after a bad length CRC or a truncation nothing after it can be located, so the rest
  of the file is skipped as one entry.
  """
  path = pathlib.Path(path)
  size = path.stat().st_size
  fd = os.open(path, os.O_RDONLY)
  try:
    offset = 0
    while offset < size:
      header = os.pread(fd, HEADER_BYTES, offset)
      try:
        length = _check_header(path, offset, header)
        payload = os.pread(fd, length + FOOTER_BYTES, offset + HEADER_BYTES)
        data = _check_payload(path, offset, length, payload)
      except CorruptRecordError as e:
        if not skip_corrupt:
          raise
        logging.warning("skipping %s", e)
        if on_skip is not None:
          on_skip(e)
        if not e.framing_intact:
          return  # The framing is lost: no later record can be found reliably.
        offset += HEADER_BYTES + length + FOOTER_BYTES
        continue
      yield offset, data
      offset += HEADER_BYTES + length + FOOTER_BYTES
  finally:
    os.close(fd)


def build_index(path: str | os.PathLike) -> np.ndarray:
  """Scans a TFRecord file (checking CRCs) and returns its offset index, int64 (N, 2) of (offset, length)."""
  entries = [(offset, len(data)) for offset, data in iter_records(path)]
  return np.asarray(entries, dtype=np.int64).reshape(-1, 2)
