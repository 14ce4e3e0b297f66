"""The TFDS FeaturesDict whose serialization is the clip record of example_codec (same keys, list types, values)."""

from typing import Sequence

import numpy as np
import tensorflow_datasets as tfds

from clipmg_jax.data import keypoints as kp
from clipmg_jax.data.raw import imigue
from clipmg_jax.data.records import example_codec

_INT_FEATURES = ("clip_id", "label_id", "subject", "start_frame", "num_frames", "frame_height", "frame_width",
                 "video_height", "video_width")


def features(class_names: Sequence[str] = imigue.CLASS_NAMES) -> tfds.features.FeaturesDict:
  """FeaturesDict of one clip record; `label` is a ClassLabel over `class_names` (stored as int64)."""
  spec = {
      "video_id": tfds.features.Text(),
      "label": tfds.features.ClassLabel(names=list(class_names)),
      "frames": tfds.features.Sequence(tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg")),
      "frame_indices": tfds.features.Sequence(np.int64),
      "keypoints": tfds.features.Tensor(shape=(None, kp.NUM_JOINTS, 3), dtype=np.float32),
  }
  spec.update({key: np.int64 for key in _INT_FEATURES})
  return tfds.features.FeaturesDict(spec)


def to_tfds_example(record: example_codec.ClipRecord) -> dict:
  """A ClipRecord as the nested dict `features().encode_example` takes (JPEG frames pass through as bytes)."""
  out = {key: getattr(record, key) for key in _INT_FEATURES}
  out.update(video_id=record.video_id, label=record.label, frames=list(record.frames),
             frame_indices=np.asarray(record.frame_indices, np.int64),
             keypoints=np.asarray(record.keypoints, np.float32))
  return out
