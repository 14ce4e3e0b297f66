r"""Everything a GPU session measures, in one command of at most 8 minutes on one GPU; --smoke runs it at tiny
sizes on a CPU (CI does, so it cannot rot).

(a) The paper-size train step (configs/imigue.py, bfloat16) of `full`, `pose_only` and `visual_only` at batch 32 and
    at the largest batch that fits (fitted from the compiled step's memory at two batches, then run): step time,
    clips/s and MFU against the device's published dense peak (train_step.PUBLISHED_PEAK_TFLOPS); and the skeleton
    branch with XLA's convolutions against the im2col matmul form (`model.skeleton.conv` xla / matmul, pose_only).
(b) The real loop (trainer + Grain pipeline) over paper-size random JPEG shards (256 x 456 frames) with 0, 4, 8 and
    14 Grain workers: clips/s, and the share of the loop's time the device waits for the host (1 - bare step / loop
    step).
(c) A short paper-size training (random tower) stopped after step 3 as a preemption and resumed, against the same
    run uninterrupted: the largest parameter difference (exact resume: 0) and both runs' test top-1.
(d) Everything in one JSON (--json) and a markdown table (--markdown).

On the GPU machine grain, ml-collections, av, crc32c and tensorflow-datasets may be missing: make a wheelhouse for
its Python first (benchmarks/gpu_wheels.sh) and install it there (pip install --no-index --find-links ...).

  python -m benchmarks.gpu_suite --json gpu.json --markdown gpu.md       # on the GPU
  python -m benchmarks.gpu_suite --smoke                                 # tiny, on CPU
"""

import argparse
import json
import os
import pathlib
import sys
import tempfile
import time

from benchmarks import train_step as ts

VARIANTS = ("full", "pose_only", "visual_only")
# --smoke: configs/synthetic.py:full shrunk to seconds per step on a CPU (the end-to-end tests' tiny model).
SMOKE_CONFIG = "configs/synthetic.py:full"
SMOKE = ["model.vit.width=16", "model.vit.layers=2", "model.vit.heads=2", "model.vit.mlp_dim=32",
         "model.vit.image_size=32", "model.trainable_blocks=1", "model.heatmap.resolution=8",
         "model.skeleton.features=(4, 8, 8)", "model.skeleton.num_groups=4", "model.skeleton.embed_dim=16",
         "model.skeleton.strides=((2, 2, 2), (2, 2, 2), (1, 1, 1))", "model.head.hidden_dim=16", "data.image_size=32",
         "loss.class_weighting=none"]  # random shards have no class counts


def parse_args(argv):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--smoke", action="store_true", help="tiny model, small batches, 0/1 workers (CPU, CI)")
  parser.add_argument("--config", default="configs/imigue.py", help="config file (default: the paper's)")
  parser.add_argument("--batch", type=int, default=32, help="the fixed batch of (a) (default 32)")
  parser.add_argument("--max_batch", type=int, default=1024, help="cap of the largest batch tried (default 1024)")
  parser.add_argument("--workers", default="0,4,8,14", help="Grain worker counts of (b) (default %(default)s)")
  parser.add_argument("--loop_batch", type=int, default=32, help="batch of (b) and (c) (default 32)")
  parser.add_argument("--steps", type=int, default=5, help="timed steps per figure (default 5)")
  parser.add_argument("--skip", default="", help="parts to skip, e.g. loop,resume")
  parser.add_argument("--json", default="gpu_suite.json", help="figures as JSON (default: %(default)s)")
  parser.add_argument("--markdown", default="", help="also write the table here")
  return parser.parse_args(argv)


def config_for(args, variant, batch, *extra):
  ns = argparse.Namespace(config=args.config, variant=variant, batch=batch,
                          dtype="float32" if args.smoke else "bfloat16", set=(SMOKE if args.smoke else []) + list(extra))
  return ts.load_config(ns)


def time_step(args, config):
  """(seconds per step, compiled) of the trainer's train step on random inputs at config.batch_size."""
  import jax  # pylint: disable=import-outside-toplevel
  from clipmg_jax.training import sharding as sharding_lib  # pylint: disable=import-outside-toplevel
  step, fresh_state, mesh = ts.build_step(config)
  batch = sharding_lib.place_batch(ts.random_batch(config.batch_size, config, int(config.data.image_size)), mesh)
  holder = {"state": fresh_state()}
  compiled = step.lower(holder["state"], batch).compile()

  def run():
    holder["state"], metrics = compiled(holder["state"], batch)
    jax.block_until_ready(metrics)

  return ts.median_seconds(run, args.steps, 1), compiled


def device_bytes():
  """The device's usable memory in bytes, or None (CPU)."""
  import jax  # pylint: disable=import-outside-toplevel
  stats = jax.devices()[0].memory_stats() or {}
  return stats.get("bytes_limit")


def largest_batch(args, variant):
  """The largest batch predicted to fit (two compiles' memory, linear in the batch; 5 % kept free), or the cap."""
  limit = device_bytes()
  small = args.batch
  if limit is None:
    return min(2 * small, args.max_batch), None
  totals = [ts.compile_step(config_for(args, variant, b), b).memory["total"] for b in (small, 2 * small)]
  per_clip = (totals[1] - totals[0]) / small
  fixed = totals[0] - per_clip * small
  n = int((0.95 * limit - fixed) // per_clip)
  n = max(8, min(args.max_batch, n // 8 * 8))
  return n, dict(bytes_per_clip=per_clip, fixed_bytes=fixed, device_bytes=limit)


def measure_step(args, variant, batch, *extra):
  import jax  # pylint: disable=import-outside-toplevel
  from clipmg_jax.models import flops  # pylint: disable=import-outside-toplevel
  config = config_for(args, variant, batch, *extra)
  while True:
    try:
      seconds, _ = time_step(args, config)
      break
    except Exception as e:  # pylint: disable=broad-except  (XLA's out-of-memory is a plain runtime error)
      if "RESOURCE_EXHAUSTED" not in str(e) or config.batch_size <= 8:
        raise
      config.batch_size = config.batch_size // 2 // 8 * 8 or 8
  model_flops = flops.train_flops(config.model, int(config.data.image_size)) * config.batch_size
  peak, peak_name = ts.published_peak(jax.devices()[0], config.model.dtype)
  row = dict(variant=variant, batch=config.batch_size, step_seconds=seconds, clips_per_second=config.batch_size / seconds,
             model_tflops_per_second=model_flops / seconds / 1e12, peak=peak_name, extra=list(extra))
  if peak:
    row["mfu"] = row["model_tflops_per_second"] / (peak * jax.device_count())
  return row


def part_steps(args, out):
  rows = []
  for variant in VARIANTS:
    rows.append(measure_step(args, variant, args.batch))
    print(_step_line(rows[-1]), flush=True)
    if args.smoke and variant != "full":
      continue  # the smoke run goes through the largest-batch path once
    n, fit = largest_batch(args, variant)
    rows.append(dict(measure_step(args, variant, n), memory_fit=fit))
    print(_step_line(rows[-1]), flush=True)
  out["steps"] = rows
  conv = [measure_step(args, "pose_only", args.batch, f"model.skeleton.conv={impl}") for impl in ("xla", "matmul")]
  out["skeleton_conv"] = conv
  for row in conv:
    print(_step_line(row), flush=True)


def _step_line(row):
  mfu = f", MFU {row['mfu']:.1%}" if "mfu" in row else ""
  return (f"{row['variant']} batch {row['batch']} {' '.join(row['extra'])}: {row['step_seconds'] * 1e3:.1f} ms, "
          f"{row['clips_per_second']:.1f} clips/s{mfu}")


def loop_config(args, shards, workdir_steps, **fields):
  from clipmg_jax.training import defaults  # pylint: disable=import-outside-toplevel
  config = config_for(args, "full", args.loop_batch)
  overrides = {"data.shards_dir": str(shards), "data.synthetic": None, "init.vit_checkpoint": "",
               "init.allow_random_vit": True, "eval_every_steps": 0, "total_steps": workdir_steps,
               "eval_batch_size": args.loop_batch, "data.validation.num_subjects": 1, **fields}
  return defaults.override(config, overrides)


def part_loop(args, out, shards):
  """The loop's clips/s with each worker count against the bare step (train_step.loop_timing)."""
  rows = []
  bare, _ = time_step(args, config_for(args, "full", args.loop_batch))
  for workers in (int(w) for w in args.workers.split(",")):
    ns = argparse.Namespace(loop_steps=args.steps, shards_dir=str(shards), batch=args.loop_batch)
    config = config_for(args, "full", args.loop_batch, f"data.worker_count={workers}")
    timing = ts.loop_timing(config, ns, bare)
    row = dict(workers=workers, clips_per_second=args.loop_batch / timing["loop_seconds_per_step"],
               loop_seconds_per_step=timing["loop_seconds_per_step"], bare_step_seconds=bare,
               device_waits=max(0.0, 1 - bare / timing["loop_seconds_per_step"]))
    rows.append(row)
    print(f"loop, {workers} workers: {row['clips_per_second']:.1f} clips/s, device waits {row['device_waits']:.0%}",
          flush=True)
  out["loop"] = rows


def part_resume(args, out, shards):
  """Six steps straight, against three steps, a stop (as a preemption) and a resume: same parameters, same top-1."""
  import jax  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  from clipmg_jax.run.folder import RunFolder  # pylint: disable=import-outside-toplevel
  from clipmg_jax.training import checkpointing  # pylint: disable=import-outside-toplevel
  from clipmg_jax.data import input_setup  # pylint: disable=import-outside-toplevel
  from clipmg_jax.training import trainer  # pylint: disable=import-outside-toplevel

  def run(workdir, **fields):
    config = loop_config(args, shards, 6, **{"checkpoint.every_steps": 2, "data.worker_count": 0, **fields})
    return trainer.train_and_evaluate(config, workdir, input_setup.make_data_source(config, workdir))

  def params(workdir):
    ckpt = checkpointing.Checkpointer(RunFolder(workdir).checkpoints_dir)
    try:
      return ckpt.latest_step(), ckpt.saved_params()
    finally:
      ckpt.close()

  with tempfile.TemporaryDirectory() as tmp:
    tmp = pathlib.Path(tmp)
    start = time.perf_counter()
    straight = run(tmp / "straight")
    run(tmp / "resumed", stop_after_step=3)
    resumed = run(tmp / "resumed")
    (step_a, a), (step_b, b) = params(tmp / "straight"), params(tmp / "resumed")
    diff = max(float(np.max(np.abs(np.asarray(x, np.float32) - np.asarray(y, np.float32))))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
  out["resume"] = dict(steps=6, stopped_after=3, final_steps=[step_a, step_b], max_param_diff=diff,
                       top1=[straight["top1"], resumed["top1"]], seconds=time.perf_counter() - start)
  print(f"resume: steps {step_a}/{step_b}, max |param difference| {diff:.3g}, top-1 {straight['top1']:.4f} / "
        f"{resumed['top1']:.4f}", flush=True)


def markdown(out):
  lines = [f"Device: {out['device']} x {out['num_devices']}, jax {out['jax']}, {out['dtype']}.", "",
           "| variant | batch | step | clips/s | MFU |", "|---|---:|---:|---:|---:|"]
  for row in out.get("steps", []) + out.get("skeleton_conv", []):
    name = row["variant"] + (f" ({', '.join(row['extra'])})" if row["extra"] else "")
    mfu = f"{row['mfu']:.1%}" if "mfu" in row else "—"
    lines.append(f"| `{name}` | {row['batch']} | {row['step_seconds'] * 1e3:.1f} ms | {row['clips_per_second']:.1f} "
                 f"| {mfu} |")
  if out.get("loop"):
    lines += ["", "| Grain workers | loop clips/s | loop step | bare step | device waits |", "|---:|---:|---:|---:|---:|"]
    for row in out["loop"]:
      lines.append(f"| {row['workers']} | {row['clips_per_second']:.1f} | {row['loop_seconds_per_step'] * 1e3:.0f} ms "
                   f"| {row['bare_step_seconds'] * 1e3:.0f} ms | {row['device_waits']:.0%} |")
  if out.get("resume"):
    r = out["resume"]
    lines += ["", f"Resume: stopped after step {r['stopped_after']} of {r['steps']} and resumed; max |parameter "
              f"difference| {r['max_param_diff']:.3g}; test top-1 {r['top1'][0]:.4f} (straight) / {r['top1'][1]:.4f} "
              "(resumed)."]
  return "\n".join(lines) + "\n"


def main(argv):
  args = parse_args(argv)
  if args.smoke:
    args.batch, args.max_batch, args.loop_batch, args.steps = 2, 4, 4, 1
    args.workers, args.config = "0,1", SMOKE_CONFIG
  root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
  os.chdir(root)  # configs/ and the results are relative to the repository
  import jax  # pylint: disable=import-outside-toplevel
  # Parts (b) and (c) build the same steps again through the trainer: the cache makes those compiles loads.
  jax.config.update("jax_compilation_cache_dir", os.environ.get("JAX_COMPILATION_CACHE_DIR",
                                                                os.path.join(tempfile.gettempdir(), "gpu_suite_cache")))
  from clipmg_jax.data.records import random_shards  # pylint: disable=import-outside-toplevel
  skip = set(filter(None, args.skip.split(",")))
  out = dict(device=jax.devices()[0].device_kind, num_devices=jax.device_count(), jax=jax.__version__,
             backend=jax.default_backend(), dtype="float32" if args.smoke else "bfloat16", smoke=args.smoke)
  start = time.perf_counter()
  if "steps" not in skip:
    part_steps(args, out)
  with tempfile.TemporaryDirectory() as tmp:
    clips = max(4 * args.loop_batch, 32)
    size = dict(height=64, width=96) if args.smoke else {}
    shards = random_shards.write_random_shards(pathlib.Path(tmp) / "shards", splits={"train": clips,
                                                                                    "test": args.loop_batch}, **size)
    if "loop" not in skip:
      part_loop(args, out, shards)
    if "resume" not in skip:
      part_resume(args, out, shards)
  out["seconds"] = time.perf_counter() - start
  with open(args.json, "w") as f:
    json.dump(out, f, indent=1)
  table = markdown(out)
  print(table)
  if args.markdown:
    with open(args.markdown, "w") as f:
      f.write(table)
  print(f"gpu suite: {out['seconds']:.0f} s; wrote {args.json}")


if __name__ == "__main__":
  main(sys.argv[1:])
