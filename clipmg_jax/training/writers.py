"""Metric writers: JSON lines (always) and TensorBoard event files (when tensorboardX is installed)."""

import json
import logging
import pathlib
from typing import Mapping

import numpy as np

from clipmg_jax.run.folder import RunFolder


class MetricWriter:
  """Appends {"step": s, "split": ..., **scalars} lines to <workdir>/metrics.jsonl and mirrors scalars to
  TensorBoard under <workdir>/tensorboard/ when a writer library is importable. Only process 0 writes.

  One line per (step, split), whatever was redone: a line for a (step, split) the file already holds replaces it
  (deduplicated on write, so every reader of the file sees it clean; rewriting the file happens only after a
  resume, when an evaluation stopped part-way is run again)."""

  def __init__(self, workdir: "str | pathlib.Path | RunFolder", *, enabled: bool = True, tensorboard: bool = True):
    self.enabled = enabled
    self._file = None
    self._tb = None
    if not enabled:
      return
    folder = RunFolder.of(workdir)
    folder.path.mkdir(parents=True, exist_ok=True)
    self.path = folder.metrics_file
    self._written = {_key(line) for line in _lines(self.path)}
    self._file = open(self.path, "a", encoding="utf-8")  # append: a resumed run continues the same file
    if tensorboard:
      try:
        from tensorboardX import SummaryWriter  # pylint: disable=import-outside-toplevel
        self._tb = SummaryWriter(str(folder.tensorboard_dir))
      except ImportError:
        logging.info("tensorboardX is not installed: no TensorBoard event files (metrics.jsonl is written)")

  def write(self, step: int, scalars: Mapping[str, float], split: str = "train") -> None:
    if not self.enabled:
      return
    clean = {k: float(np.asarray(v)) for k, v in scalars.items()}
    line = json.dumps({"step": int(step), "split": split, **clean}) + "\n"
    if (int(step), split) in self._written:
      self._replace(line)
    else:
      self._file.write(line)
      self._file.flush()
      self._written.add((int(step), split))
    if self._tb is not None:
      for k, v in clean.items():
        self._tb.add_scalar(f"{split}/{k}", v, int(step))

  def _replace(self, line: str) -> None:
    """Rewrites the file with `line` in place of the one of its (step, split), atomically."""
    self._file.close()
    key = _key(line)
    _rewrite(self.path, [line if _key(old) == key else old for old in _lines(self.path)])
    logging.info("metrics.jsonl: replaced the line of step %d (%s), evaluated again", key[0], key[1])
    self._file = open(self.path, "a", encoding="utf-8")

  def close(self) -> None:
    if self._file is not None:
      self._file.close()
      self._file = None
    if self._tb is not None:
      self._tb.close()
      self._tb = None


def drop_lines_after(workdir: "str | pathlib.Path | RunFolder", step: int) -> None:
  """Removes the <workdir>/metrics.jsonl lines of steps after `step` (and lines torn by a killed run): a resumed run
  redoes those steps and logs them again."""
  path = RunFolder.of(workdir).metrics_file
  lines = _lines(path)
  kept = [line for line in lines if (key := _key(line)) is not None and key[0] <= step]
  if len(kept) != len(lines):
    _rewrite(path, kept)
    logging.info("metrics.jsonl: dropped %d lines after step %d (they are redone)", len(lines) - len(kept), step)


def _rewrite(path: pathlib.Path, lines: list[str]) -> None:
  """Replaces the file's content with `lines`, atomically (a reader sees the old file or the new one)."""
  tmp = path.with_name(path.name + ".tmp")
  tmp.write_text("".join(lines), encoding="utf-8")
  tmp.replace(path)


def _lines(path: pathlib.Path) -> list[str]:
  return path.read_text(encoding="utf-8").splitlines(keepends=True) if path.is_file() else []


def _key(line: str) -> tuple[int, str] | None:
  """(step, split) of a metrics.jsonl line; None for a line torn by a killed run."""
  try:
    record = json.loads(line)
    return int(record["step"]), str(record.get("split", "train"))
  except (ValueError, KeyError, TypeError):
    return None
