#!/usr/bin/env bash
# Install into ./.venv (first run) and run the whole test suite. Extra arguments go to pytest.
# Two worker processes by default (CLIPMG_TEST_WORKERS=0 runs in one): much of a JAX test is single-threaded
# compilation and data generation, so two files side by side use a 2-core machine better than one. Whole files go to
# one worker (--dist loadfile), so module-scoped fixtures (a generated dataset) are built once.
source "$(dirname "$0")/_venv.sh"
# The TPU compiler for the pod-slice compile test, kept beside .venv rather than in it: with libtpu importable, every
# JAX start-up on a machine without TPUs prints its failed search for one. The pin is the `tpu` extra's.
if [ ! -d .venv/libtpu/libtpu ]; then
  pin=$(python -c 'import tomllib; print(next(r for r in tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["tpu"] if r.startswith("libtpu")))')
  echo "[setup] installing $pin into .venv/libtpu (the TPU compiler, for tests/training/test_pod_slice.py)"
  python -m pip install -q --no-deps --target .venv/libtpu "$pin"
fi
export CLIPMG_LIBTPU_PATH="$PWD/.venv/libtpu"
workers=${CLIPMG_TEST_WORKERS:-2}
if [ "$workers" = "0" ]; then
  python -m pytest -q --durations=15 "$@"
else
  python -m pytest -q --durations=15 -n "$workers" --dist loadfile "$@"
fi
