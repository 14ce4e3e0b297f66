r"""The real CLIP-MG train step at paper scale: step time, throughput, FLOP rate, memory, and where the time goes.

Builds the train step exactly as training does (clipmg_jax.training.step.make_train_step: optimizer with frozen
parameters, uint8 frames normalised and heatmaps rendered inside the step, donated state, one jit over a mesh of
all devices) for a config (default configs/imigue.py, the paper's sizes) and times it on random inputs.

Figures (printed, and written as JSON with --json):
- model FLOPs per clip: forward + backward FLOPs of the model *as defined* (dense heatmaps into XLA convolutions),
  counted by XLA's cost analysis at batch 1 — the fixed yardstick: a formulation that does more arithmetic gets no
  credit for it, one that does less gets the credit; and the compiled step's own count (what actually runs).
- step time: median of --steps timed steps after --warmup untimed ones; clips/s; model FLOP/s.
- the rate as a fraction of a peak: on CPU the best square fp32 matmul (--matmul_sizes) measured in the same
  process; on accelerators the device's published dense peak for the dtype (MFU; --peak_tflops overrides).
- memory: the compiled step's memory analysis (arguments + outputs - aliased + temporaries).
- breakdown (--breakdown): frozen ViT prefix forward, trainable ViT suffix forward + backward, heatmaps + 3D-CNN
  forward + backward, each jitted alone on the step's shapes; the rest of the step (fusion, cross-attention
  pooling, head, loss, optimizer update) is the remainder.
- --memory_only: compile (no run) at two batch sizes and report bytes per clip and the largest batch that fits
  80 GB and 141 GB (in the implementation the accelerators use, conv="xla").
- --loop: the real training loop (clipmg_jax.training.trainer) over real shards (random JPEG shards written to a
  temporary folder, or --shards_dir) against the bare step, same config: what the input pipeline and the loop's
  host work cost per step.

  python -m benchmarks.train_step                                  # full model, batch 2, float32
  python -m benchmarks.train_step --config configs/imigue.py:pose_only --breakdown   # (or --variant pose_only)
  python -m benchmarks.train_step --dtype bfloat16 --batch 128 --json out.json     # on a GPU
  python -m benchmarks.train_step --memory_only --dtype bfloat16
  python -m benchmarks.train_step --set model.skeleton.stem=heatmaps --set model.skeleton.conv=xla   # reference form
"""

import argparse
import json
import statistics
import sys
import tempfile
import time

# Published dense peak TFLOP/s per device for bfloat16 (and float32 where it differs), for MFU.
PUBLISHED_PEAK_TFLOPS = {
    "H200": {"bfloat16": 989.0, "float32": 67.0},
    "H100": {"bfloat16": 989.0, "float32": 67.0},  # SXM; PCIe: 756 / 51
    "A100": {"bfloat16": 312.0, "float32": 19.5},
    "L4": {"bfloat16": 121.0, "float32": 30.3},
    "TPU v4": {"bfloat16": 275.0},
    "TPU v5 lite": {"bfloat16": 197.0},
    "TPU v5e": {"bfloat16": 197.0},
    "TPU v5p": {"bfloat16": 459.0},
    "TPU v6 lite": {"bfloat16": 918.0},
}


def parse_args(argv):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--config", default="configs/imigue.py", help="config file[:variant] (default: the paper's)")
  parser.add_argument("--variant", default=None, help="model variant (full, pose_only, visual_only, ...)")
  parser.add_argument("--batch", type=int, default=2, help="global batch (default 2)")
  parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="compute dtype")
  parser.add_argument("--steps", type=int, default=5, help="timed steps (median reported; default 5)")
  parser.add_argument("--warmup", type=int, default=2, help="untimed steps after compilation (default 2)")
  parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="config override, e.g. model.skeleton.conv=xla (value: a Python literal or a string)")
  parser.add_argument("--breakdown", action="store_true", help="also time the step's parts")
  parser.add_argument("--memory_only", action="store_true",
                      help="compile only: memory per clip and the largest batch for 80 GB and 141 GB")
  parser.add_argument("--loop", action="store_true", help="also time the real training loop over shards")
  parser.add_argument("--loop_steps", type=int, default=8, help="steps of the --loop run (default 8)")
  parser.add_argument("--shards_dir", default="", help="--loop: converted shards (default: random ones)")
  parser.add_argument("--matmul_sizes", default="1024,2048,4096", help="CPU peak: square matmul sides to try")
  parser.add_argument("--peak_tflops", type=float, default=0.0, help="accelerator peak to use for MFU")
  parser.add_argument("--roofline", action="store_true",
                      help="also the compiled step's roofline (benchmarks/roofline.py) against the measured step; on a "
                      "CPU the peaks are measured here (best matmul, best streaming add)")
  parser.add_argument("--peak_gbps", type=float, default=0.0, help="accelerator memory bandwidth for --roofline")
  parser.add_argument("--json", default="", help="write the figures to this JSON file")
  return parser.parse_args(argv)


def load_config(args):
  from clipmg_jax.training import defaults  # pylint: disable=import-outside-toplevel
  from clipmg_jax.training import runs  # pylint: disable=import-outside-toplevel
  overrides = {"model.dtype": args.dtype, "batch_size": args.batch, **defaults.parse_overrides(args.set)}
  if args.variant:
    overrides["model.variant"] = args.variant
  return runs.load_config(args.config, overrides)


def median_seconds(fn, steps, warmup):
  """Median wall seconds of fn() (which must block) over `steps` calls after `warmup` untimed ones."""
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def matmul_peak_flops(sizes):
  """Best fp32 FLOP/s of square matmuls (jitted, this process): the CPU's reachable peak."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  best = 0.0
  for n in sizes:
    a = jnp.ones((n, n), jnp.float32)
    mm = jax.jit(lambda a: a @ a)
    seconds = median_seconds(lambda: mm(a).block_until_ready(), 3, 1)
    best = max(best, 2 * n**3 / seconds)
  return best


def memory_bandwidth(num_bytes=2**28, repeats=5):
  """Best bytes/s of a jitted elementwise add over a float32 array of `num_bytes` (read once, written once): the
  CPU's reachable memory bandwidth, the memory side of its roofline."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  x = jnp.zeros((num_bytes // 4,), jnp.float32)
  add = jax.jit(lambda x: x + 1.0)
  add(x).block_until_ready()
  best = min(median_seconds(lambda: add(x).block_until_ready(), 1, 0) for _ in range(repeats))
  return 2 * num_bytes / best


def published_peak(device, dtype):
  kind = device.device_kind
  for name, peaks in PUBLISHED_PEAK_TFLOPS.items():
    if name.lower() in kind.lower():
      return peaks.get(dtype), f"{name} published dense {dtype} peak"
  return None, f"unknown device {kind!r}: pass --peak_tflops"


def random_batch(batch, config, image_size, seed=0):
  """Frames uint8 and keypoints in the frame (20% missing joints), as the pipeline delivers them."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(seed)
  m = config.model
  xy = rng.uniform(0, image_size - 1, (batch, m.num_pose_frames, m.num_joints, 2))
  conf = rng.uniform(0.2, 1.0, (batch, m.num_pose_frames, m.num_joints, 1)) * (rng.random(xy.shape[:3] + (1,)) > 0.2)
  return dict(
      frames=rng.integers(0, 256, (batch, m.num_frames, image_size, image_size, 3), dtype=np.uint8),
      keypoints=np.concatenate([xy, conf], -1).astype(np.float32),
      label=rng.integers(0, m.num_classes, (batch,)).astype(np.int32))


def build_step(config):
  """(train_step jitted, fresh state, mesh) for the config: the trainer's own (setup.Setup, via aot.make_setup)."""
  from clipmg_jax.training import aot  # pylint: disable=import-outside-toplevel
  setup = aot.make_setup(config)
  return setup.train_step, setup.fresh_state, setup.mesh


def compile_step(config, batch):
  from clipmg_jax.training import aot  # pylint: disable=import-outside-toplevel
  config = config.copy_and_resolve_references()
  config.batch_size = config.eval_batch_size = batch
  return aot.compile_train_step(aot.make_setup(config), batch)


def memory_report(config, batches=(2, 4)):
  """Bytes per clip and fixed bytes from two compiled batch sizes; the largest batches for 80 / 141 GB."""
  totals = [compile_step(config, b).memory["total"] for b in batches]
  per_clip = (totals[1] - totals[0]) / (batches[1] - batches[0])
  fixed = totals[0] - per_clip * batches[0]
  fits = {f"{gb} GB": int((gb * 1e9 - fixed) // per_clip) for gb in (80, 141)}
  return dict(batches=list(batches), bytes=totals, bytes_per_clip=per_clip, fixed_bytes=fixed,
              largest_batch=fits)


def breakdown(config, batch):
  """Seconds of the step's main parts, each jitted alone on the step's shapes."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from clipmg_jax.models import clipmg_config  # pylint: disable=import-outside-toplevel
  from clipmg_jax.models import vit as vit_lib  # pylint: disable=import-outside-toplevel
  m = config.model
  image_size = int(config.data.image_size)
  host = random_batch(batch, config, image_size)
  parts = {}
  block = lambda x: jax.block_until_ready(x)
  if m.variant != "pose_only":
    fields = clipmg_config.vit_fields(m)
    tower = vit_lib.VisionTransformer(**fields, dtype=clipmg_config.compute_dtype(m))
    frozen = fields["layers"] - m.trainable_blocks
    images = jnp.asarray(host["frames"].reshape(-1, image_size, image_size, 3), jnp.float32)
    params = jax.jit(tower.init)(jax.random.key(0), images[:1])["params"]
    prefix = jax.jit(lambda p, x: tower.apply({"params": p}, x, method=lambda t, x: t.run_blocks(t.embed(x), 0, frozen)))
    tokens = prefix(params, images)
    parts["frozen ViT prefix forward"] = median_seconds(lambda: block(prefix(params, images)), 3, 1)

    def suffix_loss(p, x):
      out = tower.apply({"params": p}, x, method=lambda t, x: t.ln_post(t.run_blocks(x, frozen, t.layers)))
      return jnp.sum(out.astype(jnp.float32) ** 2)

    suffix = jax.jit(jax.grad(suffix_loss))
    parts["trainable ViT suffix forward + backward"] = median_seconds(lambda: block(suffix(params, tokens)), 3, 1)
  if m.variant != "visual_only":
    encoder = clipmg_config.skeleton_encoder(m)
    keypoints = jnp.asarray(host["keypoints"])
    frame = (image_size, image_size)
    eparams = jax.jit(lambda k: encoder.init(jax.random.key(0), k, frame))(keypoints)["params"]
    loss = lambda p, k: jnp.sum(jnp.sin(encoder.apply({"params": p}, k, frame).astype(jnp.float32)))
    grad = jax.jit(jax.grad(loss))
    parts["heatmaps + 3D-CNN forward + backward"] = median_seconds(lambda: block(grad(eparams, keypoints)), 3, 1)
  return parts


def loop_timing(config, args, step_seconds):
  """Seconds per step of the real loop (trainer + Grain pipeline over shards) against the bare step.

  The loop runs 2 L steps (L = --loop_steps) logging every L: the second window's clips/s (written by the loop to
  metrics.jsonl) times steps without compilation. It stops after step 2 L, before any final evaluation.
  """
  import pathlib  # pylint: disable=import-outside-toplevel
  from clipmg_jax.data.records import random_shards  # pylint: disable=import-outside-toplevel
  from clipmg_jax.run.folder import RunFolder  # pylint: disable=import-outside-toplevel
  from clipmg_jax.data import input_setup  # pylint: disable=import-outside-toplevel
  from clipmg_jax.training import trainer  # pylint: disable=import-outside-toplevel
  window = max(args.loop_steps, 1)
  with tempfile.TemporaryDirectory() as tmp:
    shards = args.shards_dir
    if not shards:
      clips = max(2 * args.batch, 32)
      shards = str(random_shards.write_random_shards(pathlib.Path(tmp) / "shards",
                                                     splits={"train": clips, "test": args.batch}))
    config = config.copy_and_resolve_references()
    config.data.shards_dir = shards
    config.data.synthetic = None
    config.total_steps = 2 * window + 1
    config.stop_after_step = 2 * window
    config.eval_every_steps = 0
    config.checkpoint.every_steps = 0
    config.log_every_steps = window
    config.init.vit_checkpoint = ""
    if "allow_random_vit" in config.init:
      config.init.allow_random_vit = True  # timing only: the weights do not matter
    workdir = pathlib.Path(tmp) / "run"
    data = input_setup.make_data_source(config, workdir)
    trainer.train_and_evaluate(config, workdir, data)
    lines = RunFolder(workdir).read_metrics("train")
  clips_per_second = lines[-1]["clips_per_second"]
  per_step = args.batch / clips_per_second
  return dict(loop_seconds_per_step=per_step, bare_step_seconds=step_seconds, loop_over_step=per_step / step_seconds,
              steps_timed=window, shards=shards if args.shards_dir else "random JPEG shards (256 x 456 frames)",
              data_workers=int(config.data.get("worker_count", 0)))


def main(argv):
  args = parse_args(argv)
  import jax  # pylint: disable=import-outside-toplevel
  from clipmg_jax.models import flops  # pylint: disable=import-outside-toplevel
  from clipmg_jax.training import aot  # pylint: disable=import-outside-toplevel
  from clipmg_jax.training import sharding as sharding_lib  # pylint: disable=import-outside-toplevel
  config = load_config(args)
  m = config.model
  image_size = int(config.data.image_size)
  device = jax.devices()[0]
  out = dict(config=args.config, variant=m.variant, batch=args.batch, dtype=args.dtype, backend=jax.default_backend(),
             device=device.device_kind, num_devices=jax.device_count(),
             skeleton_stem=m.skeleton.get("stem"), skeleton_conv=m.skeleton.get("conv"))
  print(f"{args.config} variant={m.variant} batch={args.batch} dtype={args.dtype} on {jax.device_count()} x "
        f"{device.device_kind} ({jax.default_backend()}); skeleton stem={out['skeleton_stem']} "
        f"conv={out['skeleton_conv']}")

  if args.memory_only:
    accel = config.copy_and_resolve_references()
    accel.model.skeleton.conv = "xla"
    report = memory_report(accel)
    out["memory"] = report
    if report:
      print(f"memory: {report['bytes_per_clip'] / 2**20:.0f} MiB per clip + {report['fixed_bytes'] / 2**30:.2f} GiB "
            f"fixed; largest batch: {report['largest_batch']}")
    _write(args, out)
    return

  model_flops = flops.train_flops(m, image_size)
  out["model_gflops_per_clip"] = model_flops / 1e9
  step, fresh_state, mesh = build_step(config)
  batch = sharding_lib.place_batch(random_batch(args.batch, config, image_size), mesh)
  state = fresh_state()
  start = time.perf_counter()
  compiled = step.lower(state, batch).compile()
  out["compile_seconds"] = time.perf_counter() - start
  out["compiled_step_gflops_per_clip"] = aot.flops_of(compiled) / args.batch / 1e9
  out["step_memory_bytes"] = aot.memory_of(compiled)["total"]

  holder = {"state": state}

  def run():
    holder["state"], metrics = compiled(holder["state"], batch)
    jax.block_until_ready(metrics)

  seconds = median_seconds(run, args.steps, args.warmup)
  out["step_seconds"] = seconds
  out["clips_per_second"] = args.batch / seconds
  out["model_tflops_per_second"] = model_flops * args.batch / seconds / 1e12
  if jax.default_backend() == "cpu":
    peak = matmul_peak_flops([int(s) for s in args.matmul_sizes.split(",")])
    out["peak_tflops"], out["peak"] = peak / 1e12, "best square fp32 matmul, same process"
  else:
    peak_tflops, name = (args.peak_tflops, "given") if args.peak_tflops else published_peak(device, args.dtype)
    out["peak_tflops"], out["peak"] = peak_tflops, name
    if peak_tflops:
      peak_tflops *= jax.device_count()
      out["peak_tflops"] = peak_tflops
  if out["peak_tflops"]:
    out["fraction_of_peak"] = out["model_tflops_per_second"] / out["peak_tflops"]
  if args.roofline:
    out["roofline"] = roofline_check(args, compiled, out)

  print(f"model FLOPs per clip (fwd+bwd, as defined): {out['model_gflops_per_clip']:.1f} GFLOP; "
        f"compiled step: {out['compiled_step_gflops_per_clip']:.1f} GFLOP per clip")
  print(f"step: {seconds:.3f} s (median of {args.steps}), {out['clips_per_second']:.2f} clips/s, "
        f"compile {out['compile_seconds']:.0f} s")
  print(f"model FLOP/s: {out['model_tflops_per_second'] * 1e3:.1f} GFLOP/s; peak ({out['peak']}): "
        f"{(out['peak_tflops'] or float('nan')) * 1e3:.1f} GFLOP/s -> {out.get('fraction_of_peak', float('nan')):.1%}")
  if out["step_memory_bytes"] is not None:
    print(f"compiled step memory: {out['step_memory_bytes'] / 2**30:.2f} GiB "
          f"({out['step_memory_bytes'] / args.batch / 2**20:.0f} MiB per clip incl. the state)")
  del holder

  if args.breakdown:
    parts = breakdown(config, args.batch)
    # Parts jitted alone fuse and schedule differently from the whole step, so the remainder is approximate.
    parts["rest: fusion, pooling, head, loss, optimizer (step - parts)"] = seconds - sum(parts.values())
    out["breakdown_seconds"] = parts
    for name, value in parts.items():
      print(f"  {name:60s} {value:8.3f} s  {value / seconds:6.1%}")
  if args.loop:
    out["loop"] = loop_timing(config, args, seconds)
    print(f"loop: {out['loop']['loop_seconds_per_step']:.3f} s per step vs bare step {seconds:.3f} s "
          f"({out['loop']['loop_over_step']:.2f}x)")
  _write(args, out)


def roofline_check(args, compiled, out):
  """The compiled step's roofline on this device against its measured time: the bound must not exceed it."""
  import jax  # pylint: disable=import-outside-toplevel
  from benchmarks import roofline  # pylint: disable=import-outside-toplevel
  from clipmg_jax.training import aot  # pylint: disable=import-outside-toplevel
  cost = aot.cost_of(compiled)
  if jax.default_backend() == "cpu":
    bandwidth, source = memory_bandwidth(), "best streaming add, same process"
  else:
    bandwidth, source = args.peak_gbps * 1e9, "given"
  peak = (out["peak_tflops"] or float("nan")) * 1e12
  b = roofline.bound(cost["flops"], cost["bytes accessed"], peak, bandwidth)
  report = dict(flops=cost["flops"], bytes_accessed=cost["bytes accessed"], peak_flops=peak,
                bytes_per_second=bandwidth, bandwidth_source=source, compute_seconds=b.compute_seconds,
                memory_seconds=b.memory_seconds, bound_seconds=b.seconds, binds=b.binds,
                measured_seconds=out["step_seconds"], measured_over_bound=out["step_seconds"] / b.seconds)
  print(f"roofline: {cost['flops'] / 1e9:.0f} GFLOP at {peak / 1e9:.0f} GFLOP/s = {b.compute_seconds:.3f} s; "
        f"{cost['bytes accessed'] / 1e9:.1f} GB at {bandwidth / 1e9:.1f} GB/s = {b.memory_seconds:.3f} s; "
        f"{b.binds} binds: step >= {b.seconds:.3f} s; measured {out['step_seconds']:.3f} s "
        f"({report['measured_over_bound']:.2f}x the bound)")
  return report


def _write(args, out):
  if args.json:
    with open(args.json, "w") as f:
      json.dump(out, f, indent=1)
    print(f"wrote {args.json}")


if __name__ == "__main__":
  main(sys.argv[1:])
