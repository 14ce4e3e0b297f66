r"""The GPU suite's calls, derived from a measured count of its compiles: each call runs consecutive parts of
benchmarks/gpu_suite.py and is planned to end within --budget seconds (default 300), half the 600 s a call may run.

Inputs, from `benchmarks.gpu_suite --compile_only` on the CPU stand-in (every compile of a part at paper size, timed;
nothing runs): `alone`, each part in a process of its own with an empty compilation cache (a call's first part, on a
machine that starts bare); `in_order`, every part in one process with an empty cache (a part after the ones before
it, whose programs it loads or shares). A call's planned seconds are its start (--start_seconds: the wheel install
and the imports), its first part alone, the others in order, and for each part what the GPU then runs (RUN_SECONDS,
an estimate: no GPU has run it yet). The CPU's compile seconds stand in for the GPU's: XLA:GPU compiles the same
programs, usually faster, but it also autotunes its convolutions and matmuls, so no speed-up is counted.
benchmarks/gpu_plan.sh measures, plans, and checks the plan by compiling each call as one process.

  python -m benchmarks.gpu_plan PLAN.json IN_ORDER.json [--checked CALLS.json]   # prints the calls, writes them in
"""

import argparse
import json
import sys

from benchmarks import gpu_suite
from benchmarks import gpu_suite_report as report

# Seconds the GPU spends running each part once its programs are compiled (an estimate, generous): a few timed steps
# at batch 32; six at the largest batch (hundreds of clips); a loop part's 11 steps with the host decoding 32 clips
# of JPEG frames per step, and its Grain workers starting; three short trainings with checkpoints every 2 steps and
# two test evaluations.
RUN_SECONDS = {"steps": 10, "max": 30, "conv": 15, "loop": 60, "resume": 90}


def _run(name):
  return RUN_SECONDS[name.split(":")[0]]


def plan(alone, in_order, budget, start_seconds):
  """Consecutive parts packed into calls of at most `budget` planned seconds: [(parts, planned seconds)]."""
  calls, current, total = [], [], 0.0
  for name in sorted(alone, key=lambda n: report.part_key(n, gpu_suite.ORDER)):
    later = total + in_order[name]["seconds"] + _run(name)
    if current and later <= budget:
      current.append(name)
      total = later
      continue
    if current:
      calls.append((current, total))
    current, total = [name], start_seconds + alone[name]["seconds"] + _run(name)
  if current:
    calls.append((current, total))
  return calls


def checked_row(names, checked, start_seconds):
  """A call compiled as one process with an empty cache: its compiles, and its planned seconds from that."""
  parts = [checked[n] for n in names]
  measured = sum(p["seconds"] for p in parts)
  return dict(compile_only_seconds=round(measured), compiles=sum(p["long_compiles"] for p in parts),
              compile_seconds=round(sum(p["long_compile_seconds"] for p in parts)),
              planned_seconds=round(start_seconds + measured + sum(_run(n) for n in names)))


def main(argv):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("alone", help="the parts measured alone; the plan is written into this file")
  parser.add_argument("in_order", help="the parts measured in one process, in order")
  parser.add_argument("--budget", type=float, default=300.0, help="planned seconds per call (default 300)")
  parser.add_argument("--start_seconds", type=float, default=60.0,
                      help="a call's start: wheel install, imports (default 60)")
  parser.add_argument("--checked", default="", help="the calls, each compiled as one process with an empty cache")
  parser.add_argument("--list", action="store_true", help="print each planned call's parts (a line each); no writing")
  args = parser.parse_args(argv)
  alone, in_order = report.read(args.alone), report.read(args.in_order)
  calls = plan(alone["parts"], in_order["parts"], args.budget, args.start_seconds)
  if args.list:
    print("\n".join(",".join(names) for names, _ in calls))
    return 0
  checked = report.read(args.checked)["parts"] if args.checked else {}
  rows = []
  for names, seconds in calls:
    row = dict(parts=names, planned_seconds=round(seconds), command=f"bash benchmarks/gpu_call.sh {','.join(names)}")
    if all(n in checked for n in names):
      row["checked"] = checked_row(names, checked, args.start_seconds)
    rows.append(row)
  alone["plan"] = dict(budget_seconds=args.budget, start_seconds=args.start_seconds, run_seconds=RUN_SECONDS,
                       calls=rows)
  report.write(args.alone, alone)
  for i, row in enumerate(rows, 1):
    check = f" (checked: {row['checked']['planned_seconds']} s)" if "checked" in row else ""
    print(f"call {i}: {row['planned_seconds']} s planned{check}: {row['command']}")
  over = [row["parts"] for row in rows if max(row["planned_seconds"], row.get("checked", {}).get(
      "planned_seconds", 0)) > args.budget]
  if over:
    print(f"over the budget of {args.budget:.0f} s: {over}")
  return 1 if over else 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
