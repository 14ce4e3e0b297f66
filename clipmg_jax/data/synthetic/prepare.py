"""Shards of the synthetic dataset for a data config, made on first use: generate (writer.py), then convert
(convert.py) into the folder the pipeline reads.

config.data.synthetic (configs/synthetic.py) holds:
  preset, seed, size (plan.SizeConfig overrides): what generate() makes;
  cache_dir: where; "" = <workdir>/synthetic_data. The raw dataset goes to <cache_dir>/raw (raw_dir overrides it),
    the shards to <cache_dir>/shards, the resolved data config's shards_dir (resolve_paths);
  convert_options, convert_workers: the conversion's ConvertOptions and worker count.
"""

import json
import logging
import pathlib
import time

import jax
import ml_collections

from clipmg_jax.data.records import clip_record
from clipmg_jax.data.records import convert as convert_lib
from clipmg_jax.data.records import manifest as manifest_lib
from clipmg_jax.data.synthetic import plan
from clipmg_jax.data.synthetic import writer
from clipmg_jax.run.folder import RunFolder

_DONE = ".generated.json"  # written after a complete generation, so a killed one is redone, not trusted


def make_shards(data_config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> ml_collections.ConfigDict:
  """When data_config.synthetic is set: the data config with its paths filled (resolve_paths), after generating and
  converting the dataset unless its shards exist (ensure_shards). Otherwise `data_config` itself. The config given
  is never written to."""
  if not data_config.get("synthetic"):
    return data_config
  resolved = resolve_paths(data_config, workdir)
  ensure_shards(resolved)
  return resolved


def resolve_paths(data_config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> ml_collections.ConfigDict:
  """A copy of the data config with data.shards_dir and data.synthetic.raw_dir filled from data.synthetic.cache_dir
  (default <workdir>/...); `data_config` itself when it is not synthetic.

  The synthetic dataset is only ever generated into <cache_dir>/shards: a shards_dir given explicitly must already
  hold converted shards (a mistyped path fails here instead of generating a new dataset there).
  """
  synth = data_config.get("synthetic")
  if not synth:
    return data_config
  cache = pathlib.Path(synth.cache_dir or RunFolder.of(workdir).synthetic_data_dir).absolute()
  if data_config.shards_dir and pathlib.Path(data_config.shards_dir).absolute() != cache / "shards":
    if not manifest_lib.exists(data_config.shards_dir):
      raise manifest_lib.DataSetupError(
          f"config.data.shards_dir={data_config.shards_dir} holds no {manifest_lib.FILENAME}. Point it at converted "
          "shards, or leave it empty to generate the synthetic dataset in <data.synthetic.cache_dir>/shards "
          "(default <workdir>/synthetic_data/shards).")
  resolved = data_config.copy_and_resolve_references()
  if not resolved.synthetic.raw_dir:
    resolved.synthetic.raw_dir = str(cache / "raw")
  if not resolved.shards_dir:
    resolved.shards_dir = str(cache / "shards")
  return resolved


def ensure_shards(data_config: ml_collections.ConfigDict) -> None:
  """Generates and converts the synthetic dataset unless data.shards_dir already holds converted shards.

  Only process 0 writes; other processes wait for the manifest (shared file system assumed in multi-host runs).
  """
  synth = data_config.synthetic
  shards = pathlib.Path(data_config.shards_dir)
  if manifest_lib.exists(shards):
    return
  if jax.process_index() != 0:
    while not manifest_lib.exists(shards):
      time.sleep(5)
    return
  raw = pathlib.Path(synth.raw_dir)
  if not (raw / _DONE).is_file():
    logging.info("generating the synthetic dataset (preset %r, seed %d) in %s", synth.preset, synth.seed, raw)
    start = time.time()
    summary = writer.generate(raw, preset=synth.preset, seed=synth.seed, **plan.size_overrides(synth.get("size")))
    (raw / _DONE).write_text(json.dumps(summary, indent=1))
    logging.info("generated %d clips in %d videos in %.0f s", summary["clips"], summary["videos"],
                 time.time() - start)
  logging.info("converting %s to shards in %s", raw, shards)
  start = time.time()
  options = clip_record.ConvertOptions(**dict(synth.get("convert_options", {}) or {}))
  manifest = convert_lib.convert(raw, shards, options=options, num_workers=int(synth.get("convert_workers", 2)))
  logging.info("converted %s clips (%d skipped) in %.0f s",
               {s: v["num_clips"] for s, v in manifest["splits"].items()}, manifest["num_skipped"],
               time.time() - start)
