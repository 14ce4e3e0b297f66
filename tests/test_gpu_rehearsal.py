"""scripts/gpu_rehearsal.sh at --smoke size: the GPU calls run on this CPU as the GPU machine runs them (Python 3.12,
jax 0.11.2 + flax + optax + orbax-checkpoint, only the wheelhouse installed offline, a copy of the working tree, an
empty $OUT), so a package missing from benchmarks/gpu_wheels.sh fails here rather than on the GPU machine. Skips, saying
why, where no Python 3.12 is found; the first run makes the environment and the wheelhouse (online, about 2
minutes), later runs in the same clone reuse them."""

import os
import pathlib
import subprocess

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
NO_PYTHON = 3  # the script's status when it finds no Python 3.12


@pytest.mark.slow
def test_gpu_rehearsal_smoke():
  # Compile-bound at smoke sizes: XLA's backend optimisation passes off, as in tests/test_gpu_suite.py.
  env = dict(os.environ, XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0")
  run = subprocess.run(["bash", "scripts/gpu_rehearsal.sh"], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                       timeout=1200, check=False)
  if run.returncode == NO_PYTHON:
    pytest.skip(run.stdout.strip().splitlines()[-1])
  assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
  assert "[rehearsal] smoke passed" in run.stdout and "on jax 0.11.2" in run.stdout
