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

from clipmg_jax.training.data_source import DataSource

_DONE = ".generated.json"  # written after a complete generation, so a killed one is redone, not trusted


def resolve_synthetic_paths(data_config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> None:
  """Fills data.shards_dir and data.synthetic.raw_dir from data.synthetic.cache_dir (default <workdir>/...)."""
  synth = data_config.get("synthetic")
  if not synth:
    return
  cache = pathlib.Path(synth.cache_dir or pathlib.Path(workdir) / "synthetic_data").absolute()
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
    summary = synthetic.generate(raw, preset=synth.preset, seed=synth.seed, **dict(synth.get("size", {}) or {}))
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


def make_data_source(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> DataSource:
  """The DataSource for `config` (generating the synthetic dataset first if configured and absent)."""
  from clipmg_jax.data import pipeline  # pylint: disable=import-outside-toplevel
  data = config.data
  resolve_synthetic_paths(data, workdir)
  if data.get("synthetic"):
    prepare_synthetic(data)
  manifest = read_manifest(data.shards_dir)
  splits = manifest.get("splits", {})
  for split in (data.train_split, data.eval_split):
    if split not in splits:
      raise ValueError(f"{data.shards_dir}/manifest.json has no split {split!r} (has {sorted(splits)})")
  num_classes = int(config.model.num_classes)
  class_names = list(manifest.get("classes") or [f"class_{i}" for i in range(num_classes)])
  counts = splits[data.train_split].get("per_class")
  counts = None if counts is None else np.asarray(counts, np.int64)
  pc, pi = jax.process_count(), jax.process_index()
  eval_batch = int(data.eval_batch_size or data.batch_size)

  def train_iterator():
    return iter(pipeline.make_dataset(data, data.train_split, seed=config.seed, process_index=pi, process_count=pc,
                                      train=True))

  def eval_batches():
    return pipeline.make_dataset(data, data.eval_split, process_index=pi, process_count=pc, train=False)

  info = {"shards_dir": str(data.shards_dir),
          "num_clips": {s: v["num_clips"] for s, v in splits.items()}}
  return DataSource(train_iterator=train_iterator, eval_batches=eval_batches, class_names=class_names,
                    train_class_counts=counts, image_size=int(data.image_size), eval_batch_size=eval_batch // pc,
                    info=info)
