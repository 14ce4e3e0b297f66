"""The train loop without a host sync per step: NaN/Inf caught over whole windows, prefetch with exact resume."""

import json

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
import tqdm

import training_stand_ins as stand_ins
from clipmg_jax.training import checkpointing
from clipmg_jax.training import loop
from clipmg_jax.training import trainer

# Logs at steps 4 and 6 only; checkpoints at 2 and 4.
CONFIG = {"log_every_steps": 4, "eval_every_steps": 0, "checkpoint.every_steps": 2}


def _run(workdir, data=None, **overrides):
  return trainer.train_and_evaluate(stand_ins.tiny_config(**{**CONFIG, **overrides}), workdir,
                                    data or stand_ins.tiny_data(), stand_ins.tiny_model())


def _latest(workdir):
  """(latest step, its params) or (None, None)."""
  ckpt = checkpointing.Checkpointer(workdir / "checkpoints")
  step = ckpt.latest_step()
  ckpt.close()
  if step is None:
    return None, None
  return step, ocp.StandardCheckpointer().restore(ckpt.directory / str(step) / "state")["params"]


def _interrupting_bar(at_step):
  """A progress bar that raises KeyboardInterrupt (as Ctrl-C would) right after step `at_step` was dispatched."""
  class Bar(tqdm.tqdm):
    def update(self, n=1):
      super().update(n)
      if self.n == at_step:
        raise KeyboardInterrupt
  return Bar


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("full")
  _run(workdir)
  return workdir


@pytest.mark.parametrize("overrides, last_good", [
    ({}, 2),  # found at the log step 4
    ({"log_every_steps": 5}, 2),  # found before the checkpoint of step 4, which is not a log step
    ({"log_every_steps": 5, "checkpoint.every_steps": 0, "eval_every_steps": 4}, None),  # before the evaluation
])
def test_nan_at_an_unlogged_step_stops_before_anything_is_saved(tmp_path, overrides, last_good):
  # Step 3 is never a log step; its NaN params make every later loss NaN too, so the error must name step 3.
  expected = f"step {last_good} in" if last_good is not None else "none"
  with pytest.raises(trainer.NonFiniteLossError, match=f"loss is nan at step 3;.*last good checkpoint is {expected}"):
    _run(tmp_path, stand_ins.tiny_data(poison_step=3), **overrides)
  step, params = _latest(tmp_path)
  assert step == last_good
  if params is not None:
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(params))
  assert not (tmp_path / "eval.json").exists()


def test_nan_at_the_last_step_is_not_saved_as_final(tmp_path):
  with pytest.raises(trainer.NonFiniteLossError, match="loss is nan at step 6;.*last good checkpoint is step 4"):
    _run(tmp_path, stand_ins.tiny_data(poison_step=6), log_every_steps=5)
  assert _latest(tmp_path)[0] == 4


def test_interrupt_after_an_unchecked_nan_saves_nothing(tmp_path, monkeypatch):
  monkeypatch.setattr(tqdm, "tqdm", _interrupting_bar(at_step=3))
  # Both caught: a KeyboardInterrupt escaping a test would end the whole test session.
  with pytest.raises((trainer.NonFiniteLossError, KeyboardInterrupt)) as raised:
    _run(tmp_path, stand_ins.tiny_data(poison_step=3))
  assert raised.type is trainer.NonFiniteLossError
  assert raised.match("loss is nan at step 3;.*last good checkpoint is step 2")
  assert _latest(tmp_path)[0] == 2


def _assert_same_params(workdir_a, workdir_b):
  step_a, params_a = _latest(workdir_a)
  step_b, params_b = _latest(workdir_b)
  assert step_a == step_b == 6
  for a, b in zip(jax.tree.leaves(params_a), jax.tree.leaves(params_b)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6, rtol=0)


def test_stopped_run_resumes_exactly_with_batches_pulled_ahead(tmp_path, full_run):
  # When step 4 is saved, the batches of steps 5 and 6 have already been pulled from the iterator.
  assert _run(tmp_path, stop_after_step=5) == {}
  assert _latest(tmp_path)[0] == 4
  _run(tmp_path)
  _assert_same_params(full_run, tmp_path)
  lines = [json.loads(l) for l in (full_run / "metrics.jsonl").read_text().splitlines()]
  train = [l for l in lines if l["split"] == "train"]
  assert [l["step"] for l in train] == [4, 6]
  assert {"loss", "accuracy", "grad_norm", "learning_rate", "clips_per_second"} <= set(train[0])


def test_interrupted_run_saves_the_position_of_its_state_and_resumes_exactly(tmp_path, full_run, monkeypatch):
  with monkeypatch.context() as patch:
    patch.setattr(tqdm, "tqdm", _interrupting_bar(at_step=5))
    with pytest.raises(KeyboardInterrupt):
      _run(tmp_path)
  assert _latest(tmp_path)[0] == 5  # saved on the interrupt, with the batch of step 6 already pulled
  _run(tmp_path)
  _assert_same_params(full_run, tmp_path)


def test_metrics_reach_the_host_only_at_log_steps(tmp_path, monkeypatch):
  fetches = []
  fetch = loop._fetch  # pylint: disable=protected-access
  monkeypatch.setattr(loop, "_fetch", lambda tree: fetches.append(tree) or fetch(tree))
  _run(tmp_path, log_every_steps=3, **{"checkpoint.every_steps": 0})
  assert len(fetches) == 2  # steps 3 and 6, each with the losses of its 3 steps
  assert [len(losses) for _, losses in fetches] == [3, 3]
