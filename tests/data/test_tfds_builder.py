"""The TFDS builder builds without TensorFlow (ArrayRecord) and its records equal the converter's."""

import glob
import shutil

from array_record.python import array_record_module
import numpy as np
import pytest
import tensorflow_datasets as tfds

from clipmg_jax.data import synthetic
from clipmg_jax.data.records import clip_record
from clipmg_jax.data.records import convert
from clipmg_jax.data.records import example_codec
from clipmg_jax.data.records import manifest as manifest_lib
from clipmg_jax.data.records import tfrecord
from clipmg_jax.data.tfds_imigue import tfds_imigue_dataset_builder


def _build(manual_dir, data_dir, config):
  builder = tfds_imigue_dataset_builder.Builder(config=config, data_dir=str(data_dir))
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)),
                               file_format="array_record")
  return builder


def _raw_records(data_dir, config, split):
  """Serialized examples of a built split, read with ArrayRecord directly (no TFDS decoding)."""
  out = []
  for path in sorted(glob.glob(f"{data_dir}/tfds_imigue/{config}/1.0.0/tfds_imigue-{split}.array_record-*")):
    reader = array_record_module.ArrayRecordReader(path)
    out += reader.read(list(range(reader.num_records())))
  return out


def _converted(out_dir, split):
  manifest = manifest_lib.read(out_dir)
  return {example_codec.decode(d).clip_id: d for shard in manifest["splits"][split]["shards"]
          for _, d in tfrecord.iter_records(out_dir / shard["path"])}


def _assert_same_records(built, converted):
  assert len(built) == len(converted) > 0
  for raw in built:
    ours = converted[example_codec.decode(raw).clip_id]
    assert example_codec.parse(raw) == example_codec.parse(ours)


def test_skeleton_only_from_the_real_sample(imigue_shared, tmp_path):
  manual = tmp_path / "manual"
  manual.mkdir()
  shutil.copy(imigue_shared / "labels_20200831.csv", manual / "labels.csv")
  (manual / "skeleton").symlink_to(imigue_shared / "skeleton_sample")
  builder = _build(manual, tmp_path / "tfds", "skeleton_only")
  assert builder.info.splits["train"].num_examples == 3 and "test" not in builder.info.splits
  convert.convert(manual, tmp_path / "shards", options=clip_record.ConvertOptions(skeleton_only=True), progress=False)
  _assert_same_records(_raw_records(tmp_path / "tfds", "skeleton_only", "train"), _converted(tmp_path / "shards",
                                                                                              "train"))
  example = builder.as_data_source()["train"][0]  # TFDS's own NumPy decoding.
  assert example["keypoints"].shape == (example["num_frames"], 18, 3) and len(example["frames"]) == 0


@pytest.mark.slow
def test_rgb_from_the_synthetic_dataset(tmp_path):
  root = tmp_path / "raw"
  synthetic.generate(root, preset="tiny", seed=1, workers=1, progress=False)
  builder = _build(root, tmp_path / "tfds", "rgb")
  convert.convert(root, tmp_path / "shards", progress=False)
  for split in ("train", "test"):
    _assert_same_records(_raw_records(tmp_path / "tfds", "rgb", split), _converted(tmp_path / "shards", split))
  example = builder.as_data_source()["test"][0]
  frames = np.stack(example["frames"])
  assert frames.dtype == np.uint8 and frames.shape[1:] == (example["frame_height"], example["frame_width"], 3)
