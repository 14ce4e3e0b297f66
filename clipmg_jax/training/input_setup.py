"""The trainer's DataSource from `config.data`: the Grain pipeline over converted shards, and — for the synthetic
default — generating and converting the synthetic dataset first when it is not there yet.

config.data holds the pipeline's fields (clipmg_jax/data/pipeline.get_data_config) plus
  synthetic: ConfigDict or None. When set and config.data.shards_dir has no manifest.json yet:
    raw_dir (default <cache_dir>/raw) is generated with clipmg_jax.data.synthetic.generate(preset, seed, **size),
    then converted into shards_dir (default <cache_dir>/shards). cache_dir defaults to <workdir>/synthetic_data.
"""

import json
import logging
import pathlib
import time

import jax
import ml_collections
import numpy as np

from clipmg_jax.data import validation as validation_lib
from clipmg_jax.training.data_source import DataSource

_DONE = ".generated.json"  # written after a complete generation, so a killed one is redone, not trusted


class DataSetupError(ValueError):
  """The configured data cannot be used (missing or incomplete shards); the message names the path and the fix."""


def resolve_synthetic_paths(data_config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> None:
  """Fills data.shards_dir and data.synthetic.raw_dir from data.synthetic.cache_dir (default <workdir>/...).

  The synthetic dataset is only ever generated into <cache_dir>/shards: a shards_dir given explicitly must already
  hold converted shards (a mistyped path fails here instead of generating a new dataset there).
  """
  synth = data_config.get("synthetic")
  if not synth:
    return
  cache = pathlib.Path(synth.cache_dir or pathlib.Path(workdir) / "synthetic_data").absolute()
  if data_config.shards_dir and pathlib.Path(data_config.shards_dir).absolute() != cache / "shards":
    manifest = pathlib.Path(data_config.shards_dir) / "manifest.json"
    if not manifest.is_file():
      raise DataSetupError(
          f"config.data.shards_dir={data_config.shards_dir} holds no manifest.json. Point it at converted shards, "
          "or leave it empty to generate the synthetic dataset in <data.synthetic.cache_dir>/shards (default "
          "<workdir>/synthetic_data/shards).")
  if not synth.raw_dir:
    synth.raw_dir = str(cache / "raw")
  if not data_config.shards_dir:
    data_config.shards_dir = str(cache / "shards")


def prepare_synthetic(data_config: ml_collections.ConfigDict) -> None:
  """Generates and converts the synthetic dataset unless data.shards_dir already holds converted shards.

  Only process 0 writes; other processes wait for the manifest (shared file system assumed in multi-host runs).
  """
  from clipmg_jax.data import convert as convert_lib  # pylint: disable=import-outside-toplevel
  from clipmg_jax.data import pipeline  # pylint: disable=import-outside-toplevel
  from clipmg_jax.data import synthetic  # pylint: disable=import-outside-toplevel
  synth = data_config.synthetic
  shards = pathlib.Path(data_config.shards_dir)
  if pipeline.shards_dir_exists(data_config):
    return
  if jax.process_index() != 0:
    while not pipeline.shards_dir_exists(data_config):
      time.sleep(5)
    return
  raw = pathlib.Path(synth.raw_dir)
  if not (raw / _DONE).is_file():
    logging.info("generating the synthetic dataset (preset %r, seed %d) in %s", synth.preset, synth.seed, raw)
    start = time.time()
    summary = synthetic.generate(raw, preset=synth.preset, seed=synth.seed,
                                 **synthetic.size_overrides(synth.get("size")))
    (raw / _DONE).write_text(json.dumps(summary, indent=1))
    logging.info("generated %d clips in %d videos in %.0f s", summary["clips"], summary["videos"],
                 time.time() - start)
  logging.info("converting %s to shards in %s", raw, shards)
  start = time.time()
  options = convert_lib.ConvertOptions(**dict(synth.get("convert_options", {}) or {}))
  manifest = convert_lib.convert(raw, shards, options=options, num_workers=int(synth.get("convert_workers", 2)))
  logging.info("converted %s clips (%d skipped) in %.0f s",
               {s: v["num_clips"] for s, v in manifest["splits"].items()}, manifest["num_skipped"],
               time.time() - start)


def read_manifest(shards_dir: str | pathlib.Path) -> dict:
  path = pathlib.Path(shards_dir) / "manifest.json"
  if not path.is_file():
    raise FileNotFoundError(f"{path} not found: convert a dataset first (data_prep/convert.py) or point "
                            f"config.data.shards_dir at the folder holding manifest.json")
  return json.loads(path.read_text())


def check_splits(shards_dir: str | pathlib.Path, manifest: dict, splits) -> None:
  """Checks, before any training step, that every shard and offset index of `splits` is there and holds the
  number of records the manifest lists; DataSetupError naming the split and file otherwise."""
  from clipmg_jax.data import tfrecord  # pylint: disable=import-outside-toplevel
  shards_dir = pathlib.Path(shards_dir)
  for split in dict.fromkeys(splits):
    for entry in manifest["splits"][split].get("shards", []):
      path = shards_dir / entry["path"]
      index = tfrecord.index_path(path)
      problem = None
      if not path.is_file():
        problem = f"shard {path} is missing"
      elif not index.is_file():
        problem = f"offset index {index} is missing"
      else:
        try:
          count = len(tfrecord.read_index(index))
        except (OSError, ValueError) as e:
          problem = f"offset index {index} cannot be read: {e}"
        else:
          if "num_records" in entry and count != int(entry["num_records"]):
            problem = f"offset index {index} lists {count} records, the manifest {entry['num_records']}"
      if problem:
        raise DataSetupError(f"split {split!r} of {shards_dir}: {problem}. Re-run the conversion into this folder "
                             "(it redoes only what is missing) or restore the file.")


def split_validation(data_config: ml_collections.ConfigDict, manifest: dict
                     ) -> tuple[validation_lib.Validation, np.ndarray | None, np.ndarray | None, np.ndarray | None]:
  """(validation, train records, validation records, training class counts) of the train split.

  The records are indexes into the train split's records (None = all; validation None when there is no
  validation split); the class counts are over the records trained on (None when the manifest has none).
  """
  from clipmg_jax.data import shard_source  # pylint: disable=import-outside-toplevel
  counts = manifest["splits"][data_config.train_split].get("per_class")
  counts = None if counts is None else np.asarray(counts, np.int64)
  cfg = data_config.get("validation") or ml_collections.ConfigDict(dict(num_subjects=0))
  if not cfg.get("subjects") and not cfg.get("num_subjects") and not (manifest.get("split") or {}).get(
      "validation_subjects"):
    return validation_lib.Validation((), "none (config.data.validation.num_subjects=0)"), None, None, counts
  table = shard_source.record_table(data_config.shards_dir, data_config.train_split)
  val = validation_lib.resolve(cfg, manifest, np.unique(table["subject"]))
  held_out = np.isin(table["subject"], val.subjects)
  if counts is not None:
    counts = np.bincount(table["label"][~held_out], minlength=len(counts)).astype(np.int64)
  return val, np.flatnonzero(~held_out), np.flatnonzero(held_out), counts


def make_data_source(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> DataSource:
  """The DataSource for `config` (generating the synthetic dataset first if configured and absent).

  The train split's records are divided by subject into training and validation (split_validation); the chosen
  validation subjects are written back to config.data.validation.subjects, so that the run's config.json
  records them.
  """
  from clipmg_jax.data import pipeline  # pylint: disable=import-outside-toplevel
  data = config.data
  resolve_synthetic_paths(data, workdir)
  if data.get("synthetic"):
    prepare_synthetic(data)
  manifest = read_manifest(data.shards_dir)
  splits = manifest.get("splits", {})
  for split in (data.train_split, data.eval_split):
    if split not in splits:
      raise DataSetupError(f"{data.shards_dir}/manifest.json has no split {split!r} (has {sorted(splits)})")
  check_splits(data.shards_dir, manifest, (data.train_split, data.eval_split))
  num_classes = int(config.model.num_classes)
  class_names = list(manifest.get("classes") or [f"class_{i}" for i in range(num_classes)])
  val, train_records, val_records, counts = split_validation(data, manifest)
  if val.subjects and "validation" in data:
    data.validation.subjects = tuple(val.subjects)
  pc, pi = jax.process_count(), jax.process_index()
  eval_batch = int(data.eval_batch_size or data.batch_size)

  def train_iterator():
    return iter(pipeline.make_dataset(data, data.train_split, seed=config.seed, process_index=pi, process_count=pc,
                                      train=True, records=train_records))

  def eval_batches():
    return pipeline.make_dataset(data, data.eval_split, process_index=pi, process_count=pc, train=False)

  def validation_batches():
    # Validation subjects' records of the *train* split, read the evaluation way (centre crop, one pass).
    return pipeline.make_dataset(data, data.train_split, process_index=pi, process_count=pc, train=False,
                                 records=val_records)

  num_train = splits[data.train_split]["num_clips"] if train_records is None else len(train_records)
  info = {"shards_dir": str(data.shards_dir),
          "num_clips": {s: v["num_clips"] for s, v in splits.items()},
          "validation": {"subjects": list(val.subjects), "rule": val.rule,
                         "source_split": data.train_split, "num_clips": 0 if val_records is None else len(val_records),
                         "num_train_clips": num_train}}
  logging.info("validation: %d clips of subjects %s (%s); training on %d clips", info["validation"]["num_clips"],
               list(val.subjects), val.rule, num_train)
  return DataSource(train_iterator=train_iterator, eval_batches=eval_batches, class_names=class_names,
                    train_class_counts=counts, image_size=int(data.image_size), eval_batch_size=eval_batch // pc,
                    info=info, validation_batches=validation_batches if val_records is not None else None)
