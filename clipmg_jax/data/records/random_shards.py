"""Small random shards in the converted layout, for tests and benchmarks (no raw dataset needed).

Frames are smooth random images with mild noise (JPEG sizes and decode costs close to camera frames, unlike pure
noise), keypoints random inside the frame with some joints missing.
"""

import io
import os
import pathlib

import numpy as np
from PIL import Image

from clipmg_jax.data import keypoints as kp
from clipmg_jax.data import sampling
from clipmg_jax.data.raw import imigue
from clipmg_jax.data.records import example_codec
from clipmg_jax.data.records import manifest as manifest_lib
from clipmg_jax.data.records import shard_writer


def random_frame(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
  """uint8 (height, width, 3): a bilinearly upsampled 6 x 10 random colour grid plus noise of std 4."""
  coarse = Image.fromarray(rng.integers(0, 256, (6, 10, 3), dtype=np.uint8))
  smooth = np.asarray(coarse.resize((width, height), Image.BILINEAR), np.float32)
  return np.clip(smooth + rng.normal(0, 4, smooth.shape), 0, 255).astype(np.uint8)


def encode_jpeg(frame: np.ndarray, quality: int = 90) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(frame).save(buf, format="JPEG", quality=quality)
  return buf.getvalue()


def random_record(rng: np.random.Generator, *, video_id: int, label_id: int, num_classes: int = 32,
                  num_frames: int | None = None, max_stored: int = 16, height: int = 256, width: int = 456,
                  with_frames: bool = True) -> bytes:
  """One serialized random clip record (T frames of keypoints, min(T, max_stored) JPEG frames)."""
  t = int(num_frames if num_frames is not None else rng.integers(6, 120))
  keypoints = np.zeros((t, kp.NUM_JOINTS, 3), np.float32)
  keypoints[..., 0] = rng.uniform(0, width - 1, (t, kp.NUM_JOINTS))
  keypoints[..., 1] = rng.uniform(0, height - 1, (t, kp.NUM_JOINTS))
  keypoints[..., 2] = rng.uniform(0.05, 1.0, (t, kp.NUM_JOINTS)) * (rng.random((t, kp.NUM_JOINTS)) > 0.1)
  frames, indices = [], np.zeros((0,), np.int64)
  if with_frames:
    indices = sampling.presample_indices(t, max_stored)
    base = random_frame(rng, height, width)
    for _ in indices:
      frame = np.clip(base.astype(np.int16) + rng.integers(-3, 4, base.shape), 0, 255).astype(np.uint8)
      frames.append(encode_jpeg(frame))
  record = example_codec.ClipRecord(
      video_id=str(video_id), clip_id=imigue.clip_id(video_id, label_id), label_id=label_id,
      label=int(rng.integers(0, num_classes)), subject=int(video_id % 7), start_frame=int(rng.integers(0, 1000)),
      frame_height=height, frame_width=width, video_height=height, video_width=width, keypoints=keypoints,
      frames=frames, frame_indices=indices)
  return example_codec.encode(record)


def write_random_shards(out_dir: str | os.PathLike, *, splits: dict[str, int] | None = None, clips_per_shard: int = 16,
                        seed: int = 0, **record_kwargs) -> pathlib.Path:
  """Writes `<split>-*.tfrecord` (+ index) and a minimal manifest.json with `splits[split]` random clips each.

  Returns out_dir. record_kwargs go to random_record (num_frames, max_stored, height, width, with_frames, ...).
  """
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  splits = splits or {"train": 32, "test": 12}
  rng = np.random.default_rng(seed)
  manifest = {"version": 2, "splits": {}, "skipped": [], "random": True}
  video = 1
  for split, count in splits.items():
    num_shards = max(1, -(-count // clips_per_shard))
    shards = []
    for s in range(num_shards):
      n = min(clips_per_shard, count - s * clips_per_shard)
      records = [random_record(rng, video_id=video + i, label_id=i + 1, **record_kwargs) for i in range(n)]
      video += n
      name = shard_writer.shard_name(split, s, num_shards)
      shard_writer.write_shard(out_dir / name, records)
      metas = [example_codec.decode_metadata(example_codec.parse(r)) for r in records]
      shards.append({"path": name, "num_records": n, "subjects": [int(m["subject"]) for m in metas],
                     "labels": [int(m["label"]) for m in metas]})
    manifest["splits"][split] = {"num_clips": count, "shards": shards}
  manifest_lib.write(out_dir, manifest)
  return out_dir
