"""The training loop: steps, logging, periodic validation, checkpoints, NaN checks and preemption.

`train_loop` runs the steps of a `Setup` from a state to config.total_steps; `final_evaluation` then ranks the final
state on validation, saves it, and evaluates the test split. `LoopIO` holds what the loop reads and writes.
"""

import collections
import contextlib
import copy
import dataclasses
import logging
import time
from typing import Any

import jax
import numpy as np
import tqdm

from clipmg_jax.data import pose_corruption
from clipmg_jax.run import preemption
from clipmg_jax.training import checkpointing
from clipmg_jax.training import evaluation
from clipmg_jax.training import setup as setup_lib
from clipmg_jax.training import sharding as sharding_lib
from clipmg_jax.training import step as step_lib
from clipmg_jax.training import writers


# Batches are placed on the devices this many steps before they are used.
PREFETCH_BATCHES = 2


class NonFiniteLossError(RuntimeError):
  """A step's loss, gradients or update were NaN/Inf; the step was not applied and the run stopped without saving.
  (config.nonfinite_skips > 0 tolerates that many consecutive such steps, skipping them.)"""


@dataclasses.dataclass
class LoopIO:
  """What the loop reads from and writes to: the training input, the checkpoints, the metric writer, the progress
  bar and the preemption watch."""
  train_iter: Any
  ckpt: checkpointing.Checkpointer
  writer: writers.MetricWriter
  bar: tqdm.tqdm
  watch: preemption.Watch


def train_loop(setup: setup_lib.Setup, state, train_step, io: LoopIO) -> tuple[Any, bool]:
  """Steps from state.step to setup.total_steps with `train_step` (setup.train_step, or another task's step over the
  same state), logging, periodic validation and checkpoints.

  The host does not wait for the devices between log steps: step metrics stay on the devices, and the losses of all
  steps since the last check are fetched with the logged metrics (or before an evaluation, checkpoint or stop) and
  checked for NaN/Inf, so that a bad state is never evaluated or saved, even one from a step that was not logged.

  Returns (state, stopped_early)."""
  config, ckpt, writer, bar, train_iter = setup.config, io.ckpt, io.writer, io.bar, io.train_iter
  stop_after = int(config.stop_after_step)
  last_saved = ckpt.latest_step()
  start = int(state.step)
  corruption = config.get("train_corruption")  # training under failing pose (off by default; pose_corruption.py)
  batches = _prefetch(train_iter, setup.mesh, setup.total_steps - start, first_step=start + 1,
                      transform=lambda batch, step: pose_corruption.corrupt_training_batch(
                          batch, corruption, seed=int(config.seed), step=step))
  unchecked = []  # (step, metrics on the devices) of the steps since the last check
  tolerated = setup_lib.nonfinite_skips(config)
  skips = {"total": 0, "run": 0}  # skipped (non-finite) steps: all of them, and the current consecutive run
  positions = {}  # step -> iterator position just after its batch was pulled: what a checkpoint of it saves
  window_start, window_examples = time.perf_counter(), 0

  def check(metrics=None):
    """Fetches `metrics` and the unchecked steps' loss and non-finite flag in one transfer. A non-finite step was
    not applied (step.py); it is counted, and raises NonFiniteLossError unless within config.nonfinite_skips
    consecutive ones."""
    fetched, flags = _fetch((metrics, [(m["loss"], m["grad_norm"], m.get("nonfinite")) for _, m in unchecked]))
    steps = [s for s, _ in unchecked]
    unchecked.clear()
    for step, (loss, grad_norm, nonfinite) in zip(steps, flags):
      if nonfinite is None:  # the step does not skip: a NaN/Inf loss or gradient was applied, stop
        nonfinite = not (np.isfinite(loss) and np.isfinite(grad_norm))
      if not nonfinite:
        skips["run"] = 0
        continue
      skips["total"] += 1
      skips["run"] += 1
      if skips["run"] > tolerated:
        raise NonFiniteLossError(_nonfinite_message(step, loss, grad_norm, skips["run"], last_saved, ckpt))
      logging.warning("step %d not applied: loss %s, gradient norm %s (%d skipped so far)", step, float(loss),
                      float(grad_norm), skips["total"])
    return fetched

  def require_finite_state(step):
    """What is saved or evaluated must be finite: a huge learning rate can overflow the parameters with a finite
    loss and gradient (checked here, outside the step, so the step's own computation is unchanged)."""
    # Not through _fetch: this sync happens only where the loop syncs anyway (save, evaluation, last step).
    if not bool(jax.device_get(_state_finite((state.params, state.opt_state)))):
      raise NonFiniteLossError(
          f"non-finite update at step {step}: the parameters or optimizer state hold NaN/Inf after it; the run "
          "stops without saving. The last good checkpoint is "
          + (f"step {last_saved} in {ckpt.directory}" if last_saved is not None else "none (none saved yet)")
          + ". Lower optimizer.learning_rate (or raise optimizer.warmup_steps).")

  try:
    for step in range(start + 1, setup.total_steps + 1):
      batch, positions[step] = next(batches)
      positions.pop(step - 2, None)  # an interrupted state is at this step or the one before
      state, step_metrics = train_step(state, batch)
      unchecked.append((step, step_metrics))
      window_examples += config.batch_size
      bar.update(1)
      last = step == setup.total_steps  # the caller evaluates and saves the final state
      log = _is_due(step, config.log_every_steps) or last
      evaluate = not last and _is_due(step, config.eval_every_steps) and setup.has_validation
      # An evaluated state is always saved with its metrics, so that "best by validation top-1" can keep it.
      save = not last and (_is_due(step, config.checkpoint.every_steps) or evaluate)
      stop = not last and stop_after > 0 and step >= stop_after
      preempted = not last and io.watch.reached(step)
      save = save or preempted
      if not (log or evaluate or save or stop):
        continue  # no sync: the host runs ahead and queues the next steps
      metrics = check(step_metrics if log else None)  # waits for this step, so the throughput below is honest
      if evaluate or save or last:
        require_finite_state(step)
      if log:
        scalars = {k: float(v) for k, v in metrics.items() if k != "nonfinite"}
        if skips["total"]:
          scalars["skipped_steps"] = skips["total"]
        scalars["clips_per_second"] = window_examples / max(time.perf_counter() - window_start, 1e-9)
        writer.write(step, scalars)
        bar.set_postfix(loss=f"{scalars['loss']:.3f}", acc=f"{scalars['accuracy']:.2f}",
                        clips_s=f"{scalars['clips_per_second']:.1f}")
        window_start, window_examples = time.perf_counter(), 0
      if last:
        break
      eval_metrics = None
      if evaluate:
        result = _validate(setup, state, step, io, data_state=positions[step])
        eval_metrics = _selection_metrics(result)
        if not bar.disable:  # tqdm.write prints even for a disabled bar: process 0 only
          bar.write(f"step {step} validation: {evaluation.summary_line(result)}")
        window_start, window_examples = time.perf_counter(), 0
      if save:
        ckpt.save(step, state, train_iter, metrics=eval_metrics, data_state=positions[step])
        last_saved = step
      if preempted:
        bar.write(f"preempted (SIGTERM) at step {step}: checkpoint saved")
        raise preemption.Preempted.at_step(step, str(ckpt.directory))
      if stop:
        logging.warning("stop_after_step=%d reached: stopping as if preempted", stop_after)
        return state, True
  except KeyboardInterrupt:
    check()  # a NaN/Inf since the last check raises NonFiniteLossError here, and the bad state is not saved
    require_finite_state(int(state.step))
    step_now = int(state.step)
    if step_now > 0 and step_now != last_saved:
      ckpt.save(step_now, state, train_iter, data_state=positions[step_now])
    if step_now > 0:
      logging.warning("interrupted at step %d; checkpoint saved. Run the same command again to resume.", step_now)
    else:  # nothing trained yet: say so rather than promise a checkpoint that was never written
      logging.warning("interrupted before the first step: nothing was trained or saved.")
    raise
  return state, False


def final_evaluation(setup: setup_lib.Setup, state, io: LoopIO) -> dict:
  """Saves the final state first (unless its checkpoint exists: a rerun after a stop in here), so that nothing
  trained is lost whatever ends the evaluations; then ranks it on validation like every other (its metrics are
  attached to its checkpoint) and reads the test split, here and only here.

  A preemption signal during the save is handled when it ends; during the evaluations it stops the run at once
  (preemption.Watch.stops_at_once): the same command run again trains nothing and evaluates what is not yet
  recorded (validation when the checkpoint carries no validation metrics, then the test split)."""
  final_step = int(state.step)
  progress = jax.process_index() == 0
  with io.watch.deferred():
    if io.ckpt.latest_step() != final_step:
      # No batch was pulled past the last step, so train_iter is at the final state's position.
      io.ckpt.save(final_step, state, io.train_iter)
  message = (f"preempted (SIGTERM) during the final evaluation: checkpoint {final_step} (the final state) is saved "
             f"in {io.ckpt.directory}. Run the same command again to evaluate it (no step is trained again).")
  with io.watch.stops_at_once(message):
    if setup.has_validation and not io.ckpt.has_metrics(final_step, checkpointing.VALIDATION_MARK):
      result = setup.evaluate(state.params, split="validation", progress=progress)
      io.writer.write(final_step, evaluation.scalars(result), split="validation")
      io.ckpt.attach_metrics(final_step, _selection_metrics(result))
    result = setup.evaluate(state.params, split="test", progress=progress)
    io.writer.write(final_step, evaluation.scalars(result), split="test")
  return result


def _validate(setup: setup_lib.Setup, state, step: int, io: LoopIO, *, data_state=None) -> dict:
  """The validation split's evaluation of `state` at `step`, written to the metrics. A failing evaluation first
  saves the state (with the input position `data_state`, default the iterator's own)."""
  with _saved_if_failing(io.ckpt, step, state, io.train_iter, data_state):
    result = setup.evaluate(state.params, split="validation", progress=False)
  io.writer.write(step, evaluation.scalars(result), split="validation")
  return result


def _selection_metrics(result: dict) -> dict:
  """A validation evaluation's scalars as saved with a checkpoint, marked so that --checkpoint=best ranks it."""
  return dict(evaluation.scalars(result), **{checkpointing.VALIDATION_MARK: 1.0})


def _fetch(tree: Any) -> Any:
  """Device -> host for a pytree of arrays: it waits for the steps that computed them, so the loop calls it only
  when it logs, evaluates, saves or stops."""
  return jax.device_get(tree)


def _prefetch(train_iter, mesh: jax.sharding.Mesh, num_batches: int, ahead: int = PREFETCH_BATCHES, *,
              first_step: int = 1, transform=None):
  """Yields (batch on the devices, iterator position just after pulling it) for `num_batches` batches, the first
  for step `first_step`; `transform(host batch, step)` (the training corruption) is applied before placing it.

  Each batch is pulled and placed `ahead` batches before it is used, so that reading and the host -> device copy
  overlap the steps still running. train_iter is then past the step being saved: a checkpoint of step s must save
  the position recorded with the batch of step s. No batch is pulled beyond `num_batches`, so at the end train_iter
  is at the position of the last one.
  """
  queue = collections.deque()
  for i in range(num_batches):
    batch = next(train_iter)
    if transform is not None:
      batch = transform(batch, first_step + i)
    batch = sharding_lib.place_batch(batch, mesh)
    queue.append((batch, copy.deepcopy(train_iter.get_state())))  # a copy, in case the iterator reuses it
    if len(queue) > ahead:
      yield queue.popleft()
  yield from queue


@contextlib.contextmanager
def _saved_if_failing(ckpt: checkpointing.Checkpointer, step: int, state, train_iter, data_state=None):
  """An evaluation that fails (a missing or damaged split) first saves the state it was given, so no training is
  lost; the error then propagates."""
  try:
    yield
  except Exception:
    if ckpt.latest_step() != step:
      ckpt.save(step, state, train_iter, data_state=data_state)
      logging.error("evaluation at step %d failed; the state was saved as checkpoint %d first", step, step)
    raise


def _is_due(step: int, every: int) -> bool:
  return every > 0 and step % every == 0


@jax.jit
def _state_finite(tree: Any) -> jax.Array:
  return step_lib.all_finite(tree)


def _nonfinite_message(step, loss, grad_norm, run, last_saved, ckpt) -> str:
  what = (f"loss is {float(loss)} at step {step}" if not np.isfinite(loss) else
          f"non-finite update at step {step} (loss {float(loss)}, gradient norm {float(grad_norm)})")
  run_text = f" after {run - 1} skipped non-finite steps" if run > 1 else ""
  return (f"{what}{run_text}; stopping without saving this state. The last good checkpoint is "
          + (f"step {last_saved} in {ckpt.directory}" if last_saved is not None else "none (none saved yet)")
          + ". Lower optimizer.learning_rate (or raise optimizer.warmup_steps), check the inputs of this step, or "
          "set nonfinite_skips > 0 to skip isolated bad steps.")
