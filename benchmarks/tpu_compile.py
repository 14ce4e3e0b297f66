r"""Compiles the real train and eval steps for TPU slices with the TPU compiler, on any machine (no TPU needed).

For each topology and model variant, the trainer's own steps (clipmg_jax.training.aot: setup.Setup over a mesh of
the slice's abstract devices) are compiled at paper size (default configs/imigue.py, bfloat16, skeleton.conv="xla"
as on accelerators) and the compiled programs' memory and cost analyses are read: nothing runs. Reported per chip:
memory (arguments, outputs, aliased = outputs written into the donated state, temporaries), compiled TFLOP per
step, compile seconds; and from two per-device batches (--per_device_batches) on each single-host topology, bytes
per clip and fixed bytes, hence the largest batch that fits the chip's HBM, without and with FSDP (--fsdp_min_size).
The fit is linear: batches far below the largest overstate the bytes per clip (compile at the batch you plan to
run to check it, e.g. --per_device_batches 80,84). Multi-host
topologies are compiled once per variant, at the smaller batch: that checks the mesh, the state shardings and the
batch layout of a pod slice, and that its per-chip memory is that of a single host of the same generation.

HBM per chip (GiB): v4 32, v5e 16, v5p 95, v6e 32 (clipmg_jax.training.aot.HBM_GIB_PER_CHIP). TPU v4 topologies
describe one device per TensorCore (2 per chip, sharing the chip's HBM): per-chip figures there are two devices'.

Needs libtpu: pip install -e ".[tpu]" (the version that matches the jax pin). JAX_PLATFORMS=cpu keeps JAX from
looking for a local TPU. Results are appended to --json as they come, and a rerun with the same --json skips what
is there, so an interrupted report continues.

  JAX_PLATFORMS=cpu python -m benchmarks.tpu_compile --json tpu.json --markdown tpu.md
  JAX_PLATFORMS=cpu python -m benchmarks.tpu_compile --per_device_batches 2,4 --json tpu.json   # the committed table
  JAX_PLATFORMS=cpu python -m benchmarks.tpu_compile --topologies v5e:2x2 --variants full --per_device_batches 4,8
  JAX_PLATFORMS=cpu python -m benchmarks.tpu_compile --topologies v5e:2x2 --variants full --dtype float32 --json f32.json
"""

import argparse
import json
import os
import sys
import time

SINGLE_HOST = ("v4:2x2x1", "v5e:2x2", "v5p:2x2x1", "v6e:2x2")
MULTI_HOST = ("v5e:4x4", "v4:2x2x2")
GIB = 2**30


def parse_args(argv):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--config", default="configs/imigue.py", help="config file (default: the paper's)")
  parser.add_argument("--topologies", default=",".join(SINGLE_HOST + MULTI_HOST),
                      help="TPU slices, e.g. v5e:2x2,v4:2x2x2 (default: %(default)s)")
  parser.add_argument("--variants", default="full,pose_only,visual_only", help="model variants (default: %(default)s)")
  parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"], help="compute dtype")
  # At 2 and 4 clips per device the compiler's temporaries grow faster than at tens of clips, so a fit there
  # overstates the memory per clip about twofold (docs/performance.md): fit on larger batches.
  parser.add_argument("--per_device_batches", default="8,16",
                      help="two clips-per-device batches for the per-clip memory fit (default: %(default)s)")
  parser.add_argument("--fsdp_min_size", type=int, default=1 << 20,
                      help="FSDP threshold for the sharded-state rows (0: skip them; default 2^20 elements)")
  parser.add_argument("--no_eval", action="store_true", help="skip the eval step")
  parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
  parser.add_argument("--json", default="tpu_compile.json", help="results, appended as they come (default: %(default)s)")
  parser.add_argument("--markdown", default="", help="also write the summary table here")
  parser.add_argument("--report_only", action="store_true",
                      help="only rebuild the summary and the table from --json (compiles nothing, needs no libtpu)")
  return parser.parse_args(argv)


def load_config(path, variant, dtype, overrides):
  from clipmg_jax.training import defaults  # pylint: disable=import-outside-toplevel
  from clipmg_jax.training import runs  # pylint: disable=import-outside-toplevel
  # skeleton.conv "xla" is what "auto" picks on TPU.
  return runs.load_config(f"{path}:{variant}", {"model.dtype": dtype, "model.skeleton.conv": "xla",
                                                **defaults.parse_overrides(overrides)})


def compile_one(config, topology, step, per_device_batch, fsdp_min_size):
  """One compile: a row of per-device memory, FLOPs and seconds."""
  from clipmg_jax.training import aot  # pylint: disable=import-outside-toplevel
  devices = aot.topology_devices(topology)
  batch = per_device_batch * len(devices)
  config = config.copy_and_resolve_references()
  config.batch_size = config.eval_batch_size = batch
  config.fsdp_min_size = fsdp_min_size
  setup = aot.make_setup(config, devices)
  compiled = (aot.compile_train_step if step == "train" else aot.compile_eval_step)(setup, batch)
  return dict(devices=len(devices), processes=len({d.process_index for d in devices}),
              devices_per_chip=aot.devices_per_chip(devices), device_kind=devices[0].device_kind,
              global_batch=batch, memory=compiled.memory, tflops_per_device=compiled.flops / 1e12,
              compile_seconds=compiled.seconds, cost=compiled.cost)


def key_of(topology, variant, step, per_device_batch, fsdp_min_size):
  return f"{topology}|{variant}|{step}|{per_device_batch}|{fsdp_min_size}"


def plan(args):
  """The compiles of the report, in order: (topology, variant, step, per-device batch, fsdp_min_size)."""
  small, large = (int(b) for b in args.per_device_batches.split(","))
  jobs = []
  for topology in args.topologies.split(","):
    multi = topology in MULTI_HOST or topology.count("x") and _hosts_hint(topology)
    for variant in args.variants.split(","):
      jobs.append((topology, variant, "train", small, 0))
      if not multi:
        jobs.append((topology, variant, "train", large, 0))
        if args.fsdp_min_size:
          jobs.append((topology, variant, "train", small, args.fsdp_min_size))
      if not args.no_eval:
        jobs.append((topology, variant, "eval", small, 0))
  return jobs


def _hosts_hint(topology):
  """True when this libtpu describes the slice with more than one process (a multi-host slice)."""
  from clipmg_jax.training import aot  # pylint: disable=import-outside-toplevel
  return len({d.process_index for d in aot.topology_devices(topology)}) > 1


def summarize(results, args):
  """Per (topology, variant): per-chip memory, per clip, fixed, largest batches; as rows for the table."""
  from clipmg_jax.training import aot  # pylint: disable=import-outside-toplevel
  small, large = (int(b) for b in args.per_device_batches.split(","))
  rows = []
  for topology in args.topologies.split(","):
    for variant in args.variants.split(","):
      a = results.get(key_of(topology, variant, "train", small, 0))
      if a is None:
        continue
      b = results.get(key_of(topology, variant, "train", large, 0))
      f = results.get(key_of(topology, variant, "train", small, args.fsdp_min_size))
      e = results.get(key_of(topology, variant, "eval", small, 0))
      chip = a["devices_per_chip"]
      hbm = aot.HBM_GIB_PER_CHIP.get(a["device_kind"])
      row = dict(topology=topology, variant=variant, device_kind=a["device_kind"], chips=a["devices"] // chip,
                 hosts=a["processes"], hbm_gib=hbm, clips_per_chip=small * chip,
                 chip_memory_gib=a["memory"]["total"] * chip / GIB,
                 chip_arguments_gib=a["memory"]["arguments"] * chip / GIB,
                 chip_temporaries_gib=a["memory"]["temporaries"] * chip / GIB,
                 chip_outputs_gib=a["memory"]["outputs"] * chip / GIB,
                 chip_aliased_gib=a["memory"]["aliased"] * chip / GIB,
                 tflop_per_chip_step=a["tflops_per_device"] * chip,
                 gflop_per_clip=a["tflops_per_device"] * 1e3 / small,
                 # Each compile's own seconds (train at the two batches, FSDP, eval), not their sum.
                 compile_seconds={name: r["compile_seconds"] for name, r in
                                  (("train", a), ("train_large", b), ("train_fsdp", f), ("eval", e)) if r})
      per_clip = None
      if b is not None:
        per_clip = (b["memory"]["total"] - a["memory"]["total"]) / (large - small)  # per device
      elif (twin := _single_host_twin(results, args, a["device_kind"], variant)) is not None:
        # A multi-host slice is compiled at one batch: bytes per clip are its generation's single-host slope.
        per_clip = twin
        row["per_clip_from"] = "single-host slice of the same generation"
      if per_clip is not None:
        fixed = a["memory"]["total"] - per_clip * small
        row.update(mib_per_clip=per_clip / 2**20, fixed_gib=fixed * chip / GIB)
        if hbm:
          row["largest_clips_per_chip"] = int((hbm * GIB / chip - fixed) // per_clip) * chip
          row["largest_global_batch"] = row["largest_clips_per_chip"] * row["chips"]
          if f is not None:
            fixed_fsdp = f["memory"]["total"] - per_clip * small
            row["fsdp_fixed_gib"] = fixed_fsdp * chip / GIB
            row["fsdp_largest_clips_per_chip"] = int((hbm * GIB / chip - fixed_fsdp) // per_clip) * chip
      if e is not None:
        row["eval_chip_memory_gib"] = e["memory"]["total"] * chip / GIB
      if hbm:
        row["fits"] = row["chip_memory_gib"] <= hbm
      rows.append(row)
  return rows


def _single_host_twin(results, args, device_kind, variant):
  """Per-device bytes per clip of a two-batch single-host compile of the same device kind and variant, or None."""
  small, large = (int(b) for b in args.per_device_batches.split(","))
  for key, a in results.items():
    topology, v, step, per_device, fsdp = key.split("|")
    if (v, step, int(per_device), int(fsdp)) == (variant, "train", small, 0) and a["device_kind"] == device_kind:
      b = results.get(key_of(topology, variant, "train", large, 0))
      if b is not None:
        return (b["memory"]["total"] - a["memory"]["total"]) / (large - small)
  return None


def markdown(rows, args):
  """The summary table as markdown."""
  lines = [f"| slice | chips (hosts) | variant | per chip at {int(args.per_device_batches.split(',')[0])} clip(s)/device: "
           "total (args / temp / out − aliased) GiB | MiB per clip | fixed GiB | largest clips per chip (HBM) | "
           "with FSDP | largest global batch | TFLOP per chip per step | compile s: train (larger batch, FSDP, eval) |",
           "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
  for r in rows:
    fmt = lambda k, spec: format(r[k], spec) if k in r else "—"
    lines.append(
        f"| {r['topology']} | {r['chips']} ({r['hosts']}) | `{r['variant']}` | {r['chip_memory_gib']:.2f} "
        f"({r['chip_arguments_gib']:.2f} / {r['chip_temporaries_gib']:.2f} / {r['chip_outputs_gib']:.2f} − "
        f"{r['chip_aliased_gib']:.2f}) | {fmt('mib_per_clip', '.0f')}{'*' if 'per_clip_from' in r else ''} | "
        f"{fmt('fixed_gib', '.2f')} | "
        f"{fmt('largest_clips_per_chip', 'd')} ({r['hbm_gib']} GiB) | {fmt('fsdp_largest_clips_per_chip', 'd')} | "
        f"{fmt('largest_global_batch', 'd')} | {r['tflop_per_chip_step']:.2f} | {_compile_times(r['compile_seconds'])} |")
  if any("per_clip_from" in r for r in rows):
    lines.append("\n\\* compiled at one batch; bytes per clip from the single-host slice of the same generation.")
  return "\n".join(lines) + "\n"


def _compile_times(seconds):
  """"58 (105, 73, 17)": the train step's compile, then the others' in the column's order; — for one not made."""
  others = [seconds.get(k) for k in ("train_large", "train_fsdp", "eval")]
  if not any(others):
    return f"{seconds['train']:.0f}"
  return f"{seconds['train']:.0f} ({', '.join('—' if s is None else f'{s:.0f}' for s in others)})"


def main(argv):
  args = parse_args(argv)
  import tqdm  # pylint: disable=import-outside-toplevel
  from clipmg_jax.training import aot  # pylint: disable=import-outside-toplevel
  if not args.report_only:
    try:
      aot.topology_devices(args.topologies.split(",")[0])
    except (aot.NoTpuCompilerError, ValueError) as e:
      sys.exit(f"error: {e}")
  results = {}
  if os.path.exists(args.json):
    with open(args.json) as f:
      results = json.load(f)["compiles"]
  jobs = [] if args.report_only else [j for j in plan(args) if key_of(*j) not in results]
  start = time.perf_counter()
  for topology, variant, step, per_device, fsdp in tqdm.tqdm(jobs, desc="compile", unit="step"):
    config = load_config(args.config, variant, args.dtype, args.set)
    row = compile_one(config, topology, step, per_device, fsdp)
    results[key_of(topology, variant, step, per_device, fsdp)] = row
    tqdm.tqdm.write(f"{topology} {variant} {step} {per_device}/device fsdp={fsdp}: "
                    f"{row['memory']['total'] / GIB:.2f} GiB per device, {row['tflops_per_device']:.2f} TFLOP, "
                    f"compiled in {row['compile_seconds']:.0f} s")
    _write(args, results, [])
  rows = summarize(results, args)
  _write(args, results, rows)
  print(f"{len(jobs)} compiles in {time.perf_counter() - start:.0f} s")
  table = markdown(rows, args)
  print(table)
  if args.markdown:
    with open(args.markdown, "w") as f:
      f.write(table)


def _write(args, results, rows):
  import jax  # pylint: disable=import-outside-toplevel
  with open(args.json, "w") as f:
    json.dump(dict(jax=jax.__version__, config=args.config, dtype=args.dtype, compiles=results, summary=rows), f,
              indent=1)


if __name__ == "__main__":
  main(sys.argv[1:])
