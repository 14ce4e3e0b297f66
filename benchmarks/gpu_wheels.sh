#!/usr/bin/env bash
# A wheelhouse for a GPU machine whose Python has jax (+ CUDA), flax, optax and orbax but not the data side's
# packages (grain, ml-collections, av, crc32c, tensorflow-datasets and what they import), for benchmarks/gpu_suite.py.
# Made here, copied there (about 45 MB), installed there without a network:
#
#   bash benchmarks/gpu_wheels.sh [PYTHON_VERSION=3.12] [DIR=.gpu_wheels]
#   # on the GPU machine, in the repository:
#   pip install --no-deps .gpu_wheels/* && pip install --no-deps -e . && python -m benchmarks.gpu_suite --json gpu.json --markdown gpu.md
set -euo pipefail
cd "$(dirname "$0")/.."
py=${1:-3.12}
dir=${2:-.gpu_wheels}
mkdir -p "$dir"
# The project's own pins for the five (pyproject.toml), then the packages they import that such a machine lacks.
packages=("grain>=0.2.12,<0.3" "ml-collections>=1.0,<2" "av>=14,<20" "crc32c>=2.4,<3" "tensorflow-datasets>=4.9.8,<5"
          array-record dm-tree simple-parsing tensorflow-metadata termcolor toml wrapt immutabledict docstring-parser
          etils)
for p in "${packages[@]}"; do
  python -m pip download -q --no-deps -d "$dir" --python-version "$py" --only-binary=:all: \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 --platform any "$p"
done
python -m pip download -q --no-deps --no-binary=:all: -d "$dir" promise  # pure Python, published as a source only
du -sh "$dir"
