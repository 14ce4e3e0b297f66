"""A full disk while a command writes: one message naming the folder to free and what a rerun does, with no library
traceback around it (a train's checkpoint, whose Orbax writer threads each report it; the prefix cache, whose
message names --out, not a --workdir it does not have); a failed checkpoint leaves the last complete one."""

import errno
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import small_disk
from clipmg_jax.training import checkpointing

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
WRAPPER = pathlib.Path(__file__).with_name("full_disk_command.py")
# A tiny CLIP-MG on the tiny synthetic preset (tests/scripts/test_launch_local.py's sizes): one step, then the save.
TINY = ("--config.batch_size=8 --config.eval_batch_size=16 --config.eval_every_steps=0 --config.total_steps=1 "
        "--config.optimizer.warmup_steps=1 --config.model.vit.width=16 --config.model.vit.layers=2 "
        "--config.model.vit.heads=2 --config.model.vit.mlp_dim=32 --config.model.vit.image_size=32 "
        "--config.model.trainable_blocks=1 --config.model.skeleton.num_groups=4 --config.model.skeleton.embed_dim=16 "
        "--config.model.head.hidden_dim=16 --config.data.image_size=32 --config.data.worker_count=0 "
        "--config.data.synthetic.preset=tiny --config.data.validation.num_subjects=1 "
        "--config.init.allow_random_vit=True").split()


def _command(what: str, module: str, *args: str) -> subprocess.CompletedProcess:
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
  return subprocess.run([sys.executable, str(WRAPPER), what, module, *args], cwd=REPO_ROOT, env=env,
                        capture_output=True, text=True, timeout=600, check=False)


@pytest.mark.slow
def test_a_full_disk_at_a_train_checkpoint_is_one_message_and_nothing_after_it(tmp_path):
  workdir = tmp_path / "run"
  done = _command("checkpoint", "train", "--config", "configs/synthetic.py", "--workdir", str(workdir), *TINY,
                  f"--config.data.synthetic.cache_dir={tmp_path / 'data'}")
  output = done.stdout + done.stderr
  assert done.returncode == 1, output[-3000:]
  assert "Traceback" not in output and "Event loop is closed" not in output, output[-3000:]
  assert output.count("No space left on device") == 1, output[-3000:]  # not once per writer thread
  assert done.stderr.rstrip().splitlines()[-2:] == [
      f"disk full: [Errno 28] No space left on device: '{workdir / 'checkpoints' / '1'}'",
      f"Free space under --workdir={workdir} and run the same command again: it resumes from the last complete "
      "checkpoint."]
  assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == []  # the half-written one is removed


def test_cache_prefix_on_a_full_disk_names_its_out_folder_and_promises_no_resume(tmp_path):
  out = tmp_path / "cache"
  done = _command("cache", "cache_prefix", "--config", "configs/synthetic.py", "--out", str(out))
  assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
  assert done.stderr.rstrip().splitlines()[-2:] == [
      f"disk full: [Errno 28] No space left on device: '{out / 'train-00000.tfrecord'}'",
      f"Free space under --out={out} and run the same command again: the cache is built again from the start (a "
      "half-built one is never read)."]
  assert "--workdir" not in done.stderr and "resume" not in done.stderr


@pytest.fixture
def disk(tmp_path):
  """A real 512 KiB file system (tmpfs; skipped where it cannot be mounted), unmounted after the test."""
  path = tmp_path / "disk"
  if not small_disk.mount(path, "512k"):
    pytest.skip("cannot mount a small tmpfs here (needs root): full_disk_command.py's stand-in covers the message")
  try:
    yield path
  finally:
    small_disk.unmount(path)


def test_a_checkpoint_that_does_not_fit_is_the_os_error_and_the_last_complete_one_stays(disk):
  # tensorstore reports the OS's error as a ValueError of its own text: the save raises it as the OSError it is.
  ckpt = checkpointing.Checkpointer(disk / "checkpoints")
  ckpt.save(1, {"w": np.ones((16, 16), np.float32)}, None)
  with pytest.raises(OSError) as raised:
    ckpt.save(2, {"w": np.random.default_rng(0).random((512, 512), np.float32)}, None)  # 1 MiB
  assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(disk / "checkpoints" / "2")
  assert sorted(p.name for p in (disk / "checkpoints").iterdir()) == ["1"]  # the partial 2 is removed
  assert ckpt.latest_step() == 1
  ckpt.close()
