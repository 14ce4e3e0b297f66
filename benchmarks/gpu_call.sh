#!/usr/bin/env bash
# One call of the GPU suite, as the GPU machine runs it: a Python with jax (+ CUDA), flax, optax and orbax-checkpoint,
# no network, this repository's working tree with the wheelhouse .gpu_wheels beside it (benchmarks/gpu_wheels.sh),
# and $OUT the folder whose files come back. The wheels go into a folder of their own on PYTHONPATH rather than into
# that Python, whose packages stay as they are; the project runs from the repository root, not installed.
#
#   bash benchmarks/gpu_call.sh PARTS [benchmarks.gpu_suite options]    e.g. steps:full,max:full (--help: the parts)
#   bash benchmarks/gpu_call.sh all --smoke                              every part, tiny
#
# PYTHON (default python3) picks the Python; GPU_SITE (default /tmp/gpu_site) the wheels' folder, kept between calls
# on the same machine. Figures: $OUT/gpu_suite.json and $OUT/gpu_suite.md, written after every part.
set -euo pipefail
cd "$(dirname "$0")/.."
parts=${1:?"usage: bash benchmarks/gpu_call.sh PARTS|all [options]"}
shift
py=${PYTHON:-python3}
site=${GPU_SITE:-/tmp/gpu_site}
stamp="$site/.installed-$(ls .gpu_wheels | cksum | cut -d' ' -f1)"
if [ ! -f "$stamp" ]; then
  start=$(date +%s)
  rm -rf "$site"
  "$py" -m pip install -q --no-index --no-deps --no-compile --disable-pip-version-check --target "$site" \
    .gpu_wheels/*.whl
  touch "$stamp"
  echo "[gpu_call] $(ls .gpu_wheels/*.whl | wc -l) wheels installed into $site in $(( $(date +%s) - start )) s"
fi
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
[ "$parts" = "all" ] && parts=""
exec "$py" -m benchmarks.gpu_suite --parts "$parts" "$@"
