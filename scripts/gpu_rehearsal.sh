#!/usr/bin/env bash
# The GPU calls rehearsed on this CPU as the GPU machine runs them, so that the first call there works: a fresh
# Python 3.12 virtual environment holding only what that machine has (jax 0.11.2, flax, optax, orbax-checkpoint and
# their dependencies; no network there), the wheelhouse of benchmarks/gpu_wheels.sh installed offline
# (--no-index) by the same benchmarks/gpu_call.sh, a copy of the repository as that machine gets it (tracked and
# untracked-not-ignored files, plus .gpu_wheels copied along), and $OUT an empty folder. A wheel missing from the list
# fails it, as it would fail there.
#
#   bash scripts/gpu_rehearsal.sh            # every part at --smoke size (about 3 minutes; CI runs it)
#   bash scripts/gpu_rehearsal.sh --paper    # also one paper-size part: steps:pose_only at batch 2, one timed step
#
# Online only to build what is missing: the environment (kept in .rehearsal/, ignored) and the wheelhouse (kept in
# .gpu_wheels/, rebuilt when benchmarks/gpu_wheels.sh changes); after that it runs offline. The Python is
# $REHEARSAL_PYTHON, else python3.12 on PATH, else pyenv's 3.12; without one it stops with status 3 (get one with
# `pyenv install 3.12` or `uv python install 3.12`, then set REHEARSAL_PYTHON).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
paper=0
[ "${1:-}" = "--paper" ] && paper=1
# What the GPU machine's Python already has, of what this project uses (its image also holds more, unused here).
base=("jax==0.11.2" flax optax orbax-checkpoint)

find_python() {
  local p
  for p in "${REHEARSAL_PYTHON:-}" "$(command -v python3.12 || true)" "$HOME"/.pyenv/versions/3.12*/bin/python; do
    if [ -n "$p" ] && [ -x "$p" ] && "$p" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null; then
      echo "$p"
      return
    fi
  done
}
py=$(find_python)
if [ -z "$py" ]; then
  echo "gpu rehearsal: no Python 3.12 here (pyenv install 3.12, or uv python install 3.12; then REHEARSAL_PYTHON=...)"
  exit 3
fi
since() { echo "$(( $(date +%s) - $1 )) s"; }

start=$(date +%s)
venv=.rehearsal/base-$(echo "$py ${base[*]}" | cksum | cut -d' ' -f1)
if [ ! -f "$venv/.complete" ]; then
  echo "[rehearsal] making $venv: ${base[*]} on $("$py" --version) (online, once)"
  rm -rf "$venv"
  "$py" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "${base[@]}"
  touch "$venv/.complete"
fi
wheels_stamp=.gpu_wheels/.made-$(cksum < benchmarks/gpu_wheels.sh | cut -d' ' -f1)
if [ ! -f "$wheels_stamp" ]; then
  echo "[rehearsal] making the wheelhouse .gpu_wheels for Python 3.12 (online)"
  PATH="$root/$venv/bin:$PATH" bash benchmarks/gpu_wheels.sh 3.12 .gpu_wheels
  touch "$wheels_stamp"
fi
echo "[rehearsal] environment and wheelhouse ready: $(since "$start")"

work=$(mktemp -d "${TMPDIR:-/tmp}/gpu_rehearsal.XXXXXX")
trap 'rm -rf "$work"' EXIT
# The working tree as the GPU machine receives it, and the wheelhouse copied along.
mkdir -p "$work/tree"
git ls-files -z --cached --others --exclude-standard \
  | "$py" -c 'import os, sys; sys.stdout.buffer.write(b"".join(p + b"\0" for p in sys.stdin.buffer.read().split(b"\0")
                                                           if p and os.path.lexists(p)))' \
  | tar -c --null -T - -f - | tar -x -C "$work/tree"
cp -r .gpu_wheels "$work/tree/"

call() {  # one call: the command line run on the GPU machine, in the copy, with a fresh $OUT, the stand-in's python3
  local name=$1 t
  shift
  t=$(date +%s)
  rm -rf "$work/out"
  mkdir "$work/out"
  echo "[rehearsal] $name: bash benchmarks/gpu_call.sh $*"
  (cd "$work/tree" && env -u PYTHONPATH -u VIRTUAL_ENV OUT="$work/out" GPU_SITE="$work/site" \
    PATH="$root/$venv/bin:/usr/bin:/bin" bash benchmarks/gpu_call.sh "$@")
  "$py" - "$work/out" <<'EOF'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
files = sorted(p.name for p in out.iterdir())
figures = json.loads((out / "gpu_suite.json").read_text())
failed = [n for n, p in figures["parts"].items() if "error" in p]
assert not failed, f"parts failed: {failed}"
assert len(files) <= 8, files  # what comes back from $OUT
print(f"[rehearsal] $OUT holds {files}; parts {list(figures['parts'])} on jax {figures['jax']}")
EOF
  echo "[rehearsal] $name passed: $(since "$t")"
}

call smoke all --smoke
if [ "$paper" = "1" ]; then
  call paper steps:pose_only --batch 2 --steps 1
fi
echo "[rehearsal] passed: $(since "$start")"
