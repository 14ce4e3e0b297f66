"""The GPU suite's output: one JSON that accumulates the parts (each part is written as soon as it ends, merged into
what the file already holds, so a call stopped by its time limit keeps the parts before it, and several calls fill
one file), and its markdown table. `python -m benchmarks.gpu_suite --merge A.json B.json ...` joins the files of
separate calls (each GPU call gets an empty output folder)."""

import json
import os


def read(path):
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    return json.load(f)


def merge(out, other):
  """`out` with the parts of `other` added (a part in both: other's, the later run)."""
  parts = dict(out.get("parts", {}))
  parts.update(other.get("parts", {}))
  return dict(out, **{k: v for k, v in other.items() if k != "parts"}, parts=parts)


def part_key(name, order):
  """Where a part comes in `order`: loop:W at "loop", by W; names not in it last."""
  kind, _, arg = name.partition(":")
  if kind == "loop":
    return (order.index("loop"), int(arg) if arg.isdigit() else -1) if "loop" in order else (len(order), 0)
  return (order.index(name), 0) if name in order else (len(order), 0)


def flatten(out, order):
  """The per-part results as the suite's figures: steps rows, skeleton_conv, loop, resume; parts in `order`."""
  parts = out.get("parts", {})
  names = sorted(parts, key=lambda n: part_key(n, order))
  ok = [(n, parts[n]) for n in names if "error" not in parts[n]]
  flat = dict(out, parts={n: parts[n] for n in names})
  flat["steps"] = [row for n, p in ok if n.split(":")[0] in ("steps", "max") for row in p["result"]]
  flat["loop"] = [row for n, p in ok if n.startswith("loop:") for row in p["result"]]
  for name, key in (("conv", "skeleton_conv"), ("resume", "resume")):
    if name in parts and "error" not in parts[name]:
      flat[key] = parts[name]["result"]
  flat["seconds"] = sum(p["seconds"] for p in parts.values())
  return flat


def write(path, out):
  """Writes the JSON whole or not at all (a kill mid-write leaves the previous file)."""
  tmp = f"{path}.tmp"
  with open(tmp, "w") as f:
    json.dump(out, f, indent=1)
  os.replace(tmp, path)


def _ms(seconds):
  return "—" if seconds is None else f"{seconds * 1e3:.1f} ms"


def markdown(out):
  lines = [f"Device: {out['device']} x {out['num_devices']}, jax {out['jax']}, {out['dtype']}"
           + (" (compiled only: nothing ran)." if out.get("compile_only") else "."), "",
           "| variant | batch | step | clips/s | MFU |", "|---|---:|---:|---:|---:|"]
  for row in out.get("steps", []) + out.get("skeleton_conv", []):
    name = row["variant"] + (f" ({', '.join(row['extra'])})" if row["extra"] else "")
    mfu = f"{row['mfu']:.1%}" if row.get("mfu") is not None else "—"
    clips = "—" if row["clips_per_second"] is None else f"{row['clips_per_second']:.1f}"
    lines.append(f"| `{name}` | {row['batch']} | {_ms(row['step_seconds'])} | {clips} | {mfu} |")
  if out.get("loop"):
    lines += ["", "| Grain workers | loop clips/s | loop step | bare step | device waits |",
              "|---:|---:|---:|---:|---:|"]
    for row in out["loop"]:
      if row.get("clips_per_second") is None:
        continue
      lines.append(f"| {row['workers']} | {row['clips_per_second']:.1f} | {row['loop_seconds_per_step'] * 1e3:.0f} ms "
                   f"| {row['bare_step_seconds'] * 1e3:.0f} ms | {row['device_waits']:.0%} |")
  r = out.get("resume")
  if r and r.get("max_param_diff") is not None:
    lines += ["", f"Resume: stopped after step {r['stopped_after']} of {r['steps']} and resumed; max |parameter "
              f"difference| {r['max_param_diff']:.3g}; test top-1 {r['top1'][0]:.4f} (straight) / {r['top1'][1]:.4f} "
              "(resumed)."]
  lines += ["", "| part | seconds | compiles (≥ 1 s) | compile s (≥ 1 s) | cache hits |",
            "|---|---:|---:|---:|---:|"]
  for name, p in out.get("parts", {}).items():
    status = f" (failed: {p['error'].splitlines()[-1][:80]})" if "error" in p else ""
    lines.append(f"| `{name}`{status} | {p['seconds']:.0f} | {p['compiles']} ({p['long_compiles']}) | "
                 f"{p['compile_seconds']:.0f} ({p['long_compile_seconds']:.0f}) | {p['cache_hits']} |")
  return "\n".join(lines) + "\n"
