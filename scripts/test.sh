#!/usr/bin/env bash
# Install into ./.venv (first run) and run the whole test suite. Extra arguments go to pytest.
# Two worker processes by default (CLIPMG_TEST_WORKERS=0 runs in one): much of a JAX test is single-threaded
# compilation and data generation, so two files side by side use a 2-core machine better than one. Whole files go to
# one worker (--dist loadfile), so module-scoped fixtures (a generated dataset) are built once.
source "$(dirname "$0")/_venv.sh"
workers=${CLIPMG_TEST_WORKERS:-2}
if [ "$workers" = "0" ]; then
  python -m pytest -q --durations=15 "$@"
else
  python -m pytest -q --durations=15 -n "$workers" --dist loadfile "$@"
fi
