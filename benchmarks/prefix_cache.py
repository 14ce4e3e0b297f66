r"""What the prefix cache saves and costs: step time side by side, bytes, build time, break-even.

At paper size (configs/imigue.py: ViT-B/16, 8 frames of 224, 10 frozen blocks, float32, batch 2) the trainer's own
train step (aot.make_setup, the step of clipmg_jax.training.step) compiled twice — on frames, and on cached prefix
tokens (bfloat16, as the cache stores them) — and timed alternately in one process, so both see the same load; the
prefix alone per clip; a real cache build (`prefix_cache.build`, decode + prefix + write) over a few random
paper-size JPEG clips; the bytes per clip view measured from the written shards, and for iMiGUE's clips; the
break-even number of epochs (build time over the time saved per epoch). What the cache costs in accuracy is a study:
`python -m studies.prefix_cache_accuracy`.

  python -m benchmarks.prefix_cache --repeats 5 --json benchmarks/results/prefix_cache_speed.json
"""

import argparse
import json
import pathlib
import statistics
import sys
import tempfile
import time

# iMiGUE's cross-subject split as the converter plans it (clipmg_jax/data/raw/imigue.py; tests/data/test_imigue.py).
IMIGUE_TRAIN_CLIPS, IMIGUE_TEST_CLIPS = 13935, 4563


def parse_args(argv):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--config", default="configs/imigue.py", help="the model and data measured")
  parser.add_argument("--batch", type=int, default=2, help="global batch (default 2)")
  parser.add_argument("--repeats", type=int, default=3, help="timed steps of each kind, alternating")
  parser.add_argument("--build_clips", type=int, default=4, help="clips of the timed cache build")
  parser.add_argument("--views", type=int, default=4, help="K for the bytes and break-even (default 4)")
  parser.add_argument("--json", default="", help="write the figures to this JSON file")
  return parser.parse_args(argv)


def speed(args) -> dict:
  import jax  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  from benchmarks import train_step  # pylint: disable=import-outside-toplevel
  from clipmg_jax.data.records import random_shards  # pylint: disable=import-outside-toplevel
  from clipmg_jax.data.records import token_record  # pylint: disable=import-outside-toplevel
  from clipmg_jax.training import aot  # pylint: disable=import-outside-toplevel
  from clipmg_jax.data.loader import token_cache  # pylint: disable=import-outside-toplevel
  from clipmg_jax.training import prefix_cache  # pylint: disable=import-outside-toplevel
  from clipmg_jax.training import sharding as sharding_lib  # pylint: disable=import-outside-toplevel

  config = train_step.load_config(argparse.Namespace(config=args.config, dtype="float32",
                                                     batch=args.batch, set=[], variant=None))
  m, size = config.model, int(config.data.image_size)
  setup = aot.make_setup(config)
  live = train_step.random_batch(args.batch, config, size)
  prefix = prefix_cache.prefix_function(m)
  params = prefix_cache.initial_params(config, size)
  tokens = np.asarray(prefix(params["vit"], live["frames"]).astype(token_record.DTYPES["bfloat16"]))
  cached = {"tokens": tokens, "keypoints": live["keypoints"], "label": live["label"]}
  out = dict(config=args.config, variant=m.variant, batch=args.batch,
             frozen_blocks=token_cache.depth(m), tokens_shape=list(tokens.shape[1:]), backend=jax.default_backend())
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


def main(argv):
  args = parse_args(argv)
  out = speed(args)
  if args.json:
    pathlib.Path(args.json).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
  main(sys.argv[1:])
