"""Shared test fixtures."""

import os
import pathlib

import pytest

# The tests run small models for a few steps, so XLA's compile time, not the computation, is most of their run time;
# with the backend's optimisation passes off it roughly halves (end-to-end resume 135 s -> 80 s, bf16 step
# 78 s -> 39 s on a 2-core CPU). Values stay within every test's tolerance. The flag is set before any device is
# created, and subprocesses started by the tests inherit it; CLIPMG_TEST_XLA_OPTIMIZE=1 tests with XLA's defaults.
if os.environ.get("CLIPMG_TEST_XLA_OPTIMIZE", "0") != "1":
  os.environ["XLA_FLAGS"] = " ".join(filter(None, [os.environ.get("XLA_FLAGS"), "--xla_backend_optimization_level=0"]))

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
# Real iMiGUE material lives beside the project root in ../shared/imigue (absent in a user's own clone).
SHARED_IMIGUE = pathlib.Path(os.environ.get("CLIPMG_SHARED_IMIGUE", REPO_ROOT.parent / "shared" / "imigue"))


@pytest.fixture(scope="session")
def imigue_shared() -> pathlib.Path:
  """Path to the real iMiGUE files; skips the test when they are not present."""
  if not (SHARED_IMIGUE / "labels_20200831.csv").is_file():
    pytest.skip(f"real iMiGUE files not found at {SHARED_IMIGUE} (set CLIPMG_SHARED_IMIGUE to their folder)")
  return SHARED_IMIGUE
