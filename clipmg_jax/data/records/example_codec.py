"""One clip <-> one serialized `tf.train.Example`, without TensorFlow (TFDS ships the Example proto).

Record schema (feature key: Example list type, content). The layout is exactly what TFDS serializes for the
FeaturesDict in `clipmg_jax.data.tfds_imigue.features()`, so TFDS's NumPy example parser reads these records.

  video_id       bytes   video id (utf-8 text, e.g. "298")
  clip_id        int64   video_id * 100000 + label_id
  label_id       int64   clip number within its video (labels.csv `label_id`)
  label          int64   0-based class index
  subject        int64   subject id
  start_frame    int64   first frame of the clip in its video (0-based)
  num_frames     int64   T = end_frame - start_frame + 1
  frame_height   int64   height of the stored frames, pixels (short side 256 by default)
  frame_width    int64   width of the stored frames, pixels
  video_height   int64   height of the source video, pixels (keypoints were scaled by frame_height / video_height)
  video_width    int64   width of the source video, pixels
  frames         bytes[K]  K <= max stored frames JPEG images (RGB, frame_height x frame_width); K = 0 when the
                           dataset has no video (skeleton-only records)
  frame_indices  int64[K]  clip frame (0..T-1) each stored JPEG was taken from, increasing
  keypoints      float[T*18*3]  (T, 18, 3) COCO-18 (x, y, confidence) of every clip frame, x and y in pixels of the
                           stored frames (pixel centres at integer coordinates); confidence 0 = missing

For skeleton-only records frame_height/frame_width are those the frames would have had, so keypoints are in the
same units either way.
"""

import dataclasses

import numpy as np
from tensorflow_datasets.proto import tf_example_pb2

from clipmg_jax.data import keypoints as kp

_INT_KEYS = ("clip_id", "label_id", "label", "subject", "start_frame", "num_frames", "frame_height", "frame_width",
             "video_height", "video_width")


@dataclasses.dataclass
class ClipRecord:
  """The content of one record; see the module docstring for units."""
  video_id: str
  clip_id: int
  label_id: int
  label: int
  subject: int
  start_frame: int
  frame_height: int
  frame_width: int
  video_height: int
  video_width: int
  keypoints: np.ndarray  # float32 (T, 18, 3)
  frames: list[bytes] = dataclasses.field(default_factory=list)  # K JPEG images
  frame_indices: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0,), np.int64))  # (K,)

  @property
  def num_frames(self) -> int:
    return int(self.keypoints.shape[0])


def encode(record: ClipRecord) -> bytes:
  """Serializes a ClipRecord to tf.train.Example bytes. Raises ValueError for inconsistent shapes."""
  keypoints = np.asarray(record.keypoints, np.float32)
  if keypoints.ndim != 3 or keypoints.shape[1:] != (kp.NUM_JOINTS, 3) or keypoints.shape[0] < 1:
    raise ValueError(f"clip {record.clip_id}: keypoints must be (T >= 1, {kp.NUM_JOINTS}, 3), got {keypoints.shape}")
  indices = np.asarray(record.frame_indices, np.int64).reshape(-1)
  if len(indices) != len(record.frames):
    raise ValueError(f"clip {record.clip_id}: {len(record.frames)} frames but {len(indices)} frame indices")
  if len(indices) and (indices.min() < 0 or indices.max() >= len(keypoints) or np.any(np.diff(indices) <= 0)):
    raise ValueError(f"clip {record.clip_id}: frame indices must increase within 0..{len(keypoints) - 1}, "
                     f"got {indices.tolist()}")
  example = tf_example_pb2.Example()
  feature = example.features.feature
  feature["video_id"].bytes_list.value.append(str(record.video_id).encode("utf-8"))
  values = dataclasses.asdict(record) | {"num_frames": record.num_frames}
  for key in _INT_KEYS:
    feature[key].int64_list.value.append(int(values[key]))
  feature["frames"].bytes_list.value.extend(record.frames)
  feature["frame_indices"].int64_list.value.extend(indices.tolist())
  feature["keypoints"].float_list.value.extend(keypoints.reshape(-1).tolist())
  # Deterministic: map entries sorted by key, so a record's bytes do not depend on the writing process.
  return example.SerializeToString(deterministic=True)


def parse(serialized: bytes) -> tf_example_pb2.Example:
  """Parses Example bytes; ValueError if they are not an Example."""
  try:
    return tf_example_pb2.Example.FromString(serialized)
  except Exception as e:  # protobuf raises DecodeError, a subclass of Exception.
    raise ValueError(f"record is not a serialized tf.train.Example ({e})") from None


def _get(feature, key: str, kind: str):
  if key not in feature:
    raise KeyError(f"record lacks feature {key!r}")
  return getattr(feature[key], kind).value


def decode_metadata(example: tf_example_pb2.Example) -> dict:
  """The scalar fields of a parsed Example: {video_id: str, clip_id, label_id, ...: int}."""
  feature = example.features.feature
  out = {"video_id": _get(feature, "video_id", "bytes_list")[0].decode("utf-8")}
  for key in _INT_KEYS:
    values = _get(feature, key, "int64_list")
    if len(values) != 1:
      raise ValueError(f"feature {key!r}: expected one int64, got {len(values)}")
    out[key] = int(values[0])
  return out


def decode_keypoints(example: tf_example_pb2.Example, num_frames: int) -> np.ndarray:
  """float32 (T, 18, 3) keypoints of a parsed Example."""
  flat = np.asarray(_get(example.features.feature, "keypoints", "float_list"), np.float32)
  if flat.size != num_frames * kp.NUM_JOINTS * 3:
    raise ValueError(f"feature 'keypoints': expected {num_frames} x {kp.NUM_JOINTS} x 3 floats, got {flat.size}")
  return flat.reshape(num_frames, kp.NUM_JOINTS, 3)


def decode(serialized: bytes) -> ClipRecord:
  """tf.train.Example bytes -> ClipRecord (frames stay JPEG bytes). Errors name the missing/malformed key."""
  example = parse(serialized)
  meta = decode_metadata(example)
  feature = example.features.feature
  frames = list(_get(feature, "frames", "bytes_list"))
  indices = np.asarray(_get(feature, "frame_indices", "int64_list"), np.int64)
  if len(frames) != len(indices):
    raise ValueError(f"clip {meta['clip_id']}: {len(frames)} frames but {len(indices)} frame indices")
  return ClipRecord(
      video_id=meta["video_id"], clip_id=meta["clip_id"], label_id=meta["label_id"], label=meta["label"],
      subject=meta["subject"], start_frame=meta["start_frame"], frame_height=meta["frame_height"],
      frame_width=meta["frame_width"], video_height=meta["video_height"], video_width=meta["video_width"],
      keypoints=decode_keypoints(example, meta["num_frames"]), frames=frames, frame_indices=indices)
