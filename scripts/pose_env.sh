#!/usr/bin/env bash
# Make ./.venv-pose: the environment of data_prep/extract_pose.py (and of `predict --extract_pose`, which runs the
# extractor in it as a subprocess). It is separate from ./.venv because mediapipe 0.10.21 pins numpy<2 and an old
# jax, which the project cannot share. mediapipe 0.10.21 ships CPython 3.9-3.12 wheels; its bundled BlazePose
# "full" model (model_complexity=1) needs no download at run time.
#   bash scripts/pose_env.sh            # PYTHON=python3.11 bash scripts/pose_env.sh to pick the interpreter
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(not (3, 9) <= sys.version_info[:2] <= (3, 12))'; then
  echo "[pose_env] $PY is $("$PY" --version 2>&1); mediapipe 0.10.21 needs Python 3.9-3.12 (set PYTHON=...)" >&2
  exit 1
fi
stamp=.venv-pose/.installed-mediapipe-0.10.21
if [ ! -f "$stamp" ]; then
  echo "[pose_env] creating .venv-pose with $("$PY" --version 2>&1)"
  "$PY" -m venv .venv-pose
  .venv-pose/bin/python -m pip install -q --upgrade pip
  # av decodes the videos, tqdm draws the progress bar; numpy comes pinned by mediapipe.
  .venv-pose/bin/python -m pip install -q "mediapipe==0.10.21" "av>=14,<20" "tqdm>=4.66,<5"
  touch "$stamp"
fi
echo "[pose_env] ready: .venv-pose/bin/python -m data_prep.extract_pose --help   (from the repository root)"
