"""Fuzzing the raw-data and shard readers: random or mutated bytes give the reader's own error (ValueError naming
the file; for TFRecord framing, CorruptRecordError with the byte offset), never another exception."""

import json
import pathlib
import tempfile

from hypothesis import HealthCheck, given, settings, strategies as st
import pytest

from clipmg_jax.data.raw import imigue
from clipmg_jax.data.raw import miga
from clipmg_jax.data.raw import openpose
from clipmg_jax.data.records import tfrecord

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

OPENPOSE = json.dumps({"version": 1.3, "people": [{"pose_keypoints_2d": [float(i % 7) for i in range(75)]}]})
LABELS = "video_id,label_id,start_frame,end_frame,class,subject_id\n298,1,0,10,3,22\n298,2,11,20,5,22\n"
MIGA_LABELS = "1,0,10\n2,11,20\n"
MIGA_SKELETON = "\n".join(",".join([str(f)] + ["1.5"] * 105) for f in range(3)) + "\n"


def _mutations(valid: str | bytes):
  """The valid file with a random slice replaced by random bytes, or cut short, or random bytes alone."""
  data = valid.encode() if isinstance(valid, str) else valid
  mutated = st.tuples(st.integers(0, len(data)), st.integers(0, 12), st.binary(max_size=12)).map(
      lambda t: data[:t[0]] + t[2] + data[t[0] + t[1]:])
  return st.one_of(mutated, st.integers(0, len(data)).map(lambda n: data[:n]), st.binary(max_size=200))


def _expect_named_error(read, data: bytes, name: str, error=ValueError):
  with tempfile.TemporaryDirectory() as tmp:
    path = pathlib.Path(tmp) / name
    path.write_bytes(data)
    try:
      read(path)
    except error as e:
      assert str(path) in str(e), f"{type(e).__name__} does not name the file: {e}"
    # Anything else propagates and fails the test.


@FUZZ
@given(_mutations(OPENPOSE))
def test_openpose_frame(data):
  _expect_named_error(openpose.read_openpose_frame, data, "298_000000000001_keypoints.json")


@FUZZ
@given(_mutations(LABELS))
def test_labels_csv(data):
  _expect_named_error(imigue.read_labels, data, "labels.csv")


@FUZZ
@given(_mutations(MIGA_LABELS))
def test_miga_labels_csv(data):
  _expect_named_error(miga.read_miga_labels, data, "1_label.csv")


@FUZZ
@given(_mutations(MIGA_SKELETON))
def test_miga_skeleton_csv(data):
  _expect_named_error(miga.read_miga_skeleton, data, "1_light_hand.csv")


def _tfrecord_bytes() -> bytes:
  with tempfile.TemporaryDirectory() as tmp:
    path = pathlib.Path(tmp) / "x.tfrecord"
    with tfrecord.TFRecordWriter(path) as writer:
      for i in range(3):
        writer.write(bytes(range(i * 10, i * 10 + 20)))
    return path.read_bytes()


@FUZZ
@given(_mutations(_tfrecord_bytes()))
def test_tfrecord_framing(data):
  _expect_named_error(lambda p: list(tfrecord.iter_records(p)), data, "x.tfrecord", tfrecord.CorruptRecordError)


@FUZZ
@given(st.one_of(st.binary(max_size=80), st.tuples(st.integers(0, 5), st.binary(max_size=64)).map(
    lambda t: b"CMGIDX1\0" + t[0].to_bytes(8, "little") + t[1])))
def test_offset_index(data):
  _expect_named_error(tfrecord.read_index, data, "x.tfrecord.index")


def test_fuzz_harness_reports_a_foreign_exception():
  def reader(path):
    raise KeyError("not the reader's own error")
  with pytest.raises(KeyError):
    _expect_named_error(reader, b"", "f")
  with pytest.raises(AssertionError, match="does not name the file"):
    _expect_named_error(lambda p: int("x"), b"", "f")
