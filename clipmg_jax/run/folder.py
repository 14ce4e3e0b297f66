"""A run's folder (--workdir): the one place that names its files, and the readers of what a run wrote.

  <workdir>/config.json        the config the run trained with (validation subjects chosen included)
  <workdir>/metrics.jsonl      one JSON line per logged step and per evaluation, with its split
  <workdir>/eval.json          the final evaluation (test split, final state); a stand-alone evaluation writes
                               eval<suffix>.json beside it (eval_latest_250.json), never over it
  <workdir>/<figure><suffix>.png  confusion, per_class_accuracy, gate_histogram: the plots of an evaluation
  <workdir>/checkpoints/       Orbax checkpoints (train state + input position), one folder per step
  <workdir>/tensorboard/       TensorBoard event files (when tensorboardX is installed)
  <workdir>/train.lock         who holds the folder (run/lock.py): one writing run at a time
  <workdir>/synthetic_data/    the synthetic configs' dataset, made on first use
  <workdir>/corpus.npz, hf_vision/  contrastive pretraining: its corpus and the exported tower

Nothing here opens a checkpoint or takes the lock: a RunFolder only names and reads.
"""

import dataclasses
import json
import os
import pathlib
from typing import Any, Iterator


def _file(name: str, what: str) -> property:
  """A RunFolder property: <path>/<name>."""
  return property(lambda self: self.path / name, doc=f"<workdir>/{name}: {what}")


@dataclasses.dataclass(frozen=True)
class RunFolder:
  """A run's folder; `RunFolder(path)` accepts a str or a path (and a RunFolder, unchanged, through `of`)."""
  path: pathlib.Path

  def __post_init__(self):
    object.__setattr__(self, "path", pathlib.Path(self.path))

  @classmethod
  def of(cls, where: "str | os.PathLike | RunFolder") -> "RunFolder":
    return where if isinstance(where, RunFolder) else cls(pathlib.Path(where))

  def __str__(self) -> str:
    return str(self.path)

  def __fspath__(self) -> str:
    return str(self.path)

  # --- the files
  config_file = _file("config.json", "the config the run trained with")
  metrics_file = _file("metrics.jsonl", "one JSON line per logged step and per evaluation")
  checkpoints_dir = _file("checkpoints", "Orbax checkpoints, one folder per step")
  tensorboard_dir = _file("tensorboard", "TensorBoard event files")
  lock_file = _file("train.lock", "who holds the folder (run/workdir_lock.py)")
  synthetic_data_dir = _file("synthetic_data", "the synthetic configs' dataset")
  corpus_file = _file("corpus.npz", "contrastive pretraining's rendered corpus")
  export_dir = _file("hf_vision", "contrastive pretraining's exported tower")

  def results_file(self, suffix: str = "") -> pathlib.Path:
    """eval<suffix>.json: the final evaluation (suffix "") or a stand-alone one (suffix "_latest_250")."""
    return self.path / f"eval{suffix}.json"

  def figure_file(self, name: str, suffix: str = "") -> pathlib.Path:
    """<name><suffix>.png, name one of FIGURES."""
    if name not in FIGURES:
      raise ValueError(f"unknown run figure {name!r}; expected one of {FIGURES}")
    return self.path / f"{name}{suffix}.png"

  # --- reading what a run wrote
  def read_config(self) -> dict | None:
    """config.json as a dict; None when the run has not written it yet."""
    return _read_json(self.config_file)

  def read_results(self, suffix: str = "") -> dict | None:
    """eval<suffix>.json as a dict; None when absent."""
    return _read_json(self.results_file(suffix))

  def read_metrics(self, split: str | None = None) -> list[dict]:
    """metrics.jsonl's lines (only those of `split`, e.g. "train" or "validation", when given); [] when absent."""
    return [line for line in _jsonl(self.metrics_file) if split is None or line.get("split") == split]

  def checkpoint_steps(self) -> list[int]:
    """The checkpoint steps kept in checkpoints/ ([] when there is none), without opening a checkpoint manager."""
    folder = self.checkpoints_dir
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.is_dir() else []

  def finished(self, steps: int) -> dict | None:
    """eval.json when the run trained to `steps` (a finished run of a sweep), else None."""
    result = self.read_results()
    return result if result is not None and result.get("step") == steps else None


FIGURES = ("confusion", "per_class_accuracy", "gate_histogram")


def _read_json(path: pathlib.Path) -> Any:
  if not path.is_file():
    return None
  try:
    return json.loads(path.read_text())
  except json.JSONDecodeError as e:
    raise ValueError(f"{path} is not valid JSON ({e}): the run wrote it partly, or it was edited") from e


def _jsonl(path: pathlib.Path) -> Iterator[dict]:
  if not path.is_file():
    return
  with path.open() as f:
    for number, line in enumerate(f, 1):
      if line.strip():
        try:
          yield json.loads(line)
        except json.JSONDecodeError as e:
          raise ValueError(f"{path} line {number} is not valid JSON ({e})") from e
