"""The tiny config's train and eval steps compile for a multi-host TPU slice with the TPU compiler (no TPU needed),
and the compiled steps hold the batch and the state laid out as the project's shardings say.

Needs libtpu: the `tpu` extra (pip install -e ".[tpu]"), or a folder holding it named by CLIPMG_LIBTPU_PATH
(scripts/test.sh installs one into .venv/libtpu). Without either the tests skip and say so.
"""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import pytest

WORKER = pathlib.Path(__file__).with_name("pod_slice_worker.py")
REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
LIBTPU_PATH = os.environ.get("CLIPMG_LIBTPU_PATH", "")
# v5e 4x4: 16 chips on 4 hosts (4 processes of 4 devices each in this libtpu's description).
TOPOLOGY = "v5e:4x4"


def _has_libtpu() -> bool:
  return importlib.util.find_spec("libtpu") is not None or (LIBTPU_PATH and (pathlib.Path(LIBTPU_PATH) / "libtpu").is_dir())


@pytest.fixture(scope="module")
def compiled() -> dict:
  if not _has_libtpu():
    pytest.skip('the TPU compiler (libtpu) is not installed: pip install -e ".[tpu]", or set CLIPMG_LIBTPU_PATH')
  # ALLOW_MULTIPLE_LIBTPU_LOAD: libtpu otherwise takes a machine-wide lock file, and a second process that loads it
  # at the same time (another test run, a compile report) fails.
  # The persistent compilation cache (tests/conftest.py) cannot hold executables compiled for devices that are not
  # here.
  env = dict(os.environ, JAX_PLATFORMS="cpu", ALLOW_MULTIPLE_LIBTPU_LOAD="1", JAX_ENABLE_COMPILATION_CACHE="false",
             PYTHONPATH=os.pathsep.join(p for p in [str(REPO_ROOT), str(WORKER.parent), LIBTPU_PATH,
                                                    os.environ.get("PYTHONPATH", "")] if p))
  out = subprocess.run([sys.executable, str(WORKER), TOPOLOGY, "0,256"], env=env, capture_output=True, text=True,
                       timeout=600, check=False)
  assert out.returncode == 0, out.stderr[-4000:]
  return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("fsdp_min_size", ["0", "256"], ids=["replicated", "fsdp"])
def test_batch_is_split_over_every_chip_of_every_host(compiled, fsdp_min_size):
  r = compiled[fsdp_min_size]
  assert r["devices"] == 16 and r["processes"] == 4
  assert r["batch_mismatch"] == []
  assert r["compiled_batch_shard"] == [2, 2, 32, 32, 3]  # 2 clips per chip
  assert r["rows_per_process"] == [8]  # each host feeds a quarter of the global batch of 32


@pytest.mark.slow
@pytest.mark.parametrize("fsdp_min_size", ["0", "256"], ids=["replicated", "fsdp"])
def test_state_is_laid_out_as_asked(compiled, fsdp_min_size):
  r = compiled[fsdp_min_size]
  assert r["state_mismatch"] == []
  assert (r["sharded_state_leaves"] > 0) == (fsdp_min_size != "0")


@pytest.mark.slow
@pytest.mark.parametrize("fsdp_min_size", ["0", "256"], ids=["replicated", "fsdp"])
def test_each_chip_holds_its_share_and_the_state_is_donated(compiled, fsdp_min_size):
  """The compiled (SPMD-partitioned) programs' own parameters are per-chip shards of the state and the batch: a
  replicated batch or state leaf shows up here even where the input shardings were reported as asked."""
  r = compiled[fsdp_min_size]
  assert r["train_unexpected"] == [] and r["eval_unexpected"] == []
  assert r["train_memory"]["aliased"] >= r["state_bytes_per_device"]  # the new state overwrites the donated one
  assert r["train_flops"] > 0


@pytest.mark.slow
def test_fsdp_shrinks_the_state_on_each_chip(compiled):
  assert compiled["256"]["state_bytes_per_device"] < compiled["0"]["state_bytes_per_device"] / 2
  assert compiled["256"]["train_memory"]["arguments"] < compiled["0"]["train_memory"]["arguments"]


@pytest.mark.slow
def test_a_mesh_that_hosts_cannot_feed_evenly_is_refused(compiled):
  assert "unequal shares" in compiled["uneven_mesh_error"]
