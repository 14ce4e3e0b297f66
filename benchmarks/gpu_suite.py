r"""Everything measured on a GPU, in parts that fit one call each (docs/performance.md, "GPU: prepared calls",
gives the calls); --smoke runs every part at tiny sizes on a CPU (CI does, so it cannot rot).

Parts (--parts; default all, in this order):
  steps:V   the paper-size train step (configs/imigue.py, bfloat16) of variant V (full, pose_only, visual_only) at
            batch 32: step time, clips/s and MFU against the device's published dense peak
            (train_step.PUBLISHED_PEAK_TFLOPS);
  max:V     the same at the largest batch that fits (fitted from the compiled step's memory at two batches, then
            run);
  conv      the skeleton branch with XLA's convolutions against the im2col matmul form (`model.skeleton.conv`
            xla / matmul, pose_only);
  loop:W    the real loop (trainer + Grain pipeline) over paper-size random JPEG shards (256 x 456 frames) with W
            Grain workers (`loop`: one part for each of --workers, 0, 4, 8 and 14): clips/s, and the share of the
            loop's time the device waits for the host (1 - bare step / loop step);
  resume    a short paper-size training (random tower) stopped after step 3 as a preemption and resumed, against the
            same run uninterrupted: the largest parameter difference (exact resume: 0) and both runs' test top-1.

After every part the JSON (--json) and the markdown table (--markdown) are written again, the part merged into what
the file holds: a call stopped by its time limit keeps the parts before it, and calls that name the same file add
up. Each part also records its XLA compiles (count and seconds; benchmarks/compile_log.py). The persistent
compilation cache is <repository>/.jax_cache (JAX_COMPILATION_CACHE_DIR overrides), so parts in later calls on the
same machine load the programs that earlier parts compiled. Output paths are made absolute before the suite moves to
the repository root; with $OUT set they default to $OUT/gpu_suite.json and $OUT/gpu_suite.md.

--compile_only compiles every program a part would compile, at its real sizes, and runs no step: a CPU counts and
times a part's compiles at paper size that way (the loop and resume parts compile the trainer's own steps for their
configs rather than training). A device without memory statistics (a CPU) is taken to have --assume_gib.

On the GPU machine grain, ml-collections, av, crc32c and tensorflow-datasets are missing: benchmarks/gpu_wheels.sh
makes a wheelhouse for its Python, installed there offline; scripts/gpu_rehearsal.sh runs the calls as that machine
would, on a CPU.

  python -m benchmarks.gpu_suite --parts steps:full,max:full           # on the GPU, writes $OUT/gpu_suite.json
  python -m benchmarks.gpu_suite --smoke                                # tiny, on CPU
  JAX_PLATFORMS=cpu python -m benchmarks.gpu_suite --compile_only --parts steps:full --json plan.json
  python -m benchmarks.gpu_suite --merge call1.json call2.json --json gpu.json --markdown gpu.md
"""

import argparse
import os
import sys
import tempfile
import time
import traceback

from benchmarks import gpu_suite_parts as parts_lib
from benchmarks import gpu_suite_report as report

# "loop" stands for the loop:W parts, one for each worker count of --workers.
ORDER = ("steps:full", "max:full", "steps:pose_only", "max:pose_only", "conv", "steps:visual_only",
         "max:visual_only", "loop", "resume")
# The smoke run goes through the largest-batch path once.
SMOKE_SKIPS = ("max:pose_only", "max:visual_only")
STARTED = time.time()
ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def parse_args(argv):
  out = os.environ.get("OUT")
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--smoke", action="store_true", help="tiny model, small batches, 0/1 workers (CPU, CI)")
  parser.add_argument("--parts", default="", help=f"comma-separated parts (default all: {','.join(ORDER)})")
  parser.add_argument("--skip", default="", help="parts to leave out, e.g. loop,resume")
  parser.add_argument("--compile_only", action="store_true", help="compile what each part would run; run nothing")
  parser.add_argument("--assume_gib", type=float, default=80.0,
                      help="device memory taken for the largest-batch fit where the device reports none (default 80)")
  parser.add_argument("--config", default="configs/imigue.py", help="config file (default: the paper's)")
  parser.add_argument("--batch", type=int, default=32, help="the fixed batch of steps:V and conv (default 32)")
  parser.add_argument("--max_batch", type=int, default=1024, help="cap of the largest batch tried (default 1024)")
  parser.add_argument("--workers", default="0,4,8,14", help="Grain worker counts of `loop` (default %(default)s)")
  parser.add_argument("--loop_batch", type=int, default=32, help="batch of loop and resume (default 32)")
  parser.add_argument("--steps", type=int, default=5, help="timed steps per figure (default 5)")
  parser.add_argument("--json", default=os.path.join(out, "gpu_suite.json") if out else "gpu_suite.json",
                      help="figures as JSON, merged into what the file holds (default: %(default)s)")
  parser.add_argument("--markdown", default=os.path.join(out, "gpu_suite.md") if out else "",
                      help="also write the table here (default: %(default)s)")
  parser.add_argument("--merge", nargs="+", default=[], metavar="JSON", help="join these files into --json; no run")
  args = parser.parse_args(argv)
  # Resolved before the suite moves to the repository root, where a relative path would land otherwise.
  args.json = os.path.abspath(args.json)
  args.markdown = os.path.abspath(args.markdown) if args.markdown else ""
  return args


def chosen_parts(args):
  names = [p for p in args.parts.split(",") if p] or [p for p in ORDER if not (args.smoke and p in SMOKE_SKIPS)]
  loops = [f"loop:{int(w)}" for w in args.workers.split(",")]
  names = [q for p in names for q in (loops if p == "loop" else [p])]
  unknown = [p for p in names if p not in ORDER and not (p.startswith("loop:") and p[5:].isdigit())]
  if unknown:
    raise SystemExit(f"unknown part(s) {unknown}: choose from {','.join(ORDER)}, loop:W")
  skip = set(filter(None, args.skip.split(",")))
  skip |= set(loops) if "loop" in skip else set()
  return [p for p in names if p not in skip]


def save(args, out):
  merged = report.flatten(report.merge(report.read(args.json), out), ORDER)
  report.write(args.json, merged)
  if args.markdown:
    with open(args.markdown, "w") as f:
      f.write(report.markdown(merged))
  return merged


def main(argv):
  args = parse_args(argv)
  if args.merge:
    out = {}
    for path in args.merge:
      out = report.merge(out, report.read(path))
    print(report.markdown(save(args, out)))
    return 0
  if args.smoke:
    args.batch, args.max_batch, args.loop_batch, args.steps = 2, 4, 4, 1
    args.workers, args.config = "0,1", parts_lib.SMOKE_CONFIG
  names = chosen_parts(args)
  os.chdir(ROOT)  # configs/ are relative to the repository
  import jax  # pylint: disable=import-outside-toplevel
  from benchmarks import compile_log  # pylint: disable=import-outside-toplevel
  jax.config.update("jax_compilation_cache_dir",
                    os.environ.get("JAX_COMPILATION_CACHE_DIR", os.path.join(ROOT, ".jax_cache")))
  log = compile_log.the_log()
  parts_lib.import_all()
  out = dict(device=jax.devices()[0].device_kind, num_devices=jax.device_count(), jax=jax.__version__,
             backend=jax.default_backend(), dtype="float32" if args.smoke else "bfloat16", smoke=args.smoke,
             compile_only=args.compile_only, parts={})
  out["start_seconds"] = round(time.time() - STARTED, 2)  # imports and the device's start, before the first part
  print(f"== started in {out['start_seconds']:.0f} s on {out['device']}, jax {out['jax']}", flush=True)
  failed = []
  with tempfile.TemporaryDirectory() as tmp:
    ctx = parts_lib.Context(args, tmp)
    for name in names:
      print(f"== part {name}", flush=True)
      mark, start = log.mark(), time.perf_counter()
      entry = {}
      try:
        entry["result"] = parts_lib.run_part(name, ctx)
      except Exception:  # pylint: disable=broad-except  (the next parts still run; the exit status says it failed)
        entry["error"] = traceback.format_exc()
        failed.append(name)
        print(entry["error"], file=sys.stderr, flush=True)
      entry.update(seconds=round(time.perf_counter() - start, 2), device=out["device"],
                   finished=time.strftime("%Y-%m-%dT%H:%M:%S"), load_average=[round(x, 2) for x in os.getloadavg()],
                   **log.since(mark))
      out["parts"][name] = entry
      save(args, out)
      print(f"== part {name}: {entry['seconds']:.0f} s, {entry['long_compiles']} compiles of 1 s or more "
            f"({entry['long_compile_seconds']:.0f} s), {entry['cache_hits']} cache hits; wrote {args.json}", flush=True)
  merged = report.read(args.json)
  print(report.markdown(merged))
  print(f"gpu suite: {sum(out['parts'][n]['seconds'] for n in out['parts']):.0f} s for {', '.join(names)}; "
        f"wrote {args.json}" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
