"""TFDS builder for iMiGUE clips: the same records as data_prep/convert.py.

With TensorFlow installed:
  tfds build clipmg_jax/data/tfds_imigue --manual_dir=/path/to/imigue [--config=skeleton_only]
writes TFRecord shards (read them with `tfds.builder_from_directory(<data_dir>/tfds_imigue/<config>/1.0.0)`).

Without TensorFlow (this project's default environment) two parts of TFDS are unavailable: the `tfds` command
itself imports TensorFlow at start-up (its format-conversion module annotates with tf.train.Example at import
time), and TFDS writes TFRecord files only through tf.io.TFRecordWriter. The builder class still works from Python
with the ArrayRecord file format, which TFDS writes and reads without TensorFlow:

  from clipmg_jax.data.tfds_imigue import tfds_imigue_dataset_builder as imigue_tfds
  builder = imigue_tfds.Builder(config="rgb", data_dir="~/tensorflow_datasets")
  builder.download_and_prepare(file_format="array_record",
                               download_config=tfds.download.DownloadConfig(manual_dir="/path/to/imigue"))
  source = builder.as_data_source()["train"]   # random access, decoded with NumPy/PIL

Either way every record is the tf.train.Example that example_codec.encode writes for the same clip (the same
features, values and list types). The training pipeline reads the TFRecord shards of data_prep/convert.py.
"""

import dataclasses
import logging
import pathlib

from etils import epath
import tensorflow_datasets as tfds

from clipmg_jax.data.raw import imigue
from clipmg_jax.data.records import clip_record
from clipmg_jax.data.records import layouts
from clipmg_jax.data.tfds_imigue import features as features_lib

_DESCRIPTION = """
iMiGUE (identity-free micro-gesture understanding and emotion analysis, Liu et al., CVPR 2021): 18,498 clips of 32
classes (31 micro-gestures and illustrative body language) from 359 post-match press-conference videos of 72 tennis
players, split cross-subject (37 train / 35 test subjects). One example per clip: up to 16 uniformly pre-sampled RGB
frames as JPEG at short side 256, the OpenPose keypoints of every frame in COCO-18 order in pixels of those frames,
label, subject, clip and video ids.
"""

_CITATION = """
@inproceedings{liu2021imigue,
  title={iMiGUE: An Identity-free Video Dataset for Micro-Gesture Understanding and Emotion Analysis},
  author={Liu, Xin and Shi, Henglin and Chen, Haoyu and Yu, Zitong and Li, Xiaobai and Zhao, Guoying},
  booktitle={CVPR},
  year={2021}
}
"""


@dataclasses.dataclass
class ImigueConfig(tfds.core.BuilderConfig):
  skeleton_only: bool = False
  max_stored_frames: int = 16
  short_side: int = 256


class Builder(tfds.core.GeneratorBasedBuilder):
  """iMiGUE clips (RGB frames + OpenPose keypoints), official cross-subject split."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release: the record layout of clipmg_jax.data.records.example_codec."}
  BUILDER_CONFIGS = [
      ImigueConfig(name="rgb", description="JPEG frames and keypoints (needs videos/)."),
      ImigueConfig(name="skeleton_only", description="Keypoints only (no videos needed).", skeleton_only=True),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  iMiGUE's videos are distributed by its authors on request (https://github.com/linuxsino/iMiGUE). Place in
  `manual_dir` (default ~/tensorflow_datasets/downloads/manual/):
    labels.csv                       the annotation table (labels_20200831.csv of the release, renamed)
    skeleton/<video>/<video>_<frame:012d>_keypoints.json   OpenPose --write_json output of each video
    videos/<video>.mp4               the videos at 25 fps (not needed for the skeleton_only config)
    split.json (optional)            {"train_subjects": [...], "test_subjects": [...]}; default: the official split
  """

  # TFDS's own lookup of this file reaches for the `importlib_resources` backport, which TFDS only requires on
  # Python < 3.9; answering directly keeps the builder working without it.
  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    return epath.Path(__file__)

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        description=_DESCRIPTION, features=features_lib.features(), homepage="https://github.com/linuxsino/iMiGUE",
        citation=_CITATION)

  def _options(self) -> clip_record.ConvertOptions:
    return clip_record.ConvertOptions(max_stored_frames=self.builder_config.max_stored_frames,
                                      short_side=self.builder_config.short_side,
                                      skeleton_only=self.builder_config.skeleton_only)

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    root = pathlib.Path(dl_manager.manual_dir)
    labels = root / "labels.csv"
    if not labels.is_file():
      raise FileNotFoundError(f"{labels} not found. {self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
    train, test = imigue.load_split(root)
    tasks, skipped = layouts.plan_imigue(labels, root / "skeleton", root / "videos", {"train": train, "test": test},
                                         skeleton_only=self.builder_config.skeleton_only)
    if skipped:
      logging.warning("iMiGUE: %d clips skipped before conversion (e.g. %s)", len(skipped), skipped[0])
    # TFDS refuses empty splits (e.g. the test split of a partial skeleton release).
    return {split: self._generate_examples(clips) for split, clips in tasks.items() if clips}

  def _generate_examples(self, clips):
    options = self._options()
    for clip in clips:
      try:
        record, _ = clip_record.make_record(clip, options)
      except (layouts.SkipClip, OSError, ValueError, IndexError, KeyError) as e:
        logging.warning("iMiGUE: skipping clip %d: %s", clip.clip_id, e)
        continue
      yield clip.clip_id, features_lib.to_tfds_example(record)
