#!/usr/bin/env bash
# The GPU suite's calls from a measured count of its compiles, on this CPU (benchmarks.gpu_suite --compile_only: every
# program of a part compiled at paper size, nothing run): each part alone with an empty compilation cache, as on a
# machine that starts bare; every part in one process, in order; the calls derived from those (benchmarks/gpu_plan.py);
# then each call compiled as one process with an empty cache, which checks it. Writes to benchmarks/results/:
# gpu_suite_plan.json (the parts alone, and the plan), gpu_suite_in_order.json and gpu_suite_calls.json (the check).
# About 40 minutes on a 2-core machine.
#
#   bash benchmarks/gpu_plan.sh [OUT_DIR=benchmarks/results] [STAGES=alone,in_order,check]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-benchmarks/results}
stages=${2:-alone,in_order,check}
parts=(steps:full max:full steps:pose_only max:pose_only conv steps:visual_only max:visual_only loop:0 loop:4 loop:8
       loop:14 resume)
cache=$(mktemp -d)
trap 'rm -rf "$cache"' EXIT
export JAX_PLATFORMS=cpu JAX_COMPILATION_CACHE_DIR="$cache" PYTHONUNBUFFERED=1
suite() { rm -rf "${cache:?}"/*; python -m benchmarks.gpu_suite --compile_only --markdown "" "$@"; }
if [[ $stages == *alone* ]]; then
  rm -f "$out/gpu_suite_plan.json"
  for p in "${parts[@]}"; do suite --parts "$p" --json "$out/gpu_suite_plan.json"; done
fi
if [[ $stages == *in_order* ]]; then
  rm -f "$out/gpu_suite_in_order.json"
  suite --parts "$(IFS=,; echo "${parts[*]}")" --json "$out/gpu_suite_in_order.json"
fi
plan=(python -m benchmarks.gpu_plan "$out/gpu_suite_plan.json" "$out/gpu_suite_in_order.json")
if [[ $stages == *check* ]]; then
  rm -f "$out/gpu_suite_calls.json"
  for call in $("${plan[@]}" --list); do suite --parts "$call" --json "$out/gpu_suite_calls.json"; done
fi
checked=()
[[ $stages == *check* ]] && checked=(--checked "$out/gpu_suite_calls.json")
"${plan[@]}" "${checked[@]}"
