#!/usr/bin/env bash
# Install into ./.venv (first run) and run the whole test suite. Extra arguments go to pytest.
source "$(dirname "$0")/_venv.sh"
python -m pytest -q "$@"
