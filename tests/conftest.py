"""Shared test fixtures."""

import os
import pathlib

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
# Real iMiGUE material lives beside the project root in ../shared/imigue (absent in a user's own clone).
SHARED_IMIGUE = pathlib.Path(os.environ.get("CLIPMG_SHARED_IMIGUE", REPO_ROOT.parent / "shared" / "imigue"))


@pytest.fixture(scope="session")
def imigue_shared() -> pathlib.Path:
  """Path to the real iMiGUE files; skips the test when they are not present."""
  if not (SHARED_IMIGUE / "labels_20200831.csv").is_file():
    pytest.skip(f"real iMiGUE files not found at {SHARED_IMIGUE} (set CLIPMG_SHARED_IMIGUE to their folder)")
  return SHARED_IMIGUE
