"""Where figures are drawn: pyplot as it is (a notebook's inline backend) or on Agg for files, and their output."""

import pathlib

import numpy as np


def pyplot():
  """matplotlib.pyplot with whatever backend is selected (a notebook shows the figures it makes inline)."""
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  return plt


def files_only():
  """matplotlib.pyplot on the Agg backend: figures go to files, never to a window. Returns pyplot."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  return pyplot()


def save(fig, path: str | pathlib.Path, dpi: int = 110) -> None:
  """Writes `fig` to `path` (the format from its suffix) and closes it."""
  fig.savefig(path, dpi=dpi)
  pyplot().close(fig)


def save_all(figures: dict, folder: str | pathlib.Path, suffix: str = "", dpi: int = 110) -> list[pathlib.Path]:
  """Writes each figure of {name: figure} to <folder>/<name><suffix>.png and closes it; returns the paths."""
  folder = pathlib.Path(folder)
  folder.mkdir(parents=True, exist_ok=True)
  paths = []
  for name, fig in figures.items():
    paths.append(folder / f"{name}{suffix}.png")
    save(fig, paths[-1], dpi)
  return paths


def to_rgb(fig) -> np.ndarray:
  """The figure drawn at its own size and dpi, uint8 (H, W, 3); the figure stays open (its axes' extents are in
  the same pixels, origin bottom left)."""
  fig.canvas.draw()
  return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
