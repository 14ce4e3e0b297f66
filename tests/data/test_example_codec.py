"""Clip records: round trip, and agreement with TFDS's own serializer and NumPy example parser."""

import numpy as np
import pytest
from tensorflow_datasets.core import example_parser
from tensorflow_datasets.core import example_serializer

from clipmg_jax.data.records import example_codec
from clipmg_jax.data.records import random_shards
from clipmg_jax.data.tfds_imigue import features as tfds_features


def _record(with_frames=True, seed=0):
  rng = np.random.default_rng(seed)
  return random_shards.random_record(rng, video_id=298, label_id=55, height=24, width=40, max_stored=5,
                                     num_frames=9, with_frames=with_frames)


@pytest.mark.parametrize("with_frames", [True, False])
def test_round_trip(with_frames):
  serialized = _record(with_frames)
  record = example_codec.decode(serialized)
  assert record.clip_id == 298 * 100000 + 55 and record.video_id == "298" and record.num_frames == 9
  assert record.keypoints.shape == (9, 18, 3) and record.keypoints.dtype == np.float32
  assert len(record.frames) == len(record.frame_indices) == (5 if with_frames else 0)
  assert example_codec.encode(record) == serialized


@pytest.mark.parametrize("with_frames", [True, False])
def test_tfds_numpy_parser_reads_our_records(with_frames):
  serialized = _record(with_frames)
  record = example_codec.decode(serialized)
  info = tfds_features.features().get_serialized_info()
  parsed = example_parser.ExampleParserNp(info).parse_example(serialized)
  assert parsed["video_id"] == b"298"
  for key in ("clip_id", "label_id", "label", "subject", "start_frame", "num_frames", "frame_height", "frame_width",
              "video_height", "video_width"):
    assert parsed[key] == getattr(record, key), key
  np.testing.assert_array_equal(parsed["keypoints"], record.keypoints)
  np.testing.assert_array_equal(parsed["frame_indices"], record.frame_indices)
  assert list(parsed["frames"]) == record.frames


@pytest.mark.parametrize("with_frames", [True, False])
def test_tfds_serializer_writes_the_same_example(with_frames):
  record = example_codec.decode(_record(with_frames))
  features = tfds_features.features()
  serializer = example_serializer.ExampleSerializer(features.get_serialized_info())
  theirs = serializer.serialize_example(features.encode_example(tfds_features.to_tfds_example(record)))
  assert example_codec.parse(theirs) == example_codec.parse(example_codec.encode(record))


def test_bad_records_are_reported():
  record = example_codec.decode(_record())
  bad = example_codec.decode(_record())
  bad.keypoints = bad.keypoints[:, :17]
  with pytest.raises(ValueError, match=r"keypoints must be \(T >= 1, 18, 3\)"):
    example_codec.encode(bad)
  bad = example_codec.decode(_record())
  bad.frame_indices = bad.frame_indices[::-1]
  with pytest.raises(ValueError, match="frame indices must increase"):
    example_codec.encode(bad)
  with pytest.raises(ValueError, match="not a serialized tf.train.Example"):
    example_codec.decode(b"\xff\xff\xff")
  example = example_codec.parse(example_codec.encode(record))
  del example.features.feature["subject"]
  with pytest.raises(KeyError, match="'subject'"):
    example_codec.decode(example.SerializeToString())
