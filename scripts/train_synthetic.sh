#!/usr/bin/env bash
# Install into ./.venv (first run), then generate the synthetic iMiGUE-like dataset, convert it to shards,
# train CLIP-MG on it and evaluate on its cross-subject test split. Extra arguments go to the trainer.
source "$(dirname "$0")/_venv.sh"
python -m clipmg_jax.train --config configs/synthetic.py --workdir "${WORKDIR:-runs/synthetic}" "$@"
