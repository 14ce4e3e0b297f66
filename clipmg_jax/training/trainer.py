"""The training loop: build everything from the config, resume from <workdir>/checkpoints, train, evaluate.

Read top to bottom: `Setup` builds model -> mesh -> parameter shapes -> optimizer -> shardings -> steps;
`train_and_evaluate` goes through setup -> checkpoint (resume or start) -> loop -> final evaluation -> eval.json;
`train_loop` is the loop itself (steps, logging, periodic validation, checkpoints, NaN checks, preemption).
A saved checkpoint is read back by runs.py (load_run, and evaluate_checkpoint: its stand-alone evaluation).
"""

import collections
import contextlib
import copy
import dataclasses
import functools
import json
import logging
import pathlib
import sys
import time
from typing import Any

import jax
import ml_collections
import numpy as np
import tqdm

from clipmg_jax.models import flops
from clipmg_jax.training import checkpointing
from clipmg_jax.training import distributed
from clipmg_jax.training import evaluation
from clipmg_jax.training import losses
from clipmg_jax.training import model_setup
from clipmg_jax.training import optimizer as optimizer_lib
from clipmg_jax.training import preemption
from clipmg_jax.training import sharding as sharding_lib
from clipmg_jax.training import step as step_lib
from clipmg_jax.training import train_state as train_state_lib
from clipmg_jax.training import writers
from clipmg_jax.training.data_source import DataSource


# Batches are placed on the devices this many steps before they are used.
PREFETCH_BATCHES = 2


class NonFiniteLossError(RuntimeError):
  """A step's loss, gradients or update were NaN/Inf; the step was not applied and the run stopped without saving.
  (config.nonfinite_skips > 0 tolerates that many consecutive such steps, skipping them.)"""


class ConfigError(ValueError):
  """A config value that cannot work with this machine (named field, the value, and what would)."""


class Setup:
  """Everything built from a config that training, stand-alone evaluation and prediction need, in the order it is
  built: model -> mesh -> parameter shapes -> optimizer -> state shardings -> steps."""

  def __init__(self, config: ml_collections.ConfigDict, data: DataSource,
               model: model_setup.ModelBundle | None = None, devices: list | None = None):
    """devices: the mesh's devices (default: this machine's; clipmg_jax.training.aot passes a TPU slice's)."""
    self.config = config
    self.data = data
    self.total_steps = int(config.total_steps)
    # --- model
    self.model = model or model_setup.build_model(config.model)
    if self.model.num_classes != len(data.class_names):
      raise ValueError(f"the model has {self.model.num_classes} classes but the dataset {len(data.class_names)}")
    # --- mesh
    self.mesh = sharding_lib.make_mesh(config.get("num_devices") or None, devices)
    _check_batch_sizes(config, self.mesh)
    sharding_lib.check_batch_layout(self.mesh, int(config.batch_size))
    # --- parameter shapes (nothing allocated), trainable mask, optimizer
    init_rng, self.train_rng = jax.random.split(jax.random.PRNGKey(config.seed))
    self.init_rng = init_rng
    abstract_params = jax.eval_shape(
        lambda r: model_setup.init_params(self.model, r, data.image_size), init_rng)
    self.trainable = self.model.trainable_mask(abstract_params)
    if config.get("train_all_params", False):
      # From random initialisation nothing is worth freezing, including the ViT stem the mask keeps frozen.
      self.trainable = jax.tree.map(lambda _: True, self.trainable)
    self.tx, self.schedule = optimizer_lib.make_optimizer(config.optimizer, self.total_steps, self.trainable)
    # --- shardings of the train state; the real arrays are created in place by fresh_state()
    abstract_state = jax.eval_shape(
        lambda p: train_state_lib.create_train_state(p, self.tx, self.train_rng), abstract_params)
    self.state_sharding = sharding_lib.state_shardings(abstract_state, self.mesh, config.get("fsdp_min_size", 0))
    self.abstract_state = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                                       abstract_state, self.state_sharding)

  # --- steps: both built here, each on first use (evaluation and prediction never build the train step)
  @functools.cached_property
  def train_step(self):
    config = self.config
    weights, offset = losses.make_loss_constants(config.loss, self.data.train_class_counts, self.model.num_classes)
    step = step_lib.make_train_step(
        self.model.module, self.tx, self.schedule, mesh=self.mesh, state_sharding=self.state_sharding,
        loss_config=config.loss, normalize=self.model.normalize, pose_aux_weight=self.model.pose_aux_weight,
        class_weights=weights, logit_offset=offset, skip_nonfinite=_nonfinite_skips(config) > 0)
    return distributed.compiled_together(step, "train_step")

  @functools.cached_property
  def eval_step(self):
    step = step_lib.make_eval_step(self.model.module, mesh=self.mesh, params_sharding=self.state_sharding.params,
                                   normalize=self.model.normalize)
    return distributed.compiled_together(step, "eval_step")

  def fresh_state(self) -> train_state_lib.TrainState:
    """Step-0 state: random init (+ pretrained vision weights when configured), placed with its shardings."""
    params = model_setup.init_params(self.model, self.init_rng, self.data.image_size,
                                     out_shardings=self.state_sharding.params)
    params = model_setup.load_pretrained_vision(params, self.config.get("init", ml_collections.ConfigDict()))
    state = jax.jit(lambda p: train_state_lib.create_train_state(p, self.tx, self.train_rng),
                    out_shardings=self.state_sharding)(params)
    return state

  def checkpointer(self, workdir: pathlib.Path) -> checkpointing.Checkpointer:
    """The checkpoints of <workdir>/checkpoints, recording the global batch size with the input position."""
    ckpt = self.config.checkpoint
    return checkpointing.Checkpointer(workdir / "checkpoints", keep_last=ckpt.keep_last, keep_best=ckpt.keep_best,
                                      global_batch_size=self.config.batch_size)

  # --- evaluation
  @property
  def has_validation(self) -> bool:
    return self.data.validation_batches is not None

  def evaluate(self, params: Any, *, split: str = "test", progress: bool = True) -> dict:
    """Metrics on split "test" (the final figures only) or "validation" (periodic evaluation, selection)."""
    batches = {"test": self.data.eval_batches, "validation": self.data.validation_batches}[split]
    if batches is None:
      raise ValueError(f"no {split} split: set config.data.validation (clipmg_jax/data/loader/validation.py)")
    predictions = evaluation.predict(params, self.eval_step, batches(), self.mesh, self.data.eval_batch_size,
                                     progress=progress)
    return dict(evaluation.compute_metrics(predictions, self.data.class_names), split=split)


def _check_batch_sizes(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh) -> None:
  """The global batch is split evenly over the devices of the mesh: say so before step 1 rather than fail in it."""
  n = int(mesh.shape[sharding_lib.DATA_AXIS])
  for field in ("batch_size", "eval_batch_size"):
    value = config.get(field)
    if value and int(value) % n:
      lower, upper = int(value) // n * n, -(-int(value) // n) * n
      raise ConfigError(f"config.{field}={value} is not divisible by the {n} devices of the mesh: use a multiple "
                        f"of {n} (e.g. --config.{field}={upper}" + (f" or {lower}" if lower else "") + ") or set "
                        "--config.num_devices")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path, data: DataSource,
                       model: model_setup.ModelBundle | None = None) -> dict:
  """Trains for config.total_steps (resuming from the latest checkpoint in workdir), then evaluates.

  Returns the final evaluation (also written to <workdir>/eval.json), or {} when stopped early by
  `config.stop_after_step` (a preemption stand-in: the process ends without a final checkpoint).
  Raises NonFiniteLossError when the loss is NaN/Inf; the last saved checkpoint stays the latest.
  """
  if model is None:
    model_setup.check_vision_init(config)
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  is_main = jax.process_index() == 0

  # --- model, mesh, shardings, steps
  setup = Setup(config, data, model)
  if not setup.has_validation:
    logging.warning("no validation split: no periodic evaluation, and no checkpoint can be chosen as best")
  logging.info("model: %.2fM parameters, %.2fM trainable; mesh %s; global batch %d",
               flops.count_params(setup.abstract_state.params) / 1e6,
               flops.count_params(setup.abstract_state.params, setup.trainable) / 1e6, dict(setup.mesh.shape),
               config.batch_size)

  # --- checkpoint: resume from the latest one, or start from step 0
  ckpt = setup.checkpointer(workdir)
  train_iter = data.train_iterator()
  if ckpt.latest_step() is not None:
    try:
      state = ckpt.restore(setup.abstract_state, train_iter, fallback=True)
    except BaseException:
      ckpt.close()
      raise
    logging.info("resuming from step %d (%s)", int(state.step), ckpt.directory)
    if is_main:
      _drop_lines_after(workdir / "metrics.jsonl", int(state.step))
  else:
    state = setup.fresh_state()
  if is_main:
    # Only once the checkpoints were found compatible: a resume that fails keeps the config that wrote them.
    (workdir / "config.json").write_text(config.to_json_best_effort(indent=1))

  # --- the loop, then the final evaluation
  writer = writers.MetricWriter(workdir, enabled=is_main)
  bar = progress_bar(setup, int(state.step), "train")
  try:
    with preemption.Watch() as watch:
      io = LoopIO(train_iter=train_iter, ckpt=ckpt, writer=writer, bar=bar, watch=watch)
      state, stopped = train_loop(setup, state, setup.train_step, io)
    if stopped:
      return {}
    bar.close()
    result = _final_evaluation(setup, state, io)
  finally:
    bar.close()
    writer.close()
    ckpt.close()

  # --- eval.json
  final_step = int(state.step)
  logging.info("final eval at step %d: %s", final_step, evaluation.summary_line(result))
  if is_main:
    evaluation.write_results(result, workdir, extra=dict(
        step=final_step, checkpoint="final",
        selection="none: the state after the last training step (validation only ranks the saved checkpoints)",
        validation=data.info.get("validation")))
  return result


def progress_bar(setup: Setup, initial: int, desc: str) -> tqdm.tqdm:
  """The loop's bar, shown by process 0 only. Redirected to a file, a line every 30 s instead of every step keeps
  the log readable."""
  return tqdm.tqdm(total=setup.total_steps, initial=initial, desc=desc, unit="step",
                   disable=jax.process_index() != 0, dynamic_ncols=True,
                   mininterval=0.5 if sys.stderr.isatty() else 30)


def _final_evaluation(setup: Setup, state, io: "LoopIO") -> dict:
  """Ranks the final state on validation like every other and saves it; then reads the test split, here and only
  here."""
  final_step = int(state.step)
  progress = jax.process_index() == 0
  val_metrics = None
  if setup.has_validation:
    val_metrics = _selection_metrics(_validate(setup, state, final_step, io, progress=progress))
  if io.ckpt.latest_step() != final_step:
    # No batch was pulled past the last step, so train_iter is at the final state's position.
    io.ckpt.save(final_step, state, io.train_iter, metrics=val_metrics)
  result = setup.evaluate(state.params, split="test", progress=progress)
  io.writer.write(final_step, evaluation.scalars(result), split="test")
  return result


def _validate(setup: Setup, state, step: int, io: "LoopIO", *, data_state=None, progress: bool = False) -> dict:
  """The validation split's evaluation of `state` at `step`, written to the metrics. A failing evaluation first
  saves the state (with the input position `data_state`, default the iterator's own)."""
  with _saved_if_failing(io.ckpt, step, state, io.train_iter, data_state):
    result = setup.evaluate(state.params, split="validation", progress=progress)
  io.writer.write(step, evaluation.scalars(result), split="validation")
  return result


def _selection_metrics(result: dict) -> dict:
  """A validation evaluation's scalars as saved with a checkpoint, marked so that --checkpoint=best ranks it."""
  return dict(evaluation.scalars(result), **{checkpointing.VALIDATION_MARK: 1.0})


@dataclasses.dataclass
class LoopIO:
  """What the loop reads from and writes to: the training input, the checkpoints, the metric writer, the progress
  bar and the preemption watch."""
  train_iter: Any
  ckpt: checkpointing.Checkpointer
  writer: writers.MetricWriter
  bar: tqdm.tqdm
  watch: preemption.Watch


def train_loop(setup: Setup, state, train_step, io: LoopIO) -> tuple[Any, bool]:
  """Steps from state.step to setup.total_steps with `train_step` (setup.train_step, or another task's step over the
  same state), logging, periodic validation and checkpoints.

  The host does not wait for the devices between log steps: step metrics stay on the devices, and the losses of all
  steps since the last check are fetched with the logged metrics (or before an evaluation, checkpoint or stop) and
  checked for NaN/Inf, so that a bad state is never evaluated or saved, even one from a step that was not logged.

  Returns (state, stopped_early)."""
  config, ckpt, writer, bar, train_iter = setup.config, io.ckpt, io.writer, io.bar, io.train_iter
  stop_after = int(config.get("stop_after_step", 0) or 0)
  last_saved = ckpt.latest_step()
  start = int(state.step)
  batches = _prefetch(train_iter, setup.mesh, setup.total_steps - start)
  unchecked = []  # (step, metrics on the devices) of the steps since the last check
  tolerated = _nonfinite_skips(config)
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
        raise preemption.Preempted(step, str(ckpt.directory))
      if stop:
        logging.warning("stop_after_step=%d reached: stopping as if preempted", stop_after)
        return state, True
  except KeyboardInterrupt:
    check()  # a NaN/Inf since the last check raises NonFiniteLossError here, and the bad state is not saved
    require_finite_state(int(state.step))
    step_now = int(state.step)
    if step_now > 0 and step_now != last_saved:
      ckpt.save(step_now, state, train_iter, data_state=positions[step_now])
    logging.warning("interrupted at step %d; checkpoint saved. Run the same command again to resume.", step_now)
    raise
  return state, False


def _fetch(tree: Any) -> Any:
  """Device -> host for a pytree of arrays: it waits for the steps that computed them, so the loop calls it only
  when it logs, evaluates, saves or stops."""
  return jax.device_get(tree)


def _prefetch(train_iter, mesh: jax.sharding.Mesh, num_batches: int, ahead: int = PREFETCH_BATCHES):
  """Yields (batch on the devices, iterator position just after pulling it) for `num_batches` batches.

  Each batch is pulled and placed `ahead` batches before it is used, so that reading and the host -> device copy
  overlap the steps still running. train_iter is then past the step being saved: a checkpoint of step s must save
  the position recorded with the batch of step s. No batch is pulled beyond `num_batches`, so at the end train_iter
  is at the position of the last one.
  """
  queue = collections.deque()
  for _ in range(num_batches):
    batch = sharding_lib.place_batch(next(train_iter), mesh)
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


def _nonfinite_skips(config: ml_collections.ConfigDict) -> int:
  """config.nonfinite_skips: consecutive non-finite steps skipped before the run stops (0 = stop at the first)."""
  return int(config.get("nonfinite_skips", 0) or 0)


def _is_due(step: int, every: int) -> bool:
  return every > 0 and step % every == 0


@jax.jit
def _state_finite(tree: Any) -> jax.Array:
  return step_lib.all_finite(tree)


def _drop_lines_after(path: pathlib.Path, step: int) -> None:
  """Removes the metrics.jsonl lines of steps after `step`: a resumed run redoes those steps and logs them again."""
  if not path.is_file():
    return
  lines = path.read_text().splitlines(keepends=True)
  kept = [line for line in lines if _line_step(line) <= step]
  if len(kept) != len(lines):
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(kept))
    tmp.replace(path)
    logging.info("metrics.jsonl: dropped %d lines after step %d (they are redone)", len(lines) - len(kept), step)


def _line_step(line: str) -> int:
  try:
    return int(json.loads(line)["step"])
  except (ValueError, KeyError, TypeError):
    return sys.maxsize  # a line torn by a killed run: dropped too


def _nonfinite_message(step, loss, grad_norm, run, last_saved, ckpt) -> str:
  what = (f"loss is {float(loss)} at step {step}" if not np.isfinite(loss) else
          f"non-finite update at step {step} (loss {float(loss)}, gradient norm {float(grad_norm)})")
  run_text = f" after {run - 1} skipped non-finite steps" if run > 1 else ""
  return (f"{what}{run_text}; stopping without saving this state. The last good checkpoint is "
          + (f"step {last_saved} in {ckpt.directory}" if last_saved is not None else "none (none saved yet)")
          + ". Lower optimizer.learning_rate (or raise optimizer.warmup_steps), check the inputs of this step, or "
          "set nonfinite_skips > 0 to skip isolated bad steps.")
