"""python -m benchmarks.gpu_suite --smoke: every part of the GPU suite runs end to end at tiny sizes on the CPU, so the
calls run on a GPU machine cannot rot between the times one is at hand; and a call stopped by its time limit keeps the
parts it finished."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def suite_env(tmp_path, **extra):
  # Compile-bound at these sizes: XLA's backend optimisation passes off, as in the other subprocess tests (the resume
  # part compares two runs made with the same flags).
  return dict(os.environ, JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=str(tmp_path / "cache"),
              XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0", **extra)


@pytest.mark.slow
def test_gpu_suite_smoke_runs_every_part(tmp_path):
  out_json, out_md = tmp_path / "gpu.json", tmp_path / "gpu.md"
  run = subprocess.run([sys.executable, "-m", "benchmarks.gpu_suite", "--smoke", "--json", str(out_json), "--markdown",
                        str(out_md)], cwd=REPO_ROOT, env=suite_env(tmp_path), capture_output=True, text=True,
                       timeout=900, check=False)
  assert run.returncode == 0, run.stderr[-4000:]
  out = json.loads(out_json.read_text())
  assert list(out["parts"]) == ["steps:full", "max:full", "steps:pose_only", "conv", "steps:visual_only", "loop:0",
                                "loop:1", "resume"]
  assert [(r["variant"], r["batch"]) for r in out["steps"]] == [("full", 2), ("full", 4), ("pose_only", 2),
                                                                ("visual_only", 2)]
  assert all(r["step_seconds"] > 0 for r in out["steps"] + out["skeleton_conv"])
  assert [r["extra"] for r in out["skeleton_conv"]] == [["model.skeleton.conv=xla"], ["model.skeleton.conv=matmul"]]
  assert [r["workers"] for r in out["loop"]] == [0, 1] and all(r["clips_per_second"] > 0 for r in out["loop"])
  assert out["resume"]["final_steps"] == [6, 6]
  assert out["resume"]["max_param_diff"] == 0.0  # stopped after step 3 and resumed: the same parameters
  assert out["resume"]["top1"][0] == out["resume"]["top1"][1]
  # Every part counts its compiles; the train step of steps:full is one of them.
  first = out["parts"]["steps:full"]
  assert first["compiles"] >= 1 and first["compile_seconds"] > 0 and any("step" in n for n, _ in first["long"])
  table = out_md.read_text()
  assert "| `full` | 2 |" in table and "| Grain workers |" in table and "Resume: stopped after step 3" in table
  assert "| `steps:full` |" in table


@pytest.mark.slow
def test_gpu_suite_killed_mid_call_keeps_finished_parts(tmp_path):
  """Started elsewhere with $OUT set (the output lands there, not beside the repository), killed during its second
  part as a call's time limit would: the JSON holds the first part, whole."""
  out_dir = tmp_path / "out"
  out_dir.mkdir()
  env = suite_env(tmp_path, OUT=str(out_dir), PYTHONPATH=str(REPO_ROOT))
  command = [sys.executable, "-m", "benchmarks.gpu_suite", "--smoke", "--parts", "steps:visual_only,resume"]
  proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          start_new_session=True)
  out_json, out_md = out_dir / "gpu_suite.json", out_dir / "gpu_suite.md"
  try:
    deadline = time.monotonic() + 600
    while not out_md.exists() and proc.poll() is None and time.monotonic() < deadline:
      time.sleep(0.2)
  finally:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
  out = json.loads(out_json.read_text())
  assert list(out["parts"]) == ["steps:visual_only"]
  assert out["steps"][0]["variant"] == "visual_only" and out["steps"][0]["step_seconds"] > 0
  assert "| `steps:visual_only` |" in out_md.read_text() and not (tmp_path / "gpu_suite.json").exists()


def test_gpu_suite_outputs_merge(tmp_path):
  """Two calls' files join into one (--merge), parts in the suite's order, no run."""
  from benchmarks import gpu_suite_report as report  # pylint: disable=import-outside-toplevel
  header = dict(device="cpu", num_devices=1, jax="0", backend="cpu", dtype="bfloat16")
  counts = dict(seconds=1.0, compiles=1, compile_seconds=1.0, long_compiles=1, long_compile_seconds=1.0, cache_hits=0)
  row = dict(variant="full", batch=32, step_seconds=0.1, clips_per_second=320.0, extra=[])
  a = dict(header, parts={"resume": dict(counts, result=dict(steps=6, stopped_after=3, max_param_diff=0.0,
                                                                top1=[0.5, 0.5]))})
  b = dict(header, parts={"loop:4": dict(counts, result=[dict(workers=4)]), "steps:full": dict(counts, result=[row])})
  for name, out in (("a.json", a), ("b.json", b)):
    report.write(str(tmp_path / name), out)
  env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
  run = subprocess.run([sys.executable, "-m", "benchmarks.gpu_suite", "--merge", "a.json", "b.json", "--json",
                        "all.json", "--markdown", "all.md"], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=120, check=False)
  assert run.returncode == 0, run.stderr[-2000:]
  out = json.loads((tmp_path / "all.json").read_text())
  assert list(out["parts"]) == ["steps:full", "loop:4", "resume"]  # the suite's order
  assert out["steps"] == [row] and out["loop"] == [dict(workers=4)] and out["seconds"] == 3.0
  assert "| `full` | 32 | 100.0 ms |" in (tmp_path / "all.md").read_text()
