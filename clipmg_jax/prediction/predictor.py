"""A trained run ready to classify clips of one's own videos, prepared exactly as evaluation prepares its clips."""

import os
import pathlib
from typing import Iterable, Iterator

import ml_collections
import numpy as np

from clipmg_jax.data.loader import pipeline
from clipmg_jax.data.raw import imigue
from clipmg_jax.data.records import clip_record
from clipmg_jax.data.records import manifest as manifest_lib
from clipmg_jax.data.synthetic import prepare as synthetic_prepare
from clipmg_jax.models import variants
from clipmg_jax.training import evaluation
from clipmg_jax.training import runs


class Predictor:
  """A trained run (runs.load_run, reading no dataset: only the manifest of the checkpoint's dataset, where the
  shards are on this machine) with the evaluation step: examples of the batch layout -> logits."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: str | os.PathLike, which: str = "latest"):
    self.workdir = pathlib.Path(workdir).absolute()
    # The config with its data block resolved as training resolved it (where the shards are on this machine).
    self.config = config.copy_and_resolve_references()
    self.config.data = synthetic_prepare.resolve_paths(config.data, workdir)
    self.manifest = None
    if manifest_lib.exists(self.config.data.shards_dir):
      self.manifest = manifest_lib.read(self.config.data.shards_dir)
    num_classes = int(config.model.num_classes)
    names = list((self.manifest or {}).get("classes") or [c.name for c in imigue.CLASSES][:num_classes])
    self.run = runs.load_run(self.config, workdir, which, data=runs.without_data(self.config, names))
    self.setup, self.params, self.step = self.run.setup, self.run.params, self.run.step
    self.class_names = self.run.class_names
    self.batch_size = self.setup.data.eval_batch_size
    # A `+robust` model classifies a clip without a usable joint from vision alone; another one cannot.
    self.classifies_without_pose = variants.classifies_without_pose(self.config.model)
    self.reliability_floor = variants.reliability_floor(self.config.model)

  def convert_options(self) -> clip_record.ConvertOptions:
    """The conversion options the checkpoint's dataset was made with (its manifest), so that frames are stored at
    the same size and quality; without a manifest, the synthetic config's or the converter's defaults."""
    if self.manifest is not None:
      opts = dict(self.manifest["options"])
      opts["skeleton_frame_size"] = tuple(opts["skeleton_frame_size"])
      opts["skeleton_only"] = False
      return clip_record.ConvertOptions(**opts)
    synth = self.config.data.get("synthetic")
    return clip_record.ConvertOptions(**dict((synth or {}).get("convert_options", {}) or {}))

  def decoder(self) -> pipeline.ClipDecoder:
    """The evaluation pipeline's decoder: segment-centre sampling, centre crop."""
    return pipeline.ClipDecoder(self.config.data, None, train=False)

  def logits(self, examples: Iterable[dict], *, progress: bool = True) -> np.ndarray:
    """float32 (N, C) logits of examples (dicts of the batch layout), through evaluation.predict; (0, C) for none."""
    return self.outputs(examples, progress=progress)["logits"]

  def outputs(self, examples: Iterable[dict], *, progress: bool = True) -> dict[str, np.ndarray]:
    """"logits" float32 (N, C) of examples, and the per-window pose values (N, T) the model gives ("reliability",
    "gate", ...: pose_monitoring.per_window), through evaluation.predict; logits (0, C) for none."""
    out = evaluation.predict(self.params, self.setup.eval_step, batches(examples, self.batch_size),
                             self.setup.mesh, self.batch_size, progress=progress)
    return out if "logits" in out else {"logits": np.zeros((0, len(self.class_names)), np.float32)}


def batches(examples: Iterable[dict], size: int) -> Iterator[dict]:
  """Examples stacked into batches of `size` (the last one shorter)."""
  chunk = []
  for example in examples:
    chunk.append(example)
    if len(chunk) == size:
      yield {k: np.stack([e[k] for e in chunk]) for k in chunk[0]}
      chunk = []
  if chunk:
    yield {k: np.stack([e[k] for e in chunk]) for k in chunk[0]}
