"""scripts/test.sh's set-up: a machine with no libtpu wheel for its platform goes on (the pod-slice test then skips,
saying why) instead of stopping before any test; the pose extractor's environment is made, so that the extraction
tests run rather than skip. Run in a copy of the scripts with a stand-in `python` in .venv whose pip finds nothing
and whose pytest only says it ran, and a stand-in scripts/pose_env.sh."""

import os
import pathlib
import shutil
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]

_PYTHON = """#!/usr/bin/env bash
if [ "$1" = "-m" ] && [ "$2" = "pip" ]; then
  echo "ERROR: No matching distribution found for libtpu" >&2
  exit 1
fi
if [ "$1" = "-m" ] && [ "$2" = "pytest" ]; then
  echo "pytest ran"
  exit 0
fi
exec {real} "$@"
"""


def _copy(tmp_path):
  (tmp_path / "scripts").mkdir()
  for name in ("scripts/test.sh", "scripts/_venv.sh", "pyproject.toml"):
    shutil.copy(REPO / name, tmp_path / name)
  (tmp_path / "scripts" / "pose_env.sh").write_text("echo 'pose environment made'\n")
  python = tmp_path / ".venv" / "bin" / "python"
  python.parent.mkdir(parents=True)
  python.write_text(_PYTHON.format(real=sys.executable))
  python.chmod(0o755)
  checksum = subprocess.run("cksum < pyproject.toml", shell=True, cwd=tmp_path, capture_output=True, text=True,
                            check=True).stdout.split()[0]
  (tmp_path / ".venv" / f".installed-{checksum}").touch()  # _venv.sh: installed already


def _test_sh(tmp_path, **env):
  done = subprocess.run(["bash", "scripts/test.sh"], cwd=tmp_path, env=dict(os.environ, CLIPMG_TEST_BEAM="0", **env),
                        capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stdout + done.stderr
  return done.stdout


def test_no_libtpu_wheel_is_a_skip_not_a_stop(tmp_path):
  _copy(tmp_path)
  out = _test_sh(tmp_path, CLIPMG_TEST_POSE="0")
  assert "tests/training/test_pod_slice.py will skip" in out and "pytest ran" in out, out


def test_the_pose_environment_is_made_before_the_tests(tmp_path):
  _copy(tmp_path)
  out = _test_sh(tmp_path)
  assert out.index("pose environment made") < out.index("pytest ran"), out
  assert "pose environment made" not in _test_sh(tmp_path, CLIPMG_TEST_POSE="0")
