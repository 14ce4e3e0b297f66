"""python -m benchmarks.gpu_suite --smoke: every part of the GPU suite runs end to end at tiny sizes on the CPU, so the
suite a GPU session runs in one go cannot rot between sessions that have a GPU."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_suite_smoke_runs_every_part(tmp_path):
  out_json, out_md = tmp_path / "gpu.json", tmp_path / "gpu.md"
  # Compile-bound at these sizes: XLA's backend optimisation passes off, as in the other subprocess tests (the resume
  # part compares two runs made with the same flags).
  env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=str(tmp_path / "cache"),
             XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0")
  run = subprocess.run([sys.executable, "-m", "benchmarks.gpu_suite", "--smoke", "--json", str(out_json), "--markdown",
                        str(out_md)], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900,
                       check=False)
  assert run.returncode == 0, run.stderr[-4000:]
  out = json.loads(out_json.read_text())
  assert [(r["variant"], r["batch"]) for r in out["steps"]] == [("full", 2), ("full", 4), ("pose_only", 2),
                                                                ("visual_only", 2)]
  assert all(r["step_seconds"] > 0 for r in out["steps"] + out["skeleton_conv"])
  assert [r["extra"] for r in out["skeleton_conv"]] == [["model.skeleton.conv=xla"], ["model.skeleton.conv=matmul"]]
  assert [r["workers"] for r in out["loop"]] == [0, 1] and all(r["clips_per_second"] > 0 for r in out["loop"])
  assert out["resume"]["final_steps"] == [6, 6]
  assert out["resume"]["max_param_diff"] == 0.0  # stopped after step 3 and resumed: the same parameters
  assert out["resume"]["top1"][0] == out["resume"]["top1"][1]
  table = out_md.read_text()
  assert "| `full` | 2 |" in table and "| Grain workers |" in table and "Resume: stopped after step 3" in table
