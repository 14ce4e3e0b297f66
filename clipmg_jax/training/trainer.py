"""Training from a config: build everything, resume from <workdir>/checkpoints, train, evaluate.

Read top to bottom: `train_and_evaluate` goes through setup -> checkpoint (resume or start) -> loop -> final
evaluation -> eval.json. Its parts live in setup.py (`Setup`: model -> mesh -> parameter shapes -> optimizer ->
shardings -> steps) and loop.py (`train_loop`: steps, logging, periodic validation, checkpoints, NaN checks,
preemption); their names are importable from here too. A saved checkpoint is read back by runs.py (load_run, and
evaluate_checkpoint: its stand-alone evaluation).
"""

import json
import logging
import pathlib
import sys

import jax
import ml_collections
import tqdm

from clipmg_jax.data import input_setup
from clipmg_jax.data.data_source import DataSource
from clipmg_jax.data.loader import token_cache
from clipmg_jax.models import flops
from clipmg_jax.run import preemption
from clipmg_jax.run import session as session_lib
from clipmg_jax.run.folder import RunFolder
from clipmg_jax.training import evaluation
from clipmg_jax.training import loop as loop_lib
from clipmg_jax.training import model_setup
from clipmg_jax.training import setup as setup_lib
from clipmg_jax.training import writers

# The parts, where callers of the trainer look for them.
ConfigError = setup_lib.ConfigError
Setup = setup_lib.Setup
LoopIO = loop_lib.LoopIO
NonFiniteLossError = loop_lib.NonFiniteLossError
train_loop = loop_lib.train_loop


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path, data: DataSource,
                       model: model_setup.ModelBundle | None = None, *,
                       session: session_lib.Session | None = None, plots: evaluation.Plots | None = None) -> dict:
  """Trains for config.total_steps (resuming from the latest checkpoint in workdir), then evaluates.

  session: the command's writing Session (the workdir's lock and the SIGTERM watch, run/session.py); without one
  the trainer opens its own. plots: draws an evaluation's figures beside its JSON (figures.results.
  write_evaluation_plots; the train command passes it), None = numbers only.

  Returns the final evaluation (also written to <workdir>/eval.json), or {} when stopped early by
  `config.stop_after_step` (a preemption stand-in: the process ends without a final checkpoint).
  Raises NonFiniteLossError when the loss is NaN/Inf; the last saved checkpoint stays the latest;
  WorkdirLockedError when another run holds the workdir (run/workdir_lock.py); preemption.Preempted on SIGTERM,
  after saving what was trained (run/preemption.py: during set-up and the final evaluation there is nothing left to
  save).
  """
  if model is None:
    model_setup.check_vision_init(config)
  with session_lib.writing(config, workdir, session) as session:
    return _train_and_evaluate(config, session.folder, data, model, session.watch, plots)


def _train_and_evaluate(config, folder: RunFolder, data: DataSource, model, watch: preemption.Watch,
                        plots: evaluation.Plots | None) -> dict:
  is_main = jax.process_index() == 0

  # --- model, mesh, shardings, steps; checkpoint: resume from the latest one, or start from step 0
  with watch.stops_at_once(preemption.SETUP):
    setup = setup_lib.Setup(config, data, model)
    if not setup.has_validation:
      logging.warning("no validation split: no periodic evaluation, and no checkpoint can be chosen as best")
    logging.info("model: %.2fM parameters, %.2fM trainable; mesh %s; global batch %d",
                 flops.count_params(setup.abstract_state.params) / 1e6,
                 flops.count_params(setup.abstract_state.params, setup.trainable) / 1e6, dict(setup.mesh.shape),
                 config.batch_size)
    ckpt = setup.checkpointer(folder)
    try:
      train_iter = data.train_iterator()
      if ckpt.latest_step() is not None:
        input_setup.check_same_dataset(config, data, folder, "resume")
        # On another dataset, asked for (config.new_dataset): the trained state, and the new data from its start.
        position = None if config.get("new_dataset", False) else train_iter
        state = ckpt.restore(setup.abstract_state, position, fallback=True)
        logging.info("resuming from step %d (%s)%s", int(state.step), ckpt.directory,
                     "; the input position starts afresh (config.new_dataset)" if position is None else "")
        if is_main:
          writers.drop_lines_after(folder, int(state.step))
      else:
        state = setup.fresh_state()
      token_cache.check_tower(config, state.params)  # a prefix cache must come from this run's frozen tower
    except BaseException:
      ckpt.close()
      raise
  if is_main:
    # Only once the checkpoints were found compatible: a resume that fails keeps the config that wrote them.
    folder.config_file.write_text(input_setup.run_config(config, data).to_json_best_effort(indent=1))

  # --- the loop, then the final evaluation (the final state is saved before it)
  writer = writers.MetricWriter(folder, enabled=is_main)
  bar = progress_bar(setup, int(state.step), "train")
  try:
    io = loop_lib.LoopIO(train_iter=train_iter, ckpt=ckpt, writer=writer, bar=bar, watch=watch)
    with watch.deferred():
      state, stopped = loop_lib.train_loop(setup, state, setup.train_step, io)
    if stopped:
      return {}
    bar.close()
    result = loop_lib.final_evaluation(setup, state, io)
  finally:
    bar.close()
    writer.close()
    ckpt.close()

  # --- eval.json
  final_step = int(state.step)
  logging.info("final eval at step %d: %s", final_step, evaluation.summary_line(result))
  if is_main:
    evaluation.write_results(result, folder, plots=plots, extra=dict(
        step=final_step, checkpoint="final",
        selection="none: the state after the last training step (validation only ranks the saved checkpoints)",
        validation=data.info.get("validation"), **input_setup.run_description(config, data)))
  return result


def progress_bar(setup: setup_lib.Setup, initial: int, desc: str) -> tqdm.tqdm:
  """The loop's bar, shown by process 0 only. Redirected to a file, a line every 30 s instead of every step keeps
  the log readable."""
  return tqdm.tqdm(total=setup.total_steps, initial=initial, desc=desc, unit="step",
                   disable=jax.process_index() != 0, dynamic_ncols=True,
                   mininterval=0.5 if sys.stderr.isatty() else 30)
