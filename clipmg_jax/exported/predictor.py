"""An export folder in a prediction.Predictor's place, for `python -m clipmg_jax.predict --exported`: clips are
prepared by the converter and the evaluation decoder with the settings its export.json records, and classified by
its program (artifact.ExportedModel). No checkpoint, config or dataset is read."""

import os
import pathlib
from typing import Iterable

import ml_collections
import numpy as np
import tqdm

from clipmg_jax.data.loader import pipeline
from clipmg_jax.data.records import clip_record
from clipmg_jax.exported import artifact
from clipmg_jax.prediction import predictor as predictor_lib


class ExportedPredictor:
  """What prediction/recognize.py and online_split.py use of a Predictor, from an export folder."""

  manifest = None  # an export carries no dataset manifest: online_split has no validation subjects for it
  config = None

  def __init__(self, folder: str | os.PathLike):
    self.workdir = pathlib.Path(folder).absolute()  # what window caches are keyed by
    self.model = artifact.ExportedModel(folder)
    preparation = self.model.info["preparation"]
    self.step, self.class_names = self.model.step, self.model.class_names
    self.batch_size = int(preparation["batch_size"])
    self._options = dict(preparation["convert_options"])
    self._data = ml_collections.ConfigDict(preparation["data"])
    robust = self.model.info["model"]
    self.classifies_without_pose = bool(robust.get("classifies_without_pose", False))
    self.reliability_floor = float(robust.get("reliability_floor", 0.0))

  def convert_options(self) -> clip_record.ConvertOptions:
    """The conversion options the checkpoint's dataset was made with (recorded at export)."""
    return clip_record.ConvertOptions(**dict(self._options,
                                             skeleton_frame_size=tuple(self._options["skeleton_frame_size"])))

  def decoder(self) -> pipeline.ClipDecoder:
    """The evaluation pipeline's decoder with the run's data settings: segment-centre sampling, centre crop."""
    return pipeline.ClipDecoder(self._data, None, train=False)

  def logits(self, examples: Iterable[dict], *, progress: bool = True) -> np.ndarray:
    """float32 (N, C) logits of examples (dicts of the batch layout), in batches of the run's evaluation batch size
    (a short last batch is padded, so the program compiles for one size); (0, C) for none."""
    return self.outputs(examples, progress=progress)["logits"]

  def outputs(self, examples: Iterable[dict], *, progress: bool = True) -> dict[str, np.ndarray]:
    """The program's outputs for the examples: "logits" (N, C) and the per-window pose values (N, T) it gives."""
    out = []
    for batch in tqdm.tqdm(predictor_lib.batches(examples, self.batch_size), desc="predict", unit="batch",
                           disable=not progress, leave=False):
      n = len(batch["frames"])
      frames, keypoints = (np.concatenate([batch[k], np.zeros((self.batch_size - n, *batch[k].shape[1:]),
                                                              batch[k].dtype)]) for k in ("frames", "keypoints"))
      out.append({k: np.asarray(v)[:n] for k, v in self.model(frames, keypoints).items()})
    if not out:
      return {"logits": np.zeros((0, len(self.class_names)), np.float32)}
    return {k: np.concatenate([o[k] for o in out]) for k in out[0]}
