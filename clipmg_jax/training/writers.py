"""Metric writers: JSON lines (always) and TensorBoard event files (when tensorboardX is installed)."""

import json
import logging
import pathlib
from typing import Mapping

import numpy as np


class MetricWriter:
  """Appends {"step": s, "split": ..., **scalars} lines to <workdir>/metrics.jsonl and mirrors scalars to
  TensorBoard under <workdir>/tensorboard/ when a writer library is importable. Only process 0 writes."""

  def __init__(self, workdir: str | pathlib.Path, *, enabled: bool = True, tensorboard: bool = True):
    self.enabled = enabled
    self._file = None
    self._tb = None
    if not enabled:
      return
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    self.path = workdir / "metrics.jsonl"
    self._file = open(self.path, "a", encoding="utf-8")  # append: a resumed run continues the same file
    if tensorboard:
      try:
        from tensorboardX import SummaryWriter  # pylint: disable=import-outside-toplevel
        self._tb = SummaryWriter(str(workdir / "tensorboard"))
      except ImportError:
        logging.info("tensorboardX is not installed: no TensorBoard event files (metrics.jsonl is written)")

  def write(self, step: int, scalars: Mapping[str, float], split: str = "train") -> None:
    if not self.enabled:
      return
    clean = {k: float(np.asarray(v)) for k, v in scalars.items()}
    self._file.write(json.dumps({"step": int(step), "split": split, **clean}) + "\n")
    self._file.flush()
    if self._tb is not None:
      for k, v in clean.items():
        self._tb.add_scalar(f"{split}/{k}", v, int(step))

  def close(self) -> None:
    if self._file is not None:
      self._file.close()
      self._file = None
    if self._tb is not None:
      self._tb.close()
      self._tb = None
