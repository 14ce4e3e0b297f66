"""Shared test fixtures."""

import os
import pathlib
import tempfile

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]

# A persistent XLA compilation cache for the test run, set before any test module imports JAX. Many tests compile
# the same functions (a tiny model's init and step; each leg of a resume test builds its steps again): with the
# cache, a repeat loads the executable instead of compiling it (measured here: 716 s -> 402 s for test_clipmg.py
# and test_pose_aux_loss.py). One directory per pytest-xdist worker, so two workers never write one entry at once;
# subprocesses started by a test inherit it. CLIPMG_TEST_JAX_CACHE overrides the location, "" turns it off.
_CACHE = os.environ.get("CLIPMG_TEST_JAX_CACHE", str(pathlib.Path(tempfile.gettempdir()) / "clipmg_jax_test_cache"))
if _CACHE and "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  os.environ["JAX_COMPILATION_CACHE_DIR"] = str(pathlib.Path(_CACHE) / os.environ.get("PYTEST_XDIST_WORKER", "main"))
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
# Real iMiGUE material lives beside the project root in ../shared/imigue (absent in a user's own clone).
SHARED_IMIGUE = pathlib.Path(os.environ.get("CLIPMG_SHARED_IMIGUE", REPO_ROOT.parent / "shared" / "imigue"))


@pytest.fixture(scope="session")
def imigue_shared() -> pathlib.Path:
  """Path to the real iMiGUE files; skips the test when they are not present."""
  if not (SHARED_IMIGUE / "labels_20200831.csv").is_file():
    pytest.skip(f"real iMiGUE files not found at {SHARED_IMIGUE} (set CLIPMG_SHARED_IMIGUE to their folder)")
  return SHARED_IMIGUE
