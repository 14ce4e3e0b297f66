"""TFRecord framing, CRC checks, offset index, and the random-access shard source."""

import pickle
import struct

import grain
import numpy as np
import pytest

from clipmg_jax.data.loader import shard_source
from clipmg_jax.data.records import shard_writer
from clipmg_jax.data.records import tfrecord

# Two records of a real TensorFlow event file (TFRecord framing) as dumped with xxd in TensorBoard's Rust data
# server tests (tensorboard/data/server/tf_record.rs): a file_version event and a scalar summary.
_EVENT_1 = b"\x09\x00\x00\x80\x38\x99\xd6\xd7\x41\x1a\x0dbrain.Event:2"
_EVENT_2 = (b"\x09\xc4\x05\xb7\x3d\x99\xd6\xd7\x41\x10\x4d\x2a\x25\x0a\x23\x0a\x08accuracy"
            b"\x42\x0a\x08\x01\x12\x00\x22\x04\xa4\x70\x7d\x3f\x4a\x0b\x0a\x09\x0a\x07scalars")
_EVENT_FILE = (b"\x18\x00\x00\x00\x00\x00\x00\x00" b"\xa3\x7f\x4b\x22" + _EVENT_1 + b"\x12\x4b\x36\xab"
               b"\x32\x00\x00\x00\x00\x00\x00\x00" b"\x24\x19\x56\xec" + _EVENT_2 + b"\xa5\x5b\x64\x33")


def test_crc32c_check_value():
  # The CRC-32C check value (RFC 3720, iSCSI) and 32 zero bytes (RFC 3720 B.4).
  assert tfrecord.crc32c(b"123456789") == 0xE3069283
  assert tfrecord.crc32c(bytes(32)) == 0x8A9136AA


def test_framing_matches_a_real_tensorflow_file():
  assert tfrecord.frame_record(_EVENT_1) + tfrecord.frame_record(_EVENT_2) == _EVENT_FILE


def test_reader_parses_the_real_file(tmp_path):
  path = tmp_path / "events.tfrecord"
  path.write_bytes(_EVENT_FILE)
  assert list(tfrecord.iter_records(path)) == [(0, _EVENT_1), (12 + len(_EVENT_1) + 4, _EVENT_2)]
  np.testing.assert_array_equal(tfrecord.build_index(path), [[0, len(_EVENT_1)], [40, len(_EVENT_2)]])


def _write(tmp_path, records, name="data.tfrecord"):
  path = tmp_path / name
  shard_writer.write_shard(path, records)
  return path


_RECORDS = [b"", b"a", b"hello world" * 50, bytes(range(256)) * 3]


def test_round_trip_and_index(tmp_path):
  path = _write(tmp_path, _RECORDS)
  assert [d for _, d in tfrecord.iter_records(path)] == _RECORDS
  index = tfrecord.read_index(tfrecord.index_path(path))
  np.testing.assert_array_equal(index, tfrecord.build_index(path))
  source = shard_source.ShardSource([path])
  assert len(source) == len(_RECORDS)
  assert [source[i] for i in (3, 0, 2, 1)] == [_RECORDS[i] for i in (3, 0, 2, 1)]


def test_grain_reads_our_shards(tmp_path):
  path = _write(tmp_path, _RECORDS)
  assert list(grain.experimental.TFRecordIterDataset(str(path))) == _RECORDS


def test_source_spans_shards_in_order(tmp_path):
  a = _write(tmp_path, [b"a0", b"a1"], "a.tfrecord")
  b = _write(tmp_path, [b"b0"], "b.tfrecord")
  c = _write(tmp_path, [b"c0", b"c1", b"c2"], "c.tfrecord")
  source = shard_source.ShardSource([a, b, c])
  assert [source[i] for i in range(len(source))] == [b"a0", b"a1", b"b0", b"c0", b"c1", b"c2"]
  assert source.location(2) == f"{b} at byte offset 0"
  with pytest.raises(IndexError):
    source[6]


def _flip_byte(path, position):
  data = bytearray(path.read_bytes())
  data[position] ^= 0x40
  path.write_bytes(bytes(data))


def test_flipped_data_byte_names_file_and_offset(tmp_path):
  path = _write(tmp_path, _RECORDS)
  offset = int(tfrecord.read_index(tfrecord.index_path(path))[2, 0])
  _flip_byte(path, offset + tfrecord.HEADER_BYTES + 7)
  with pytest.raises(tfrecord.CorruptRecordError, match=rf"{path}.*byte offset {offset}: data CRC"):
    list(tfrecord.iter_records(path))
  source = shard_source.ShardSource([path])
  assert source[1] == _RECORDS[1] and source[3] == _RECORDS[3]
  with pytest.raises(tfrecord.CorruptRecordError) as info:
    source[2]
  assert (info.value.path, info.value.offset) == (str(path), offset)


def test_flipped_length_byte_and_truncation(tmp_path):
  path = _write(tmp_path, _RECORDS)
  offset = int(tfrecord.read_index(tfrecord.index_path(path))[3, 0])
  _flip_byte(path, offset + 1)
  with pytest.raises(tfrecord.CorruptRecordError, match=f"byte offset {offset}: length CRC"):
    list(tfrecord.iter_records(path))
  with pytest.raises(tfrecord.CorruptRecordError, match=f"byte offset {offset}"):
    shard_source.ShardSource([path])[3]

  truncated = _write(tmp_path, _RECORDS, "short.tfrecord")
  size = truncated.stat().st_size
  truncated.write_bytes(truncated.read_bytes()[:size - 10])
  last = int(tfrecord.read_index(tfrecord.index_path(truncated))[3, 0])
  with pytest.raises(tfrecord.CorruptRecordError, match=f"byte offset {last}: truncated"):
    list(tfrecord.iter_records(truncated))
  with pytest.raises(tfrecord.CorruptRecordError, match=f"byte offset {last}: truncated"):
    shard_source.ShardSource([truncated])[3]


def test_skip_corrupt_counts(tmp_path):
  path = _write(tmp_path, _RECORDS)
  index = tfrecord.read_index(tfrecord.index_path(path))
  _flip_byte(path, int(index[1, 0]) + tfrecord.HEADER_BYTES)  # The data of record 1.
  counter = tfrecord.SkipCounter()
  got = [d for _, d in tfrecord.iter_records(path, skip_corrupt=True, on_skip=counter)]
  assert got == [_RECORDS[0], _RECORDS[2], _RECORDS[3]]
  assert counter.count == 1 and counter.skipped[0][:2] == (str(path), int(index[1, 0]))

  source = shard_source.ShardSource([path], skip_corrupt=True)
  assert [source[i] for i in (0, 2, 3)] == [_RECORDS[0], _RECORDS[2], _RECORDS[3]]
  skipped = source[1]
  assert isinstance(skipped, shard_source.SkippedRecord) and skipped.offset == int(index[1, 0])
  assert len(source.skipped) == 1


def test_bad_index_is_reported(tmp_path):
  path = _write(tmp_path, _RECORDS)
  index_file = tfrecord.index_path(path)
  index_file.write_bytes(index_file.read_bytes()[:-8])
  with pytest.raises(ValueError, match=f"{index_file}: offset index says 4 records"):
    shard_source.ShardSource([path])
  index_file.write_bytes(b"nonsense" + struct.pack("<Q", 0))
  with pytest.raises(ValueError, match="not an offset index"):
    shard_source.ShardSource([path])
  index_file.unlink()
  with pytest.raises(FileNotFoundError, match="no offset index"):
    shard_source.ShardSource([path])


def test_index_disagreeing_with_header(tmp_path):
  path = _write(tmp_path, _RECORDS)
  index = tfrecord.read_index(tfrecord.index_path(path))
  index[2, 1] += 1
  tfrecord.write_index(tfrecord.index_path(path), index)
  with pytest.raises(tfrecord.CorruptRecordError, match="offset index says"):
    shard_source.ShardSource([path])[2]


def test_source_pickles_and_reopens(tmp_path):
  path = _write(tmp_path, _RECORDS)
  source = shard_source.ShardSource([path])
  assert source[2] == _RECORDS[2]  # Opens a descriptor.
  clone = pickle.loads(pickle.dumps(source))
  assert clone[3] == _RECORDS[3]
