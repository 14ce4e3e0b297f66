r"""What the prefix cache costs in accuracy: the pretrained-tower benchmark (configs/synthetic_pretrained.py, the claims
sweep's budget: 250 steps of batch 32, validation every 50) trained live and from caches of K = 1 and K = 4 views,
for each variant and seed; test top-1 and mean class accuracy of every run's final results, their mean and standard
deviation over seeds, and each cached setting's difference from live paired by seed, as a markdown table.

The variants share one cache per K: they load the same tower with the same frozen depth, so their prefixes are the
same function (the tower digest check refuses the cache otherwise). It runs `python -m clipmg_jax.cache_prefix` and
`python -m clipmg_jax.train` one at a time (each printed before it runs; the runs through studies/sweep.py, which
keeps each training's wall time in the sweep's record in --root), and skips runs that finished at the sweep's step,
so an interrupted sweep resumes. --live_runs DIR takes the live runs from DIR/<variant>/seed<k> (a sweep of
studies/ablations.py) instead of training them again: the same command, config and seed give the same run on one
machine. --smoke: a tiny model for 2 steps, one seed (what CI and a quick check run). The speed side of the cache is
a benchmark: `python -m benchmarks.prefix_cache`.

  python -m studies.prefix_cache_accuracy --root runs/prefix_cache_accuracy \
      --live_runs runs/ablations_pretrained --seeds 0,1,2,3,4 \
      --json studies/results/prefix_cache_accuracy.json          # 2 variants x (live, K=1, K=4) x 5 seeds
  python -m studies.prefix_cache_accuracy --smoke --root /tmp/pc_smoke
"""

import argparse
import json
import os
import pathlib
import statistics
import sys
import tempfile

from clipmg_jax.data.records import manifest as manifest_lib
from clipmg_jax.run.folder import RunFolder
from studies import ablations
from studies import sweep

# The tiny model of the smoke run: configs/synthetic.py's data, a 2-block tower with 1 frozen, 2 steps.
SMOKE_OVERRIDES = {
    "batch_size": 8, "eval_batch_size": 8, "total_steps": 2, "log_every_steps": 1, "eval_every_steps": 2,
    "checkpoint.every_steps": 2, "optimizer.warmup_steps": 1, "model.vit.width": 16, "model.vit.layers": 2,
    "model.vit.heads": 2, "model.vit.mlp_dim": 32, "model.vit.image_size": 32, "model.trainable_blocks": 1,
    "model.heatmap.resolution": 8, "model.skeleton.features": "(4, 8, 8)", "model.skeleton.num_groups": 4,
    "model.skeleton.embed_dim": 16, "model.skeleton.strides": "((2, 2, 2), (2, 2, 2), (1, 1, 1))",
    "model.head.hidden_dim": 16, "data.image_size": 32, "data.synthetic.preset": "tiny",
    "data.validation.num_subjects": 1, "init.allow_random_vit": True,
}


def parse_args(argv):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--config", default="", help="default configs/synthetic_pretrained.py (configs/synthetic.py "
                      "with --smoke)")
  parser.add_argument("--root", default="", help="folder of the data, caches and runs (default: a new temporary one)")
  parser.add_argument("--variants", default="full,visual_only", help="comma-separated variants")
  parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
  parser.add_argument("--ks", default="1,4", help="views per training clip of the caches")
  parser.add_argument("--steps", type=int, default=250, help="training steps per run (batch 32)")
  parser.add_argument("--eval_every", type=int, default=50, help="validation interval in steps")
  parser.add_argument("--live_runs", default="", help="reuse the live runs of DIR/<variant>/seed<k> "
                      "(a sweep of studies/ablations.py) when they finished at --steps")
  parser.add_argument("--smoke", action="store_true", help="tiny model, 2 steps, seed 0, full, K = 1, 2")
  parser.add_argument("--json", default="", help="write the figures to this JSON file")
  return parser.parse_args(argv)


def _paired(runs: list[dict], variant: str, setting: str, key: str) -> str:
  """(setting - live) in points, seed by seed: its mean over the seeds both have and its 95 % t interval."""
  live = {r["seed"]: r[key] for r in runs if r["variant"] == variant and r["setting"] == "live"}
  diffs = [100 * (r[key] - live[r["seed"]]) for r in runs
           if r["variant"] == variant and r["setting"] == setting and r["seed"] in live]
  if setting == "live" or not diffs:
    return "—"
  mean, half = ablations.mean_interval(diffs)
  return f"{mean:+.1f} [{mean - half:+.1f}, {mean + half:+.1f}]" if len(diffs) > 1 else f"{mean:+.1f}"


def _table(runs: list[dict], variants: list[str], settings: list[str]) -> str:
  """Markdown: per variant and input, mean ± sd over seeds of test top-1 and mean class accuracy, with the paired
  differences from live."""
  lines = ["| variant | input | seeds | test top-1 % (mean ± sd) | − live, paired (95 % interval) "
           "| mean class accuracy % | − live, paired (95 % interval) |",
           "|---|---|---:|---:|---:|---:|---:|"]
  for variant in variants:
    for setting in settings:
      rows = [r for r in runs if r["variant"] == variant and r["setting"] == setting]
      cell = lambda key: (f"{100 * statistics.mean(r[key] for r in rows):.1f} ± "  # noqa: E731
                          f"{100 * (statistics.stdev(r[key] for r in rows) if len(rows) > 1 else 0):.1f}")
      lines.append(f"| `{variant}` | {setting} | {len(rows)} | {cell('top1')} | "
                   f"{_paired(runs, variant, setting, 'top1')} | {cell('mean_class_accuracy')} | "
                   f"{_paired(runs, variant, setting, 'mean_class_accuracy')} |")
  return "\n".join(lines)


def build_caches(root: pathlib.Path, config: str, variant: str, ks: list[int], common: dict) -> None:
  """One cache per K, built unless it is complete; it serves every variant and seed: the tower and frozen depth are
  the config's."""
  for k in ks:
    cache = root / f"cache_k{k}"
    if not manifest_lib.exists(cache):
      sweep.run_command([sys.executable, "-m", "clipmg_jax.cache_prefix", f"--config={config}:{variant}",
                         f"--out={cache}", f"--views={k}", f"--workdir={root}"] + sweep.config_flags(common))


def accuracy(args) -> dict:
  root = pathlib.Path(args.root or tempfile.mkdtemp(prefix="prefix_cache_accuracy_")).absolute()
  config = args.config or ("configs/synthetic.py" if args.smoke else "configs/synthetic_pretrained.py")
  variants = ["full"] if args.smoke else args.variants.split(",")
  seeds = [0] if args.smoke else [int(s) for s in args.seeds.split(",")]
  ks = [1, 2] if args.smoke else [int(k) for k in args.ks.split(",")]
  budget = {"total_steps": args.steps, "eval_every_steps": args.eval_every}
  common = {"data.synthetic.cache_dir": str(root / "data"), **(SMOKE_OVERRIDES if args.smoke else budget)}
  steps = int(common["total_steps"])
  settings = ["live"] + [f"K={k}" for k in ks]
  build_caches(root, config, variants[0], ks, common)
  runs, live_sweep = sweep.Sweep(root), sweep.Sweep(args.live_runs) if args.live_runs else None
  out = []
  for seed in seeds:  # seed-major: every finished seed adds a pair to every row
    for variant in variants:
      for setting in settings:
        live = live_sweep.folder(variant, seed) if live_sweep and setting == "live" else None
        result = live_sweep.result(live, steps) if live else None
        if result is not None:  # the sweep's own run: the same command, config and seed
          folder = live
        else:
          folder = RunFolder(root / f"{variant}_{setting.replace('=', '')}_seed{seed}")
          extra = {} if setting == "live" else {"data.prefix_cache": str(root / f"cache_k{setting[2:]}")}
          result = runs.train(folder, f"{config}:{variant}", {**common, "seed": seed, **extra}, log=False)
        out.append(dict(variant=variant, setting=setting, seed=seed, top1=result["top1"],
                        mean_class_accuracy=result["mean_class_accuracy"], seconds=result["seconds"],
                        workdir=os.path.relpath(folder.path)))
  table = _table(out, variants, settings)
  print(table)
  caches = {f"K={k}": manifest_lib.read(root / f"cache_k{k}")["build"] for k in ks}
  return dict(config=config, smoke=args.smoke, steps=steps, eval_every=int(common["eval_every_steps"]), runs=out,
              caches=caches, table=table)


def main(argv=None):
  args = parse_args(sys.argv[1:] if argv is None else argv)
  out = accuracy(args)
  if args.json:
    pathlib.Path(args.json).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
  main()
