"""A finished run of a sweep (studies/sweep.py), loaded for the analyses that need its final state: pose corruption,
query alignment, gate dynamics, per-subject checks; and what they share to show it (a figure file, mean ± sd).

A run is loaded with the config it was trained with (the config file's variant, its seed, the sweep's dataset and
overrides) through runs.load_run, like every other reader of a trained run. XLA's compilation cache is switched on
with the first load (the runs of one variant compile the same programs).
"""

import argparse
import os
import pathlib
import statistics

from flax import traverse_util
import jax
import numpy as np

from clipmg_jax.data.loader import pipeline
from clipmg_jax.figures import canvas
from clipmg_jax.models import vit
from clipmg_jax.run.folder import RunFolder
from clipmg_jax.training import runs

REPO = pathlib.Path(__file__).resolve().parents[1]


def use_compilation_cache(folder: str | None = None) -> None:
  folder = folder or os.environ.get("JAX_COMPILATION_CACHE_DIR") or str(pathlib.Path.home() / ".cache" / "clipmg_bench_xla")
  jax.config.update("jax_compilation_cache_dir", folder)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def write_figure(fig, path: str) -> None:
  pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
  canvas.save(fig, path)
  print(f"wrote {path}")


def load(args: argparse.Namespace, variant: str, seed: int, folder: RunFolder, which: str = "latest") -> runs.Run:
  """The run's checkpoint `which` (default: the final state), with the config it was trained with: the sweep's
  config file (args.config) at `variant`, `seed`, the sweep's dataset (args.data_dir) and overrides (--set)."""
  use_compilation_cache()
  overrides = {**getattr(args, "override_dict", {}), "seed": seed, "data.synthetic.cache_dir": str(args.data_dir)}
  config = runs.load_config(str(REPO / args.config) + f":{variant}", overrides)
  return runs.load_run(config, folder.path, which)


def mean_and_spread(values: list[float]) -> str:
  """"54.3 ± 1.2" (mean ± standard deviation over the seeds; a lone value without a spread)."""
  if not values:
    return "—"
  if len(values) == 1:
    return f"{values[0]:.1f}"
  return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def capture(run: runs.Run, module_names: tuple[str, ...], split: str = "test") -> dict:
  """One pass of the model over `split` (evaluation transform) that keeps, per clip: label, subject, the logits,
  the values ClipMG sows ("reliability", "gate_values", ...) and the outputs of the submodules named in
  `module_names` (flax capture_intermediates; e.g. "feature" = u . LN(s) inside the gate, "cross_attention" = the
  pooled clip feature). Arrays stacked over the split's clips, padding rows removed."""
  def apply(params, frames, keypoints):
    logits, state = run.model.apply(
        {"params": params}, vit.normalize_images(frames), keypoints, train=False, mutable=["intermediates"],
        capture_intermediates=lambda module, _: module.name in module_names)
    flat = traverse_util.flatten_dict(state["intermediates"], sep="/")
    out = {"logits": logits}
    for key, value in flat.items():
      parts = key.split("/")
      name = parts[-2] if parts[-1] == "__call__" else parts[-1]
      if parts[-1] == "__call__" and name not in module_names:
        continue
      out[name] = value[0]
    return out

  apply = jax.jit(apply)
  data_config = run.config.data
  rows: dict[str, list] = {}
  for batch in pipeline.make_dataset(data_config, split, train=False):
    keep = np.asarray(batch["mask"]) > 0
    out = apply(run.params, batch["frames"], np.asarray(batch["keypoints"], np.float32))
    for key, value in dict(out, label=batch["label"], subject=batch["subject"]).items():
      rows.setdefault(key, []).append(np.asarray(value)[keep])
  return {k: np.concatenate(v) for k, v in rows.items()}
