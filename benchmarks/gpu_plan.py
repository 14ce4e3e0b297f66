r"""The GPU suite's calls, derived from a measured count of its compiles: each call runs consecutive parts of
benchmarks/gpu_suite.py and is planned to end within --budget seconds (default 300), half the 600 s a call may run.

Input: the suite's JSON from `--compile_only`, one process per part, in the suite's order, sharing one compilation
cache (the CPU stand-in: every compile of a part at paper size, timed; nothing runs). A part's planned seconds are
its measured seconds (compiles, initialisation, shards), plus what the GPU then runs (RUN_SECONDS, an estimate: no GPU
has run it yet), plus the start of the call (--start_seconds: the wheel install and the imports). The CPU's compile
seconds stand in for the GPU's: XLA:GPU compiles the same programs, usually faster, but it also autotunes its
convolutions and matmuls, so no speed-up is counted.

  python -m benchmarks.gpu_plan benchmarks/results/gpu_suite_plan.json          # prints the calls, writes them in
"""

import argparse
import json
import sys

from benchmarks import gpu_suite

# Seconds the GPU spends running each part once its programs are compiled (an estimate, generous): a few timed steps
# at batch 32; six at the largest batch (hundreds of clips); the loop's 11 steps for each of 4 worker counts with
# the host decoding 32 clips of JPEG frames per step, and its Grain workers starting; three short trainings with
# checkpoints every 2 steps and two test evaluations.
RUN_SECONDS = {"steps": 10, "max": 30, "conv": 15, "loop": 150, "resume": 90}


def plan(parts, budget, start_seconds):
  """Consecutive parts packed into calls of at most `budget` planned seconds: [(parts, planned seconds)]."""
  calls, current, total = [], [], start_seconds
  for name in gpu_suite.ORDER:
    if name not in parts:
      continue
    seconds = parts[name]["seconds"] + RUN_SECONDS[name.split(":")[0]]
    if current and total + seconds > budget:
      calls.append((current, total))
      current, total = [], start_seconds
    current.append(name)
    total += seconds
  if current:
    calls.append((current, total))
  return calls


def main(argv):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("measured", help="the --compile_only JSON; the calls are written into it")
  parser.add_argument("--budget", type=float, default=300.0, help="planned seconds per call (default 300)")
  parser.add_argument("--start_seconds", type=float, default=60.0,
                      help="a call's start: wheel install, imports (default 60)")
  args = parser.parse_args(argv)
  with open(args.measured) as f:
    measured = json.load(f)
  calls = plan(measured["parts"], args.budget, args.start_seconds)
  over = [c for c in calls if c[1] > args.budget]
  measured["plan"] = dict(budget_seconds=args.budget, start_seconds=args.start_seconds, run_seconds=RUN_SECONDS,
                          calls=[dict(parts=p, planned_seconds=round(s), command=f"bash benchmarks/gpu_call.sh "
                                      f"{','.join(p)}") for p, s in calls])
  with open(args.measured, "w") as f:
    json.dump(measured, f, indent=1)
  for i, call in enumerate(measured["plan"]["calls"], 1):
    print(f"call {i}: {call['planned_seconds']} s planned: {call['command']}")
  if over:
    print(f"parts over the budget alone: {[c[0] for c in over]}")
  return 1 if over else 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
