"""The parts of benchmarks/gpu_suite.py: each measures one thing and returns its figures (rows, or a dict). With
--compile_only a part compiles what it would run, at the same sizes, and returns its rows without times."""

import argparse
import pathlib
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


class Context:
  """The suite's arguments and the random shards of loop and resume, written once per process when first needed."""

  def __init__(self, args, tmp):
    self.args, self._tmp, self._shards = args, pathlib.Path(tmp), None

  @property
  def shards(self):
    if self._shards is None:
      from clipmg_jax.data.records import random_shards  # pylint: disable=import-outside-toplevel
      args = self.args
      size = dict(height=64, width=96) if args.smoke else {}
      self._shards = random_shards.write_random_shards(
          self._tmp / "shards", splits={"train": max(4 * args.loop_batch, 32), "test": args.loop_batch}, **size)
    return self._shards


def import_all():
  """Imports every module the parts use: a package missing on the machine stops the suite before its first compile."""
  import importlib  # pylint: disable=import-outside-toplevel
  for name in ("clipmg_jax.data.input_setup", "clipmg_jax.data.records.random_shards", "clipmg_jax.models.flops",
               "clipmg_jax.run.folder", "clipmg_jax.training.aot", "clipmg_jax.training.checkpointing",
               "clipmg_jax.training.trainer"):
    importlib.import_module(name)


def run_part(name, ctx):
  kind, _, variant = name.partition(":")
  if kind == "steps":
    return [measure_step(ctx.args, variant, ctx.args.batch)]
  if kind == "max":
    n, fit = largest_batch(ctx.args, variant)
    return [dict(measure_step(ctx.args, variant, n), memory_fit=fit)]
  if kind == "loop":
    return part_loop(ctx, int(variant))
  return {"conv": part_conv, "resume": part_resume}[kind](ctx)


def config_for(args, variant, batch, *extra):
  dtype = "float32" if args.smoke else "bfloat16"
  ns = argparse.Namespace(config=args.config, variant=variant, batch=batch, dtype=dtype,
                          set=(SMOKE if args.smoke else []) + list(extra))
  return ts.load_config(ns)


def time_step(args, config):
  """Seconds per step of the trainer's train step on random inputs at config.batch_size (None: compile only)."""
  import jax  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  from clipmg_jax.training import sharding as sharding_lib  # pylint: disable=import-outside-toplevel
  step, fresh_state, mesh = ts.build_step(config)
  n = config.batch_size
  host = ts.random_batch(n, config, int(config.data.image_size))
  # The pipeline's whole layout, so that this is the program the trainer runs and aot.compile_train_step compiles
  # (the largest-batch fit's compile at this batch is then a load from the cache).
  host.update(subject=np.zeros(n, np.int32), clip_id=np.arange(n, dtype=np.int32), mask=np.ones(n, bool))
  batch = sharding_lib.place_batch(host, mesh)
  holder = {"state": fresh_state()}
  compiled = step.lower(holder["state"], batch).compile()
  if args.compile_only:
    return None

  def run():
    holder["state"], metrics = compiled(holder["state"], batch)
    jax.block_until_ready(metrics)

  return ts.median_seconds(run, args.steps, 1)


def device_bytes(args):
  """The device's usable memory in bytes; None on a device without statistics (a CPU), unless compiling only."""
  import jax  # pylint: disable=import-outside-toplevel
  stats = jax.devices()[0].memory_stats() or {}
  return stats.get("bytes_limit") or (int(args.assume_gib * 2**30) if args.compile_only else None)


def largest_batch(args, variant):
  """The largest batch predicted to fit (two compiles' memory, linear in the batch; 5 % kept free), or the cap."""
  limit = device_bytes(args)
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
      seconds = time_step(args, config)
      break
    except Exception as e:  # pylint: disable=broad-except  (XLA's out-of-memory is a plain runtime error)
      if "RESOURCE_EXHAUSTED" not in str(e) or config.batch_size <= 8:
        raise
      config.batch_size = config.batch_size // 2 // 8 * 8 or 8
  row = dict(variant=variant, batch=config.batch_size, step_seconds=seconds, clips_per_second=None,
             model_tflops_per_second=None, extra=list(extra))
  if seconds is not None:
    model_flops = flops.train_flops(config.model, int(config.data.image_size)) * config.batch_size
    peak, row["peak"] = ts.published_peak(jax.devices()[0], config.model.dtype)
    row.update(clips_per_second=config.batch_size / seconds, model_tflops_per_second=model_flops / seconds / 1e12)
    if peak:
      row["mfu"] = row["model_tflops_per_second"] / (peak * jax.device_count())
  print(_step_line(row), flush=True)
  return row


def _step_line(row):
  name = f"{row['variant']} batch {row['batch']} {' '.join(row['extra'])}"
  if row["step_seconds"] is None:
    return f"{name}: compiled"
  mfu = f", MFU {row['mfu']:.1%}" if "mfu" in row else ""
  return f"{name}: {row['step_seconds'] * 1e3:.1f} ms, {row['clips_per_second']:.1f} clips/s{mfu}"


def part_conv(ctx):
  args = ctx.args
  return [measure_step(args, "pose_only", args.batch, f"model.skeleton.conv={impl}") for impl in ("xla", "matmul")]


def loop_config(args, shards, workdir_steps, **fields):
  from clipmg_jax.training import defaults  # pylint: disable=import-outside-toplevel
  config = config_for(args, "full", args.loop_batch)
  overrides = {"data.shards_dir": str(shards), "data.synthetic": None, "init.vit_checkpoint": "",
               "init.allow_random_vit": True, "eval_every_steps": 0, "total_steps": workdir_steps,
               "eval_batch_size": args.loop_batch, "data.validation.num_subjects": 1, **fields}
  return defaults.override(config, overrides)


def compile_trainer_steps(config, workdir, evaluate):
  """What the trainer compiles for `config` (its Setup over the shards: the init, the train step, the eval step when
  it evaluates), compiled without training."""
  from clipmg_jax.data import input_setup  # pylint: disable=import-outside-toplevel
  from clipmg_jax.training import aot  # pylint: disable=import-outside-toplevel
  from clipmg_jax.training import setup as setup_lib  # pylint: disable=import-outside-toplevel
  setup = setup_lib.Setup(config, input_setup.make_data_source(config, workdir))
  setup.fresh_state()
  aot.compile_train_step(setup, int(config.batch_size))
  if evaluate:
    aot.compile_eval_step(setup, int(config.eval_batch_size))


def part_loop(ctx, workers):
  """The loop's clips/s with `workers` Grain workers against the bare step (train_step.loop_timing)."""
  args = ctx.args
  bare = time_step(args, config_for(args, "full", args.loop_batch))
  if args.compile_only:  # the loop's own config (train_step.loop_timing): 2 L + 1 steps, no evaluation
    with tempfile.TemporaryDirectory() as tmp:
      compile_trainer_steps(loop_config(args, ctx.shards, 2 * max(args.steps, 1) + 1,
                                        **{"data.worker_count": workers}), tmp, evaluate=False)
    return [dict(workers=workers, clips_per_second=None)]
  ns = argparse.Namespace(loop_steps=args.steps, shards_dir=str(ctx.shards), batch=args.loop_batch)
  config = config_for(args, "full", args.loop_batch, f"data.worker_count={workers}")
  timing = ts.loop_timing(config, ns, bare)
  row = dict(workers=workers, clips_per_second=args.loop_batch / timing["loop_seconds_per_step"],
             loop_seconds_per_step=timing["loop_seconds_per_step"], bare_step_seconds=bare,
             device_waits=max(0.0, 1 - bare / timing["loop_seconds_per_step"]))
  print(f"loop, {workers} workers: {row['clips_per_second']:.1f} clips/s, device waits {row['device_waits']:.0%}",
        flush=True)
  return [row]


def part_resume(ctx):
  """Six steps straight, against three steps, a stop (as a preemption) and a resume: same parameters, same top-1."""
  import jax  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  from clipmg_jax.run.folder import RunFolder  # pylint: disable=import-outside-toplevel
  from clipmg_jax.training import checkpointing  # pylint: disable=import-outside-toplevel
  from clipmg_jax.data import input_setup  # pylint: disable=import-outside-toplevel
  from clipmg_jax.training import trainer  # pylint: disable=import-outside-toplevel
  args = ctx.args

  def config_of(**fields):
    return loop_config(args, ctx.shards, 6, **{"checkpoint.every_steps": 2, "data.worker_count": 0, **fields})

  def run(workdir, **fields):
    config = config_of(**fields)
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
    if args.compile_only:
      # The straight run, the stopped one (no final evaluation) and the resumed one: three set-ups.
      for name, evaluate in (("straight", True), ("stopped", False), ("resumed", True)):
        compile_trainer_steps(config_of(), tmp / name, evaluate)
      return dict(steps=6, stopped_after=3, max_param_diff=None, seconds=time.perf_counter() - start)
    straight = run(tmp / "straight")
    run(tmp / "resumed", stop_after_step=3)
    resumed = run(tmp / "resumed")
    (step_a, a), (step_b, b) = params(tmp / "straight"), params(tmp / "resumed")
    diff = max(float(np.max(np.abs(np.asarray(x, np.float32) - np.asarray(y, np.float32))))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
  result = dict(steps=6, stopped_after=3, final_steps=[step_a, step_b], max_param_diff=diff,
                top1=[straight["top1"], resumed["top1"]], seconds=time.perf_counter() - start)
  print(f"resume: steps {step_a}/{step_b}, max |param difference| {diff:.3g}, top-1 {straight['top1']:.4f} / "
        f"{resumed['top1']:.4f}", flush=True)
  return result
