"""The trainer's DataSource from `config.data`: the Grain pipeline over converted shards, their training subjects
divided into training and validation.

config.data holds the pipeline's fields (clipmg_jax/data/loader/pipeline.get_data_config) plus, for the synthetic default,
`synthetic`: its shards are made on first use by clipmg_jax/data/synthetic/prepare.py.
"""

import logging
import pathlib

import jax
import ml_collections
import numpy as np

from clipmg_jax.data import frame_size
from clipmg_jax.data.data_source import DataSource
from clipmg_jax.data.loader import pipeline
from clipmg_jax.data.loader import shard_source
from clipmg_jax.data.loader import token_cache
from clipmg_jax.data.loader import token_pipeline
from clipmg_jax.data.loader import validation as validation_lib
from clipmg_jax.data.records import manifest as manifest_lib
from clipmg_jax.data.synthetic import prepare as synthetic_prepare
from clipmg_jax.models import variants
from clipmg_jax.run.folder import RunFolder


def split_validation(data_config: ml_collections.ConfigDict, manifest: dict
                     ) -> tuple[validation_lib.Validation, np.ndarray | None, np.ndarray | None, np.ndarray | None]:
  """(validation, train records, validation records, training class counts) of the train split.

  The records are indexes into the train split's records (None = all; validation None when there is no
  validation split); the class counts are over the records trained on (None when the manifest has none).
  """
  counts = manifest["splits"][data_config.train_split].get("per_class")
  counts = None if counts is None else np.asarray(counts, np.int64)
  cfg = data_config.get("validation") or ml_collections.ConfigDict(dict(num_subjects=0))
  if not cfg.get("subjects") and not cfg.get("num_subjects") and not (manifest.get("split") or {}).get(
      "validation_subjects"):
    return validation_lib.Validation((), "none (config.data.validation.num_subjects=0)"), None, None, counts
  table = shard_source.record_table(data_config.shards_dir, data_config.train_split)
  try:
    val = validation_lib.resolve(cfg, manifest, np.unique(table["subject"]))
  except ValueError as e:  # its message names the field and the subjects there are: one line, no traceback
    raise manifest_lib.DataSetupError(f"{e} ({data_config.shards_dir})") from None
  held_out = np.isin(table["subject"], val.subjects)
  if counts is not None:
    counts = np.bincount(table["label"][~held_out], minlength=len(counts)).astype(np.int64)
  return val, np.flatnonzero(~held_out), np.flatnonzero(held_out), counts


def make_data_source(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> DataSource:
  """The DataSource for `config` (generating the synthetic dataset first if configured and absent).

  The train split's records are divided by subject into training and validation (split_validation). `config` is
  not written to: the resolved data block (the synthetic dataset's paths, the chosen validation subjects) is the
  DataSource's data_config, which run_config puts into the run's config.json.
  """
  data = synthetic_prepare.make_shards(config.data, workdir)
  manifest = manifest_lib.read(data.shards_dir)
  manifest_lib.check_splits(data.shards_dir, manifest, (data.train_split, data.eval_split))
  stored = frame_size.check(data, manifest)
  splits = manifest["splits"]
  num_classes = int(config.model.num_classes)
  class_names = list(manifest.get("classes") or [f"class_{i}" for i in range(num_classes)])
  val, train_records, val_records, counts = split_validation(data, manifest)
  data = data.copy_and_resolve_references()  # the run's resolved data block (config.json); config is not written to
  with data.unlocked():
    data.dataset_digest = token_pipeline.source_digest(manifest)  # what check_same_dataset compares on resume
  if val.subjects and "validation" in data:
    data.validation.subjects = tuple(val.subjects)
  pc, pi = jax.process_count(), jax.process_index()
  eval_batch = int(data.eval_batch_size or data.batch_size)
  # With a prefix cache the same clips, in the same order, come as tokens (its tower is checked against the
  # parameters once they exist: token_cache.check_tower).
  reader = pipeline
  if data.get("prefix_cache"):
    token_cache.check_run(config, data, manifest)
    reader = token_pipeline

  def train_iterator():
    return iter(reader.make_dataset(data, data.train_split, seed=config.seed, process_index=pi, process_count=pc,
                                      train=True, records=train_records))

  def eval_batches():
    return reader.make_dataset(data, data.eval_split, process_index=pi, process_count=pc, train=False)

  def validation_batches():
    # Validation subjects' records of the *train* split, read the evaluation way (centre crop, one pass).
    return reader.make_dataset(data, data.train_split, process_index=pi, process_count=pc, train=False,
                                 records=val_records)

  num_train = splits[data.train_split]["num_clips"] if train_records is None else len(train_records)
  info = {"shards_dir": str(data.shards_dir), "stored_frame_size": stored,
          **({"prefix_cache": str(data.prefix_cache)} if data.get("prefix_cache") else {}),
          "num_clips": {s: v["num_clips"] for s, v in splits.items()},
          "validation": {"subjects": list(val.subjects), "rule": val.rule,
                         "source_split": data.train_split, "num_clips": 0 if val_records is None else len(val_records),
                         "num_train_clips": num_train}}
  logging.info("validation: %d clips of subjects %s (%s); training on %d clips", info["validation"]["num_clips"],
               list(val.subjects), val.rule, num_train)
  return DataSource(train_iterator=train_iterator, eval_batches=eval_batches, class_names=class_names,
                    train_class_counts=counts, image_size=int(data.image_size), eval_batch_size=eval_batch // pc,
                    info=info, validation_batches=validation_batches if val_records is not None else None,
                    data_config=data)


def check_same_dataset(config: ml_collections.ConfigDict, data: DataSource, folder: RunFolder, doing: str) -> None:
  """DataSetupError when the run in `folder` was trained on another dataset than `data` (their digests of the
  shards' records differ, token_pipeline.source_digest), unless config.new_dataset asks for it: resuming would
  apply one dataset's input position to another and mix their metrics; an evaluation would replace the run's
  figures with another dataset's. Runs that recorded no digest are not checked."""
  saved = (folder.read_config() or {}).get("data") or {}
  before, now = saved.get("dataset_digest"), (data.data_config or {}).get("dataset_digest")
  if not before or not now or before == now or config.get("new_dataset", False):
    return
  raise manifest_lib.DataSetupError(
      f"{folder} was trained on the dataset in {saved.get('shards_dir')} (records digest {before[:12]}); this "
      f"{doing} would read {data.info.get('shards_dir')} (digest {now[:12]}), another dataset. Point "
      "--config.data.shards_dir back at the run's, use another --workdir, or pass --config.new_dataset=True to use "
      "this one on purpose" + (" (the trained state is kept, the input position starts afresh)." if doing == "resume"
                               else "."))


def run_config(config: ml_collections.ConfigDict, data: DataSource) -> ml_collections.ConfigDict:
  """`config` as the run used it: a copy whose data block is the data source's resolved one (when it has one)."""
  if data.data_config is None:
    return config
  resolved = config.copy_and_resolve_references()
  resolved.data = data.data_config
  return resolved


def run_description(config: ml_collections.ConfigDict, data: DataSource) -> dict:
  """What an eval.json records of the run beside its numbers: the crop size, the model variant (`<variant>[+extras]`)
  and the shards' stored frame size."""
  return {"image_size": int(data.image_size), "variant": variants.name(config.get("model")),
          "stored_frame_size": data.info.get("stored_frame_size")}
