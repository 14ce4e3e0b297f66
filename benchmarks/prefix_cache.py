r"""What the prefix cache saves and costs: step time side by side, bytes, build time, break-even; and its accuracy.

--speed (default): at paper size (configs/imigue.py: ViT-B/16, 8 frames of 224, 10 frozen blocks, float32, batch 2)
the trainer's own train step (aot.make_setup, the step of clipmg_jax.training.step) compiled twice — on frames, and on
cached prefix tokens (bfloat16, as the cache stores them) — and timed alternately in one process, so both see the
same load; the prefix alone per clip; a real cache build (`prefix_cache.build`, decode + prefix + write) over a few
random paper-size JPEG clips; the bytes per clip view measured from the written shards, and for iMiGUE's clips;
the break-even number of epochs (build time over the time saved per epoch).

--accuracy: the pretrained-tower benchmark (configs/synthetic_pretrained.py, the claims sweep's budget: 250 steps
of batch 32, validation every 50) trained live and from caches of K = 1 and K = 4 views, for each variant and seed;
test top-1 and mean class accuracy of every run's eval.json, their mean and standard deviation over seeds, and each
cached setting's difference from live paired by seed, as a markdown table. The variants share one cache per K: they
load the same tower with the same frozen depth, so their prefixes are the same function (the tower digest check
refuses the cache otherwise). It runs `python -m clipmg_jax.cache_prefix` and `python -m clipmg_jax.train` one at a
time (each printed before it runs), and skips runs whose eval.json has the sweep's step, so an interrupted sweep
resumes. --live_runs DIR takes the live runs from DIR/<variant>/seed<k> (the layout of benchmarks/ablations.py)
instead of training them again: the same command, config and seed give the same run on one machine.
--smoke: a tiny model for 2 steps, one seed (what CI and a quick check run).

  python -m benchmarks.prefix_cache --repeats 5 --json benchmarks/results/prefix_cache_speed.json
  python -m benchmarks.prefix_cache --accuracy --root runs/prefix_cache_accuracy \
      --live_runs runs/ablations_pretrained --seeds 0,1,2,3,4 \
      --json benchmarks/results/prefix_cache_accuracy.json          # 2 variants x (live, K=1, K=4) x 5 seeds
  python -m benchmarks.prefix_cache --accuracy --smoke --root /tmp/pc_smoke
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

from studies import ablations

# iMiGUE's cross-subject split as the converter plans it (clipmg_jax/data/raw/imigue.py; tests/data/test_imigue.py).
IMIGUE_TRAIN_CLIPS, IMIGUE_TEST_CLIPS = 13935, 4563
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
  parser.add_argument("--accuracy", action="store_true", help="the accuracy sweep instead of the speed figures")
  parser.add_argument("--config", default="", help="speed: default configs/imigue.py; accuracy: default "
                      "configs/synthetic_pretrained.py (configs/synthetic.py with --smoke)")
  parser.add_argument("--batch", type=int, default=2, help="speed: global batch (default 2)")
  parser.add_argument("--repeats", type=int, default=3, help="speed: timed steps of each kind, alternating")
  parser.add_argument("--build_clips", type=int, default=4, help="speed: clips of the timed cache build")
  parser.add_argument("--views", type=int, default=4, help="speed: K for the bytes and break-even (default 4)")
  parser.add_argument("--root", default="", help="accuracy: folder of the data, caches and runs")
  parser.add_argument("--variants", default="full,visual_only", help="accuracy: comma-separated variants")
  parser.add_argument("--seeds", default="0,1,2", help="accuracy: comma-separated seeds")
  parser.add_argument("--ks", default="1,4", help="accuracy: views per training clip of the caches")
  parser.add_argument("--steps", type=int, default=250, help="accuracy: training steps per run (batch 32)")
  parser.add_argument("--eval_every", type=int, default=50, help="accuracy: validation interval in steps")
  parser.add_argument("--live_runs", default="", help="accuracy: reuse the live runs of DIR/<variant>/seed<k> "
                      "(benchmarks/ablations.py's layout) when their eval.json is at --steps")
  parser.add_argument("--smoke", action="store_true", help="accuracy: tiny model, 2 steps, seed 0, full, K = 1, 2")
  parser.add_argument("--json", default="", help="write the figures to this JSON file")
  return parser.parse_args(argv)


# --------------------------------------------------------------------------------------------------- speed
def speed(args) -> dict:
  import jax  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  from benchmarks import train_step  # pylint: disable=import-outside-toplevel
  from clipmg_jax.data.records import random_shards  # pylint: disable=import-outside-toplevel
  from clipmg_jax.data.records import token_record  # pylint: disable=import-outside-toplevel
  from clipmg_jax.training import aot  # pylint: disable=import-outside-toplevel
  from clipmg_jax.training import prefix_cache  # pylint: disable=import-outside-toplevel
  from clipmg_jax.training import sharding as sharding_lib  # pylint: disable=import-outside-toplevel

  config = train_step.load_config(argparse.Namespace(config=args.config or "configs/imigue.py", dtype="float32",
                                                     batch=args.batch, set=[], variant=None))
  m, size = config.model, int(config.data.image_size)
  setup = aot.make_setup(config)
  live = train_step.random_batch(args.batch, config, size)
  prefix = prefix_cache.prefix_function(m)
  params = prefix_cache.initial_params(config, size)
  tokens = np.asarray(prefix(params["vit"], live["frames"]).astype(token_record.DTYPES["bfloat16"]))
  cached = {"tokens": tokens, "keypoints": live["keypoints"], "label": live["label"]}
  out = dict(config=args.config or "configs/imigue.py", variant=m.variant, batch=args.batch,
             frozen_blocks=prefix_cache.depth(m), tokens_shape=list(tokens.shape[1:]), backend=jax.default_backend())
  holder = {"state": setup.fresh_state()}
  steps = {}
  for name, batch in (("live", live), ("cached", cached)):
    placed = sharding_lib.place_batch(batch, setup.mesh)
    start = time.perf_counter()
    steps[name] = (setup.train_step.lower(holder["state"], placed).compile(), placed)
    out[f"{name}_compile_seconds"] = time.perf_counter() - start

  def run(name):
    compiled, placed = steps[name]
    start = time.perf_counter()
    holder["state"], metrics = compiled(holder["state"], placed)
    jax.block_until_ready(metrics)
    return time.perf_counter() - start

  times = {"live": [], "cached": []}
  for name in ("live", "cached"):
    run(name)  # warm-up
  for _ in range(args.repeats):  # alternating: both kinds see the same background load
    for name in ("live", "cached"):
      times[name].append(run(name))
      print(f"  {name} step {times[name][-1]:.2f} s", flush=True)
  for name, values in times.items():
    out[f"{name}_step_seconds"] = statistics.median(values)
    out[f"{name}_clips_per_second"] = args.batch / statistics.median(values)
    out[f"{name}_step_seconds_all"] = values
  out["speedup"] = out["live_step_seconds"] / out["cached_step_seconds"]
  prefix_times = []
  for _ in range(args.repeats):
    start = time.perf_counter()
    jax.block_until_ready(prefix(params["vit"], live["frames"]))
    prefix_times.append(time.perf_counter() - start)
  out["prefix_seconds_per_clip"] = statistics.median(prefix_times) / args.batch
  del steps, holder

  with tempfile.TemporaryDirectory() as tmp:  # a real build: decode + prefix + write, paper-size JPEG clips
    shards = random_shards.write_random_shards(pathlib.Path(tmp) / "shards",
                                               splits={"train": args.build_clips, "test": 1})
    build_config = config.copy_and_resolve_references()
    build_config.data.shards_dir, build_config.data.synthetic = str(shards), None
    prefix_cache.build(build_config, pathlib.Path(tmp) / "warm", views=1, max_clips=1, batch_size=args.batch,
                       progress=False)  # compiles the prefix
    document = prefix_cache.build(build_config, pathlib.Path(tmp) / "cache", views=1, batch_size=args.batch,
                                  progress=False)
    shard_bytes = sum((pathlib.Path(tmp) / "cache" / s["path"]).stat().st_size
                      for split in document["splits"].values() for s in split["shards"])
  out["build_seconds_per_view"] = document["build"]["seconds_per_view"]
  out["bytes_per_view"] = shard_bytes / document["build"]["views"]
  k = args.views
  if "imigue" in out["config"]:  # iMiGUE's disk and build time: only from a cache of the paper's model
    views = {kk: IMIGUE_TRAIN_CLIPS * kk + IMIGUE_TEST_CLIPS for kk in sorted({1, k})}
    out["imigue"] = {f"K={kk}": {"views": n, "gib": n * out["bytes_per_view"] / 2**30,
                                 "build_hours_this_cpu": n * out["build_seconds_per_view"] / 3600}
                     for kk, n in views.items()}
  saved_per_clip = (out["live_step_seconds"] - out["cached_step_seconds"]) / args.batch
  out["saved_seconds_per_clip_epoch"] = saved_per_clip
  # Break-even: epochs after which the build (K views per training clip) has cost less than it saved.
  out["break_even_epochs"] = {f"K={kk}": kk * out["build_seconds_per_view"] / saved_per_clip if saved_per_clip > 0
                              else float("inf") for kk in sorted({1, k})}
  print(json.dumps({k_: v for k_, v in out.items() if not k_.endswith("_all")}, indent=1))
  return out


# --------------------------------------------------------------------------------------------------- accuracy
def _flags(overrides: dict) -> list[str]:
  return [f"--config.{k}={v}" for k, v in overrides.items()]


def _run(command: list[str]) -> None:
  print("$ " + " ".join(command), flush=True)
  subprocess.run(command, check=True)


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


def accuracy(args) -> dict:
  root = pathlib.Path(args.root or tempfile.mkdtemp(prefix="prefix_cache_accuracy_")).absolute()
  config = args.config or ("configs/synthetic.py" if args.smoke else "configs/synthetic_pretrained.py")
  variants = ["full"] if args.smoke else args.variants.split(",")
  seeds = [0] if args.smoke else [int(s) for s in args.seeds.split(",")]
  ks = [1, 2] if args.smoke else [int(k) for k in args.ks.split(",")]
  budget = {"total_steps": args.steps, "eval_every_steps": args.eval_every}
  common = {"data.synthetic.cache_dir": str(root / "data"), **(SMOKE_OVERRIDES if args.smoke else budget)}
  steps = int(common["total_steps"])
  python = [sys.executable, "-m"]
  settings = ["live"] + [f"K={k}" for k in ks]
  for k in ks:  # one cache per K serves every variant and seed: the tower and frozen depth are the config's
    cache = root / f"cache_k{k}"
    if not (cache / "manifest.json").is_file():
      _run(python + ["clipmg_jax.cache_prefix", f"--config={config}:{variants[0]}", f"--out={cache}", f"--views={k}",
                     f"--workdir={root}"] + _flags(common))
  runs = []
  for seed in seeds:  # seed-major: every finished seed adds a pair to every row
    for variant in variants:
      for setting in settings:
        workdir = root / f"{variant}_{setting.replace('=', '')}_seed{seed}"
        sweep_run = pathlib.Path(args.live_runs) / variant / f"seed{seed}" if args.live_runs else None
        if setting == "live" and sweep_run and ablations.final_result(sweep_run, steps) is not None:
          workdir = sweep_run.absolute()
        result = ablations.final_result(workdir, steps)
        if result is None:
          extra = {} if setting == "live" else {"data.prefix_cache": str(root / f"cache_k{setting[2:]}")}
          start = time.perf_counter()
          _run(python + ["clipmg_jax.train", f"--config={config}:{variant}", f"--workdir={workdir}"]
               + _flags({**common, "seed": seed, **extra}))
          result = json.loads((workdir / "eval.json").read_text())
          result["seconds"] = time.perf_counter() - start  # the whole run, as benchmarks/ablations.py records it
          (workdir / "eval.json").write_text(json.dumps(result, indent=1))
        runs.append(dict(variant=variant, setting=setting, seed=seed, top1=result["top1"],
                         mean_class_accuracy=result["mean_class_accuracy"], seconds=result.get("seconds"),
                         workdir=os.path.relpath(workdir)))
  table = _table(runs, variants, settings)
  print(table)
  caches = {f"K={k}": json.loads((root / f"cache_k{k}" / "manifest.json").read_text())["build"] for k in ks}
  return dict(config=config, smoke=args.smoke, steps=steps, eval_every=int(common["eval_every_steps"]), runs=runs,
              caches=caches, table=table)


def main(argv):
  args = parse_args(argv)
  out = accuracy(args) if args.accuracy else speed(args)
  if args.json:
    pathlib.Path(args.json).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
  main(sys.argv[1:])
