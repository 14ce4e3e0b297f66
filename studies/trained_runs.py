"""The finished runs of an ablation sweep (studies/ablations.py: <root>/<variant>/seed<k>), read back for the
analyses that need their final state: pose corruption, query alignment, gate dynamics, per-subject checks.

A run counts as finished when its eval.json is of the sweep's last step; it is loaded with the config it was trained
with (the config file's variant, its seed and the sweep's dataset) through runs.load_run, like every other reader of
a trained run. XLA's compilation cache is on (the runs of one variant compile the same programs).
"""

import argparse
import json
import os
import pathlib
import statistics

from flax import traverse_util
import jax
import numpy as np

from studies import ablations
from clipmg_jax.data.loader import pipeline
from clipmg_jax.figures import canvas
from clipmg_jax.models import vit
from clipmg_jax.training import runs

REPO = pathlib.Path(__file__).resolve().parents[1]


def use_compilation_cache(folder: str | None = None) -> None:
  folder = folder or os.environ.get("JAX_COMPILATION_CACHE_DIR") or str(pathlib.Path.home() / ".cache" / "clipmg_bench_xla")
  jax.config.update("jax_compilation_cache_dir", folder)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def sweep_parser(description: str, *, name: str, variants: str, figure: str | None = None) -> argparse.ArgumentParser:
  """The flags every analysis of a sweep shares: where the sweep is (--root, --config, --data_dir, --steps), which
  runs (--variants, --seeds), where the results go (--json, reused on a rerun; --figure; --output/--marker, the
  Markdown table's place)."""
  parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--root", default="runs/ablations_pretrained", help="the sweep's folder (ablations.py --root)")
  parser.add_argument("--config", default="configs/synthetic_pretrained.py", help="the sweep's config file")
  parser.add_argument("--data_dir", default="", help="the sweep's dataset (default <root>/synthetic_data)")
  parser.add_argument("--variants", default=variants, help="comma-separated variants")
  parser.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated seeds")
  parser.add_argument("--steps", type=int, default=250, help="the sweep's training steps (finished runs only)")
  parser.add_argument("--json", default=f"studies/results/{name}.json", help="the figures (reused on a rerun)")
  parser.add_argument("--figure", default=f"docs/figures/{figure or name}.png", help="the plot")
  parser.add_argument("--output", default="docs/results.md", help="Markdown file the table goes into")
  parser.add_argument("--marker", default=name, help="the table goes between <!-- MARKER:begin/end --> of --output")
  parser.add_argument("--set", default="", dest="overrides",
                      help="space-separated KEY=VALUE config overrides the sweep's runs were trained with "
                           "(ablations.py's arguments after --, without --config.)")
  return parser


def parse(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
  """Parsed flags with data_dir resolved, variant_list and seed_list; the compilation cache switched on."""
  args = parser.parse_args(argv)
  args.data_dir = args.data_dir or str(pathlib.Path(args.root) / "synthetic_data")
  args.variant_list = args.variants.split(",")
  args.seed_list = [int(s) for s in args.seeds.split(",")]
  from clipmg_jax.training import defaults  # pylint: disable=import-outside-toplevel
  args.override_dict = defaults.parse_overrides(args.overrides.split())
  use_compilation_cache()
  return args


class Saved(dict):
  """The JSON file of an analysis' figures, as a dict; save() writes it back (after each run, so an interrupted
  analysis keeps what it computed)."""

  def __init__(self, path: str | pathlib.Path):
    self.path = pathlib.Path(path)
    super().__init__(json.loads(self.path.read_text()) if self.path.is_file() else {})

  def save(self) -> None:
    self.path.parent.mkdir(parents=True, exist_ok=True)
    self.path.write_text(json.dumps(self, indent=1, sort_keys=True))


def write_figure(fig, path: str) -> None:
  pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
  canvas.save(fig, path)
  print(f"wrote {path}")


def finished(args: argparse.Namespace) -> dict:
  """{(variant, seed): workdir} of the sweep's runs (parse's args) whose eval.json is of step args.steps; the others
  are listed on stdout."""
  out, missing = {}, []
  for variant in args.variant_list:
    for seed in args.seed_list:
      workdir = pathlib.Path(args.root) / variant / f"seed{seed}"
      if ablations.final_result(workdir, args.steps) is not None:
        out[(variant, seed)] = workdir
      else:
        missing.append(f"{variant}/seed{seed}")
  if missing:
    print(f"not finished (left out): {', '.join(missing)}", flush=True)
  return out


def publish(args: argparse.Namespace, text: str) -> None:
  """Prints an analysis's Markdown and writes it between the --marker comments of --output."""
  print(text)
  ablations.write_into(pathlib.Path(args.output), text, args.marker)


def load(config_file: str, variant: str, seed: int, workdir: pathlib.Path, data_dir: str,
         which: str = "latest", overrides: dict | None = None) -> runs.Run:
  """The run's checkpoint `which` (default: the final state), with the config it was trained with (plus the sweep's
  `overrides`)."""
  config = runs.load_config(str(REPO / config_file) + f":{variant}",
                            {**(overrides or {}), "seed": seed, "data.synthetic.cache_dir": str(data_dir)})
  return runs.load_run(config, workdir, which)


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
