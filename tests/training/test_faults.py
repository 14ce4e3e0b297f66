"""Faults during training: non-finite updates, damaged checkpoints, preemption by SIGTERM, a failing evaluation,
a resume with an incompatible config, a mistyped shards_dir, and evaluation results that cannot be written."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

import training_stand_ins as stand_ins
from clipmg_jax import cli_errors
from clipmg_jax.data import input_setup
from clipmg_jax.data.records import manifest as manifest_lib
from clipmg_jax.data.records import random_shards
from clipmg_jax.data.records import tfrecord
from clipmg_jax.training import checkpointing
from clipmg_jax.training import runs
from clipmg_jax.training import setup as setup_lib
from clipmg_jax.training import trainer

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


def _saved_params(workdir: pathlib.Path, step: int):
  return ocp.StandardCheckpointer().restore(workdir / "checkpoints" / str(step) / "state")["params"]


def _steps(workdir: pathlib.Path) -> list[int]:
  return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


def _all_finite(tree) -> bool:
  return all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(tree))


def _train(workdir, data=None, **overrides):
  return trainer.train_and_evaluate(stand_ins.tiny_config(**overrides), workdir, data or stand_ins.tiny_data(),
                                    stand_ins.tiny_model())


# --- non-finite updates -----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_finite_loss_with_a_nonfinite_update_stops_and_saves_nothing_bad(tmp_path):
  # A learning rate beyond float32 makes the first update non-finite while its loss (computed before) is finite.
  with pytest.raises(trainer.NonFiniteLossError, match="non-finite update at step 1.*none saved yet"):
    _train(tmp_path, **{"total_steps": 2, "checkpoint.every_steps": 1, "optimizer.learning_rate": 1e39})
  assert not (tmp_path / "eval.json").exists()
  ckpt = checkpointing.Checkpointer(tmp_path / "checkpoints")
  assert ckpt.latest_step() is None  # the step-1 state was never saved
  ckpt.close()


@pytest.mark.slow
def test_isolated_nonfinite_steps_are_skipped_counted_and_never_applied(tmp_path):
  # Step 3's batch has NaN keypoints; with nonfinite_skips=1 the step is skipped and training goes on.
  _train(tmp_path, stand_ins.tiny_data(poison_step=3), nonfinite_skips=1, eval_every_steps=0,
         **{"checkpoint.every_steps": 1, "checkpoint.keep_last": 10})
  lines = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  skipped = {l["step"]: l.get("skipped_steps", 0) for l in lines if l["split"] == "train"}
  assert skipped == {1: 0, 2: 0, 3: 1, 4: 1, 5: 1, 6: 1}
  before, after = _saved_params(tmp_path, 2), _saved_params(tmp_path, 3)
  for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # the skipped step changed nothing
  assert _all_finite(_saved_params(tmp_path, 6))
  assert json.loads((tmp_path / "eval.json").read_text())["step"] == 6


# --- damaged checkpoints ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_unreadable_latest_checkpoint_falls_back_to_the_previous_one(tmp_path):
  _train(tmp_path, stop_after_step=5)  # keeps checkpoints 3 (evaluated) and 4
  (tmp_path / "checkpoints" / "4" / "state" / "_METADATA").unlink()
  _train(tmp_path)  # resumes from 3, redoing 4..6 (that a resume is exact is tested in test_resume_and_nan.py)
  assert (tmp_path / "checkpoints_unreadable" / "4" / "state").is_dir()  # set aside, not deleted
  assert 6 in _steps(tmp_path) and json.loads((tmp_path / "eval.json").read_text())["step"] == 6
  lines = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [l["step"] for l in lines if l["split"] == "train"] == [1, 2, 3, 4, 5, 6]  # redone steps logged once


def _flip_a_byte_in_the_largest_state_file(checkpoint: pathlib.Path) -> None:
  files = [p for p in (checkpoint / "state").rglob("*") if p.is_file() and not p.name.startswith("_")
           and p.suffix != ".json"]
  target = max(files, key=lambda p: p.stat().st_size)
  data = bytearray(target.read_bytes())
  data[len(data) // 2] ^= 0x40
  target.write_bytes(bytes(data))


@pytest.mark.slow
def test_a_changed_byte_in_a_checkpoint_is_a_named_error(tmp_path):
  _train(tmp_path, stop_after_step=3)  # checkpoint 2
  _flip_a_byte_in_the_largest_state_file(tmp_path / "checkpoints" / "2")
  setup = trainer.Setup(stand_ins.tiny_config(), stand_ins.tiny_data(), stand_ins.tiny_model())
  ckpt = checkpointing.Checkpointer(tmp_path / "checkpoints")
  with pytest.raises(checkpointing.CheckpointCorruptError, match="checkpoint 2"):
    ckpt.restore(setup.abstract_state, step=2)
  ckpt.close()


def test_digest_names_a_changed_leaf():
  state = {"a": np.arange(6, dtype=np.float32), "b": np.ones((2, 3), np.float32)}
  saved = checkpointing.state_digest(state)
  checkpointing.verify_digest(state, saved, "x")
  changed = dict(state, b=state["b"].copy())
  changed["b"][1, 2] = np.nextafter(np.float32(1), np.float32(2))  # one bit
  with pytest.raises(checkpointing.CheckpointCorruptError, match=r"1 changed leaves.*'b'"):
    checkpointing.verify_digest(changed, saved, "x")
  swapped = dict(state, a=state["a"][::-1].copy())  # same values, other positions
  with pytest.raises(checkpointing.CheckpointCorruptError):
    checkpointing.verify_digest(swapped, saved, "x")


@pytest.mark.slow
def test_failed_resume_leaves_config_json_and_checkpoints_alone(tmp_path):
  _train(tmp_path, stop_after_step=3)
  before = (tmp_path / "config.json").read_text()
  # A different optimizer partition: the saved state no longer fits this run's state.
  with pytest.raises(checkpointing.CheckpointCorruptError, match="original config"):
    _train(tmp_path, train_all_params=True)
  assert (tmp_path / "config.json").read_text() == before
  assert _steps(tmp_path) == [2, 3] and not (tmp_path / "checkpoints_unreadable").exists()


# --- preemption and failing evaluations -------------------------------------------------------------------------


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_the_resume_is_exact(tmp_path):
  workdir = tmp_path / "run"
  # The worker imports the project and training_stand_ins (beside it): its PYTHONPATH names both folders.
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), str(pathlib.Path(__file__).parent),
                                                     os.environ.get("PYTHONPATH", "")]))
  proc = subprocess.Popen([sys.executable, str(pathlib.Path(__file__).with_name("sigterm_worker.py")), str(workdir),
                           "40"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  metrics = workdir / "metrics.jsonl"
  deadline = time.time() + 600  # start-up and compilation on a busy machine
  while time.time() < deadline and not (metrics.is_file() and len(metrics.read_text().splitlines()) >= 3):
    time.sleep(0.05)
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=120)
  assert proc.returncode == 143, err[-3000:]
  line = next(l for l in out.splitlines() if l.startswith("preempted (SIGTERM) at step"))
  step = int(line.split("at step ")[1].split(":")[0])
  assert 1 <= step < 40 and _steps(workdir) == [step]
  _train(workdir, total_steps=40, eval_every_steps=0, **{"checkpoint.every_steps": 1000})
  reference = tmp_path / "reference"
  _train(reference, total_steps=40, eval_every_steps=0, **{"checkpoint.every_steps": 1000})
  for a, b in zip(jax.tree.leaves(_saved_params(workdir, 40)), jax.tree.leaves(_saved_params(reference, 40))):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6, rtol=0)


@pytest.mark.slow
def test_a_failing_evaluation_saves_the_state_first(tmp_path):
  data = stand_ins.tiny_data()

  def broken():
    raise FileNotFoundError("validation shard missing")
  data.validation_batches = broken
  with pytest.raises(FileNotFoundError, match="validation shard missing"):
    _train(tmp_path, data, **{"checkpoint.every_steps": 100})  # first evaluation at step 3, no checkpoint before
  assert _steps(tmp_path) == [3]


# --- data setup ---------------------------------------------------------------------------------------------------


def _synthetic_config(**data):
  from configs import synthetic  # pylint: disable=import-outside-toplevel
  config = synthetic.get_config()
  for key, value in data.items():
    config.data[key] = value
  return config


def test_a_mistyped_shards_dir_fails_instead_of_generating_data(tmp_path):
  config = _synthetic_config(shards_dir=str(tmp_path / "shardz"))
  with pytest.raises(manifest_lib.DataSetupError, match="shardz holds no manifest.json"):
    input_setup.make_data_source(config, tmp_path / "work")
  assert not (tmp_path / "work").exists() and not (tmp_path / "shardz").exists()


def test_a_missing_test_shard_fails_before_training(tmp_path):
  shards = tmp_path / "shards"
  random_shards.write_random_shards(shards, splits={"train": 8, "test": 4}, clips_per_shard=4)
  manifest = json.loads((shards / "manifest.json").read_text())
  test_shard = shards / manifest["splits"]["test"]["shards"][0]["path"]
  test_shard.with_name(test_shard.name + ".index").unlink()
  config = _synthetic_config(shards_dir=str(shards), synthetic=None)
  config.data.validation.num_subjects = 0
  with pytest.raises(manifest_lib.DataSetupError, match="split 'test'.*offset index .* is missing"):
    input_setup.make_data_source(config, tmp_path / "work")


@pytest.mark.slow
def test_evaluate_reports_its_numbers_even_when_eval_json_cannot_be_written(tmp_path, capsys):
  _train(tmp_path, stop_after_step=3)  # checkpoints 2 and 3 (evaluated)
  (tmp_path / "eval_latest_3.json").mkdir()  # writing the file fails
  with pytest.raises(OSError, match="eval_latest_3.json"):
    runs.evaluate_checkpoint(stand_ins.tiny_config(), tmp_path, data=stand_ins.tiny_data(),
                             model=stand_ins.tiny_model())
  out = capsys.readouterr().out
  assert "top1" in out
  saved = [line for line in out.splitlines() if "written to" in line]
  assert saved and json.loads(pathlib.Path(saved[0].split("written to ")[1].strip()).read_text())["step"] == 3


# --- one-screen messages for command-line and machine mistakes ---------------------------------------------------


@pytest.mark.parametrize("error,expected", [
    (OSError(28, "No space left on device", "/w/checkpoints/7"), "disk full: [Errno 28] No space left on device"),
    (tfrecord.CorruptRecordError("/s/test-00000.tfrecord", 42, "data CRC mismatch"),
     "--config.data.skip_corrupt=True"),
    (manifest_lib.DataSetupError("no shards"), "DataSetupError: no shards"),
])
def test_known_failures_are_one_message_without_traceback(error, expected):
  with pytest.raises(SystemExit) as exit_info:
    with cli_errors.known_failures("/w"):  # as every command's main runs (clipmg_jax/command.py)
      raise error
  message = str(exit_info.value.code)
  assert expected in message and len(message.splitlines()) <= 3 and exit_info.value.__suppress_context__
  if isinstance(error, OSError):
    assert "--workdir=/w" in message and "resumes" in message
  other = OSError(13, "Permission denied")  # not a full disk: the real error propagates
  with pytest.raises(OSError, match="Permission denied"):
    with cli_errors.known_failures("/w"):
      raise other


@pytest.mark.slow
def test_command_line_mistakes_are_one_short_message(tmp_path):
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))

  def train(*args):
    return subprocess.run([sys.executable, "-m", "clipmg_jax.train", "--workdir", str(tmp_path / "w"), *args],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
  typo = train("--config", "configs/synthetic.py", "--config.optimizer.learning_rat=1e-3")
  missing = train("--config", "configs/synthetc.py")
  for run, names in ((typo, ["learning_rat", "learning_rate"]), (missing, ["configs/synthetc.py"])):
    assert run.returncode != 0 and "Traceback" not in run.stderr, run.stderr[-3000:]
    assert all(n in run.stderr for n in names), run.stderr[-3000:]
    assert len(run.stderr.strip().splitlines()) <= 6, run.stderr
  assert not (tmp_path / "w").exists()


def test_a_batch_not_divisible_by_the_devices_is_named_before_step_one():
  class FourDevices:
    shape = {"data": 4}
  config = stand_ins.tiny_config()
  config.batch_size, config.eval_batch_size = 6, 8
  with pytest.raises(trainer.ConfigError, match=r"config.batch_size=6 is not divisible by the 4 devices.*"
                                                r"--config.batch_size=8 or 4"):
    setup_lib._check_batch_sizes(config, FourDevices())  # pylint: disable=protected-access
