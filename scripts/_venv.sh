# Sourced by the other scripts: make ./.venv with Python 3.11+ and install the project into it (once).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
stamp=.venv/.installed-$(cat pyproject.toml | cksum | cut -d' ' -f1)
if [ ! -f "$stamp" ]; then
  echo "[setup] installing clipmg_jax and its test tools into .venv (first run only)"
  .venv/bin/python -m pip install -q --upgrade pip
  # torch first and pinned, so nothing later pulls another (much larger) build.
  .venv/bin/python -m pip install -q "torch==2.13.0"
  .venv/bin/python -m pip install -q -e ".[test]"
  rm -f .venv/.installed-*; touch "$stamp"
fi
export PATH="$PWD/.venv/bin:$PATH"
