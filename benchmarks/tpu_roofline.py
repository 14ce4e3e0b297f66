r"""The TPU slices on paper: each compiled step's roofline, and what a run of the paper's schedule on iMiGUE costs.

Reads the compiles of benchmarks/tpu_compile.py (its --json, whose rows carry XLA's cost analysis: FLOPs and bytes
accessed per device) and the memory table's largest batch per chip (benchmarks/results/tpu_compile.json), and per
slice and variant gives (benchmarks/roofline.py):
- the roofline of the train step at the compiled batch and at the largest batch that fits the chip's HBM (FLOPs and
  bytes per chip fitted linear in the batch from two compiled batches; a slice compiled at one batch or not at all
  borrows from the single-host slice of its generation, counts_per_chip): the lower bound on step time, which
  bound binds, the upper bound on clips/s per chip and the MFU that bound implies;
- hours per epoch of iMiGUE's cross-subject training split (13,935 clips) and for the paper's schedule (30 epochs,
  configs/imigue.py), and the cost at the on-demand price per chip-hour: once at the roofline (the least it can
  cost) and once at an assumed MFU (--assumed_mfu, on the model's own FLOPs; capped at the MFU the bound allows).
Nothing here ran on a TPU: every figure is on paper.

  JAX_PLATFORMS=cpu python -m benchmarks.tpu_compile --per_device_batches 2,4 --fsdp_min_size 0 --no_eval \
      --json benchmarks/results/tpu_cost_analysis.json
  python -m benchmarks.tpu_roofline --markdown benchmarks/results/tpu_roofline.md
"""

import argparse
import json
import sys

from benchmarks import roofline

# On-demand list price in USD per chip-hour, cloud.google.com/tpu/pricing (us-central regions, as published in
# 2025: v4 in us-central2, v5e and v6e in us-east/us-central, v5p in us-east5). Prices change: check before renting.
PRICE_PER_CHIP_HOUR = {"TPU v4": 3.22, "TPU v5 lite": 1.20, "TPU v5": 4.20, "TPU v6 lite": 2.70}
PRICE_SOURCE = "cloud.google.com/tpu/pricing, on-demand list price per chip-hour as published in 2025"
TRAIN_CLIPS = 13_935  # iMiGUE's cross-subject training split (docs/performance.md, labels_20200831.csv)
EPOCHS = 30  # configs/imigue.py: total_steps = 13,935 x 30 // 32


def parse_args(argv):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--compiles", default="benchmarks/results/tpu_cost_analysis.json",
                      help="tpu_compile.py's JSON with cost analyses (default: %(default)s)")
  parser.add_argument("--memory_table", default="benchmarks/results/tpu_compile.json",
                      help="tpu_compile.py's JSON whose summary gives the largest clips per chip (default: %(default)s)")
  parser.add_argument("--config", default="configs/imigue.py", help="for the model's own FLOPs per clip")
  parser.add_argument("--assumed_mfu", type=float, default=0.30,
                      help="the MFU assumed for the second estimate (default %(default)s; not measured)")
  parser.add_argument("--json", default="benchmarks/results/tpu_roofline.json", help="rows (default: %(default)s)")
  parser.add_argument("--markdown", default="", help="also write the two tables here")
  return parser.parse_args(argv)


def model_flops_per_clip(config_path, variant):
  from clipmg_jax.models import flops  # pylint: disable=import-outside-toplevel
  from clipmg_jax.training import runs  # pylint: disable=import-outside-toplevel
  config = runs.load_config(f"{config_path}:{variant}", {"model.skeleton.conv": "xla"})
  return flops.train_flops(config.model, int(config.data.image_size))


def per_chip(row, key):
  """A per-device count of a compile row, per chip (v4's two TensorCores share one chip)."""
  value = row["tflops_per_device"] * 1e12 if key == "flops" else row["cost"][key]
  return value * row["devices_per_chip"]


def _train_rows(compiles, topology, variant):
  """{clips per device: row} of the train-step compiles (without FSDP) of one slice and variant."""
  return {int(k.split("|")[3]): v for k, v in compiles.items()
          if k.split("|")[:3] == [topology, variant, "train"] and k.endswith("|0") and "cost" in v}


def counts_per_chip(compiles, topology, variant, device_kind):
  """({count: (fixed, per clip)} per chip, where from): FLOPs and bytes accessed, linear in the clips per chip.

  From this slice's two compiled batches; or, for a slice compiled at one batch, its own count there and the
  per-clip slope of a single-host slice of the same kind; or, for a slice not compiled with cost analysis, that
  single-host slice's program (a data-parallel step's per-chip program does not depend on the slice's size:
  the memory table shows the same bytes and FLOPs per chip on a pod slice as on one host)."""
  rows = _train_rows(compiles, topology, variant)
  twin = None
  if len(rows) < 2:
    for key, other in compiles.items():
      t, v = key.split("|")[:2]
      if v == variant and t != topology and other["device_kind"] == device_kind:
        if len(candidate := _train_rows(compiles, t, variant)) == 2:
          twin = candidate
          break
    if twin is None:
      raise ValueError(f"{topology} {variant}: fewer than two compiled batches and no single-host {device_kind} slice "
                       "compiled at two")
  source = rows if twin is None else twin
  lo, hi = sorted(source)
  out = {}
  for count in ("flops", "bytes accessed"):
    fixed, per_clip = roofline.linear(per_chip(source[lo], count), per_chip(source[hi], count),
                                      lo * source[lo]["devices_per_chip"], hi * source[hi]["devices_per_chip"])
    if rows and twin is not None:  # this slice's own count at its batch, the twin's slope
      (own_batch, own), = rows.items()
      fixed = per_chip(own, count) - per_clip * own_batch * own["devices_per_chip"]
    out[count] = (fixed, per_clip)
  where = "own" if twin is None else ("own batch, twin's slope" if rows else "single-host twin's program")
  return out, where, source[lo]


def analyse(args):
  from clipmg_jax.training import aot  # pylint: disable=import-outside-toplevel
  with open(args.compiles) as f:
    compiles = json.load(f)["compiles"]
  with open(args.memory_table) as f:
    slices = json.load(f)["summary"]
  model_flops = {}
  rows = []
  for piece in slices:
    topology, variant, kind = piece["topology"], piece["variant"], piece["device_kind"]
    if variant not in model_flops:
      model_flops[variant] = model_flops_per_clip(args.config, variant)
    fit, where, program = counts_per_chip(compiles, topology, variant, kind)
    peak, bandwidth = aot.PEAK_TFLOPS_PER_CHIP[kind] * 1e12, aot.HBM_GBPS_PER_CHIP[kind] * 1e9
    out = dict(topology=topology, variant=variant, device_kind=kind, chips=piece["chips"], hosts=piece["hosts"],
               peak_tflops=peak / 1e12, hbm_gbps=bandwidth / 1e9, model_gflop_per_clip=model_flops[variant] / 1e9,
               counts_from=where)
    compiled_clips = piece["clips_per_chip"] if where != "single-host twin's program" else None
    for name, clips in (("compiled", compiled_clips), ("largest", piece.get("largest_clips_per_chip"))):
      if not clips:
        continue
      flops = fit["flops"][0] + fit["flops"][1] * clips
      traffic = fit["bytes accessed"][0] + fit["bytes accessed"][1] * clips
      b = roofline.bound(flops, traffic, peak, bandwidth)
      out[name] = dict(clips_per_chip=clips, tflop_per_chip=flops / 1e12, gb_accessed_per_chip=traffic / 1e9,
                       compute_ms=b.compute_seconds * 1e3, memory_ms=b.memory_seconds * 1e3, bound_ms=b.seconds * 1e3,
                       binds=b.binds, clips_per_second_per_chip=clips / b.seconds,
                       mfu_at_bound=roofline.implied_mfu(model_flops[variant], clips, b.seconds, peak))
    at = out.get("largest") or out["compiled"]
    price = PRICE_PER_CHIP_HOUR[kind]
    # The assumed MFU, but never above what the roofline allows (a memory-bound step cannot reach it).
    mfu = min(args.assumed_mfu, at["mfu_at_bound"])
    assumed_rate = mfu * peak / model_flops[variant]  # clips/s per chip
    total = TRAIN_CLIPS * EPOCHS
    out["cost"] = {
        "price_per_chip_hour": price,
        "at_bound": dict(epoch=roofline.run_cost(TRAIN_CLIPS, at["clips_per_second_per_chip"], out["chips"], price),
                         run=roofline.run_cost(total, at["clips_per_second_per_chip"], out["chips"], price)),
        "at_assumed_mfu": dict(mfu=mfu, clips_per_second_per_chip=assumed_rate,
                               epoch=roofline.run_cost(TRAIN_CLIPS, assumed_rate, out["chips"], price),
                               run=roofline.run_cost(total, assumed_rate, out["chips"], price))}
    rows.append(out)
  return rows


def markdown(rows, args):
  lines = ["Train step, bfloat16, per chip; on paper, not run. Bound = max(compiled FLOPs / peak FLOP/s, bytes "
           "accessed / HBM bandwidth).", "",
           "| slice | variant | clips per chip | TFLOP | GB accessed | compute ms | memory ms | binds | ≤ clips/s "
           "per chip | MFU at the bound |", "|---|---|---:|---:|---:|---:|---:|---|---:|---:|"]
  for r in rows:
    for name in ("compiled", "largest"):
      if name not in r:
        continue
      a = r[name]
      star = {"own": "", "own batch, twin's slope": "*" if name == "largest" else "",
              "single-host twin's program": "†"}[r["counts_from"]]
      lines.append(f"| {r['topology']} | `{r['variant']}` | {a['clips_per_chip']}{' (largest)' if name == 'largest' else ''}"
                   f"{star} | {a['tflop_per_chip']:.2f} | {a['gb_accessed_per_chip']:.1f} | {a['compute_ms']:.1f} | "
                   f"{a['memory_ms']:.1f} | {a['binds']} | {a['clips_per_second_per_chip']:.0f} | "
                   f"{a['mfu_at_bound']:.0%} |")
  lines += ["", f"iMiGUE training, {TRAIN_CLIPS:,} clips per epoch, {EPOCHS} epochs, at the largest batch per chip; "
            f"price: {PRICE_SOURCE}. On paper, not run.", "",
            "| slice | variant | $ / chip-hour | epoch at the bound | run at the bound | run cost at the bound | "
            f"MFU assumed (≤ the bound's) | epoch | run | run cost |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
  for r in rows:
    c = r["cost"]
    b, m = c["at_bound"], c["at_assumed_mfu"]
    lines.append(f"| {r['topology']} ({r['chips']} chips) | `{r['variant']}` | {c['price_per_chip_hour']:.2f} | "
                 f"{_hours(b['epoch']['hours'])} | {_hours(b['run']['hours'])} | ${b['run']['cost']:,.2f} | "
                 f"{m['mfu']:.0%} | {_hours(m['epoch']['hours'])} | {_hours(m['run']['hours'])} | "
                 f"${m['run']['cost']:,.2f} |")
  if any(r["counts_from"] != "own" for r in rows):
    lines.append("\n\\* compiled at one batch: the per-clip FLOPs and bytes are the single-host slice's of the same "
                 "generation. † the single-host slice's program of the same generation (same per-chip program).")
  return "\n".join(lines) + "\n"


def _hours(h):
  if h < 1 / 60:
    return f"{h * 3600:.0f} s"
  return f"{h * 60:.0f} min" if h < 1 else f"{h:.1f} h"


def main(argv):
  args = parse_args(argv)
  try:
    rows = analyse(args)
  except (FileNotFoundError, KeyError, ValueError) as e:
    sys.exit(f"error: {e}")
  with open(args.json, "w") as f:
    json.dump(dict(assumed_mfu=args.assumed_mfu, price_source=PRICE_SOURCE, train_clips=TRAIN_CLIPS, epochs=EPOCHS,
                   rows=rows), f, indent=1)
  table = markdown(rows, args)
  print(table)
  if args.markdown:
    with open(args.markdown, "w") as f:
      f.write(table)


if __name__ == "__main__":
  main(sys.argv[1:])
