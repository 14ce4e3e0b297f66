"""Evaluation over a finite split: logits for every example, then metrics and eval.json (the command hands in what draws
its plots)."""

import json
import logging
import pathlib
import tempfile
from typing import Any, Callable, Iterable

import jax
import numpy as np
import tqdm

from clipmg_jax.data.loader import batch as batch_lib
from clipmg_jax.run.folder import RunFolder
from clipmg_jax.training import metrics as metrics_lib
from clipmg_jax.training import pose_monitoring
from clipmg_jax.training import sharding as sharding_lib

def predict(params: Any, eval_step: Callable, batches: Iterable[dict[str, np.ndarray]], mesh: jax.sharding.Mesh,
            batch_size: int, *, progress: bool = True) -> dict[str, np.ndarray]:
  """Runs `eval_step` over all `batches` (this process's share, each at most `batch_size` rows).

  `eval_step` returns logits (B, C), or a dict holding "logits" and per-example arrays (B, ...) such as the pose
  monitoring of pose_monitoring.per_window.
  Returns numpy logits (N, C), label (N,), subject (N,), clip_id (N,) and each further array of the step, for the
  real (unpadded) examples of all processes, in batch order, and "skipped_records" (a 0-d count): the records of
  the split left out as unreadable (data.skip_corrupt=True), which the figures do not include.
  """
  outputs = {"logits": [], "label": [], "subject": [], "clip_id": []}
  skipped = 0
  for batch in tqdm.tqdm(batches, desc="eval", unit="batch", disable=not progress, leave=False):
    padded = batch_lib.pad_batch(batch, batch_size)
    placed = sharding_lib.place_batch(padded, mesh)
    out = eval_step(params, placed)  # replicated: the global batch, on every host
    out = out if isinstance(out, dict) else {"logits": out}
    gathered = {k: _allgather(placed[k]) for k in ("label", "subject", "clip_id", "mask") if k in placed}
    keep = gathered["mask"] > 0
    skipped += int(np.sum(~keep & (gathered["clip_id"] == batch_lib.SKIPPED_CLIP_ID)))
    for key, value in out.items():
      outputs.setdefault(key, []).append(np.asarray(value)[keep])
    for key in ("label", "subject", "clip_id"):
      if key in gathered:
        outputs[key].append(gathered[key][keep])
  return dict({k: np.concatenate(v) for k, v in outputs.items() if v}, skipped_records=np.asarray(skipped))


def _allgather(x: jax.Array) -> np.ndarray:
  if jax.process_count() == 1:
    return np.asarray(x)
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
  return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def compute_metrics(predictions: dict[str, np.ndarray], class_names: list[str]) -> dict:
  """classification_metrics over the output of `predict`, plus "pose_monitoring" (pose_monitoring.summarize)
  when the model sowed its pose values."""
  result = metrics_lib.classification_metrics(predictions["logits"], predictions["label"],
                                              predictions.get("subject"), class_names)
  if "skipped_records" in predictions:  # said next to num_examples: the figures leave these records out
    result["skipped_records"] = int(predictions["skipped_records"])
  monitoring = pose_monitoring.summarize(predictions, result["class_names"])
  if monitoring is not None:
    result["pose_monitoring"] = monitoring
  return result


SCALAR_KEYS = ("top1", "top5", "mean_class_accuracy", "macro_f1")


def scalars(result: dict) -> dict[str, float]:
  """The numbers of an evaluation that go to metrics.jsonl and rank checkpoints: SCALAR_KEYS plus the pose
  monitoring's gate_mean, patch_entropy and no_valid_joint_fraction where present."""
  return {**{k: result[k] for k in SCALAR_KEYS}, **pose_monitoring.scalars(result.get("pose_monitoring"))}


class ResultsNotWrittenError(OSError):
  """The workdir did not take an evaluation's results; the message names the temporary file that holds them."""


# Draws an evaluation's figures beside its JSON: (result, run folder, file-name suffix) -> the files written. The
# commands pass figures.results.write_evaluation_plots; training itself never draws.
Plots = Callable[[dict, RunFolder, str], Any]


def write_results(result: dict, workdir: str | pathlib.Path | RunFolder, *, suffix: str = "",
                  extra: dict | None = None, plots: Plots | None = None) -> pathlib.Path:
  """Writes <workdir>/eval<suffix>.json (the result + `extra`, such as the step, split, checkpoint rule and
  validation subjects) and, with `plots`, its figures (confusion<suffix>.png, per_class_accuracy<suffix>.png and,
  with pose monitoring, gate_histogram<suffix>.png); returns the JSON's path. Called by process 0 only.

  When the JSON cannot be written, the full results go to a temporary file first and ResultsNotWrittenError (an
  OSError) names it."""
  folder = RunFolder.of(workdir)
  path = folder.results_file(suffix)
  payload = json.dumps(dict(result, **(extra or {})), indent=1)
  try:
    folder.path.mkdir(parents=True, exist_ok=True)
    path.write_text(payload)
  except OSError as e:
    fallback = pathlib.Path(tempfile.mkdtemp(prefix="clipmg_eval_")) / path.name
    fallback.write_text(payload)
    print(f"could not write {path}; the full results were written to {fallback}", flush=True)
    raise ResultsNotWrittenError(f"could not write {path} ({e}); the full results are in {fallback}") from e
  if plots is not None:
    try:
      plots(result, folder, suffix)
    except Exception as e:  # pylint: disable=broad-except
      # A plotting failure (e.g. a broken matplotlib backend) must not lose the numbers, which are already written.
      logging.warning("could not write the evaluation plots: %s", e)
  return path


def summary_line(result: dict) -> str:
  line = (f"top1 {result['top1']:.4f}  top5 {result['top5']:.4f}  mean-class-acc "
          f"{result['mean_class_accuracy']:.4f}  macro-F1 {result['macro_f1']:.4f}  "
          f"(majority-class rate {result['majority_rate']:.4f}, {result['num_examples']} examples)")
  if result.get("skipped_records"):
    line += f"  [{result['skipped_records']} unreadable records left out]"
  gate = (result.get("pose_monitoring") or {}).get("gate")
  return line + (f"  gate mean {gate['mean']:.3f}" if gate and gate["mean"] is not None else "")
