#!/usr/bin/env bash
# A wheelhouse for a GPU machine whose Python has jax (+ CUDA), flax, optax and orbax-checkpoint (and what they
# depend on) but nothing else this project imports, and no network: benchmarks/gpu_suite.py's data side (grain,
# ml-collections, av, crc32c, tensorflow-datasets and what they import) and the project's other imports. Made here
# (online), copied there with the working tree as the ignored folder .gpu_wheels, installed there offline by
# benchmarks/gpu_call.sh; the project runs from the repository root without being installed. scripts/gpu_rehearsal.sh
# checks on a CPU that this list is complete: it installs only these wheels beside a bare jax + flax + optax +
# orbax-checkpoint.
#
#   bash benchmarks/gpu_wheels.sh [PYTHON_VERSION=3.12] [DIR=.gpu_wheels]
#   # on the GPU machine, in the repository root (the wheelhouse copied along):
#   bash benchmarks/gpu_call.sh steps:full,max:full
set -euo pipefail
cd "$(dirname "$0")/.."
py=${1:-3.12}
dir=${2:-.gpu_wheels}
rm -rf "$dir"
mkdir -p "$dir"
# The project's own pins (pyproject.toml) for what the machine lacks, then the packages those import. Every one is
# named: the download takes no dependencies, so that nothing the machine already has (numpy, jax) is fetched again.
packages=("grain>=0.2.12,<0.3" "ml-collections>=1.0,<2" "av>=14,<20" "crc32c>=2.4,<3" "tensorflow-datasets>=4.9.8,<5"
          "pillow>=10,<13" "tqdm>=4.66,<5" "safetensors>=0.4,<1" "flatbuffers>=24,<26"
          array-record dm-tree simple-parsing tensorflow-metadata termcolor toml wrapt immutabledict docstring-parser
          portpicker cloudpickle attrs filelock six)
for p in "${packages[@]}"; do
  python -m pip download -q --no-deps -d "$dir" --python-version "$py" --only-binary=:all: --platform any \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 "$p"
done
# promise is published as a source only: built into a wheel here, so that the offline install builds nothing.
python -m pip wheel -q --no-deps -w "$dir" promise
du -sh "$dir"
