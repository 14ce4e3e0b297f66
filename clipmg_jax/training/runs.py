"""A trained run read back from its workdir: the config file, the checkpoint a rule picks ("latest", "best" or a
step) restored into the trainer's Setup (model, mesh, eval step), the class names; and the stand-alone evaluation
of such a checkpoint.

The one way every reader of a trained run loads it: `python -m clipmg_jax.evaluate` (evaluate_checkpoint),
`python -m clipmg_jax.predict`, `python -m clipmg_jax.inspect_clip` and the notebooks in notebooks/.
"""

import dataclasses
import importlib.util
import pathlib
from typing import Any

import jax
import ml_collections
import numpy as np

from clipmg_jax.data import input_setup
from clipmg_jax.data import pose_corruption
from clipmg_jax.data.data_source import DataSource
from clipmg_jax.data.loader import token_cache
from clipmg_jax.run.folder import RunFolder
from clipmg_jax.training import checkpointing
from clipmg_jax.training import defaults
from clipmg_jax.training import evaluation
from clipmg_jax.training import model_setup
from clipmg_jax.training import setup as setup_lib


def load_config(path: str | pathlib.Path, overrides: dict | None = None) -> ml_collections.ConfigDict:
  """A config file as `--config path[:arg]` reads it, with dotted-key overrides ({"total_steps": 10, ...})."""
  path, _, arg = str(path).partition(":")
  spec = importlib.util.spec_from_file_location(f"_clipmg_config_{abs(hash(path))}", path)
  if spec is None or not pathlib.Path(path).is_file():
    raise FileNotFoundError(f"config file {path} not found")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config(arg) if arg else module.get_config()
  defaults.override(config, overrides or {})
  return config


@dataclasses.dataclass
class Run:
  """A trained run ready to apply: its config, the trainer's Setup (model, mesh, eval step, data), the restored
  parameters, the checkpoint's step and the rule that chose it (checkpointing.Checkpointer.choose_step's)."""
  config: ml_collections.ConfigDict
  setup: setup_lib.Setup
  params: Any
  step: int
  rule: str = "latest"
  apply: Any = None  # jitted (params, frames, keypoints) -> (logits, intermediates), made on first use (inspection)

  @property
  def model(self):
    return self.setup.model.module

  @property
  def class_names(self) -> list[str]:
    return list(self.setup.data.class_names)


def load_run(config: ml_collections.ConfigDict, workdir: str | pathlib.Path, which: str = "latest", *,
             data: DataSource | None = None, model: model_setup.ModelBundle | None = None) -> Run:
  """Restores the checkpoint of <workdir>/checkpoints that `which` names: "latest", "best" (the highest validation
  top-1 among the kept ones; the latest when none carries validation metrics) or a step number.

  data: the run's DataSource; by default the config's (input_setup.make_data_source: for the synthetic config
  <workdir>/synthetic_data unless config.data.shards_dir says otherwise, made when absent); without_data(...) for a
  caller that reads no dataset. model: another model bundle than the config's (the tests' stand-ins).
  Nothing is written to the workdir.
  """
  workdir = pathlib.Path(workdir)
  check_selector(workdir, which)  # before any data work: an empty workdir or a wrong --checkpoint stops at once
  if data is None:
    data = input_setup.make_data_source(config, workdir)
    input_setup.check_same_dataset(config, data, RunFolder(workdir), "evaluation")
  setup = setup_lib.Setup(config, data, model)
  ckpt = setup.checkpointer(workdir)
  try:
    step, rule = ckpt.choose_step(which)
    if step not in ckpt.all_steps():
      raise checkpointing.NoCheckpointError(f"checkpoint {step} not in {ckpt.directory} (has {ckpt.all_steps()})")
    state = ckpt.restore(setup.abstract_state, None, step=step)
  finally:
    ckpt.close()
  token_cache.check_tower(config, state.params)
  return Run(config=input_setup.run_config(config, data), setup=setup, params=state.params, step=int(state.step),
             rule=rule)


SELECTORS = "latest, best (the highest validation top-1) or a kept step number"


def check_selector(workdir: str | pathlib.Path, which: str) -> None:
  """NoCheckpointError unless <workdir>/checkpoints holds checkpoints and `which` is "latest", "best" or one of their
  steps; the message lists the kept steps and the accepted selectors."""
  folder = RunFolder.of(workdir).checkpoints_dir
  steps = RunFolder.of(workdir).checkpoint_steps()
  if not steps:
    raise checkpointing.NoCheckpointError(f"no checkpoint in {folder}: train first (python -m clipmg_jax.train)")
  which = str(which).strip()
  if which in ("latest", "best") or (which.isdigit() and int(which) in steps):
    return
  what = f"no checkpoint {which} in {folder}" if which.isdigit() else f"--checkpoint={which!r} is not a checkpoint"
  raise checkpointing.NoCheckpointError(f"{what}: the kept steps are {steps}; --checkpoint takes {SELECTORS}.")


def without_data(config: ml_collections.ConfigDict, class_names: list[str],
                 class_counts: np.ndarray | None = None) -> DataSource:
  """A DataSource that reads no dataset, for a run applied to other inputs (predict) or only compiled
  (aot.make_setup): the class names, optionally training class counts (class-weighted losses need some), the frame
  size and the evaluation batch size of the config."""

  def no_batches():
    raise RuntimeError("this run reads no dataset")

  return DataSource(train_iterator=no_batches, eval_batches=no_batches, class_names=list(class_names),
                    train_class_counts=class_counts, image_size=int(config.data.image_size),
                    eval_batch_size=int(config.eval_batch_size))


def results_suffix(which: str, step: int) -> str:
  """What a stand-alone evaluation's files add to the training run's names (eval.json, confusion.png, ...): the
  rule asked for and the step it chose, "_latest_6", "_best_4" or "_step_4"."""
  return f"_{which if which in ('latest', 'best') else 'step'}_{step}"


def evaluate_checkpoint(config: ml_collections.ConfigDict, workdir: str | pathlib.Path, which: str = "latest", *,
                        data: DataSource | None = None, model: model_setup.ModelBundle | None = None,
                        plots: evaluation.Plots | None = None) -> dict:
  """Evaluates the checkpoint `which` names (load_run) on the test split and writes
  <workdir>/eval<results_suffix>.json (and, with `plots`, its figures) beside the training run's own eval.json, never over it.

  The file records the split, the checkpoint, the rule that chose it and the validation subjects it was chosen on.
  Returns what the file holds.
  """
  run = load_run(config, workdir, which, data=data, model=model)
  validation = run.setup.data.info.get("validation")
  selection = {
      "latest": "latest: the most recent checkpoint",
      "best": ("best: the highest validation top-1 among the kept checkpoints (validation subjects "
               f"{(validation or {}).get('subjects')})"),
      "latest_fallback": "latest: no checkpoint carries validation metrics",
      "asked": f"step {which}, as asked"}[run.rule]
  corruption = config.get("eval_corruption")
  result = run.setup.evaluate(run.params, split="test", progress=jax.process_index() == 0, corruption=corruption)
  extra = dict(step=run.step, checkpoint=str(which), selection=selection, validation=validation,
               **input_setup.run_description(run.config, run.setup.data))
  described = pose_corruption.describe(corruption)
  if described:  # a corrupted evaluation gets files of its own: eval_latest_250_pose50.json
    extra["pose_corruption"] = described
  if jax.process_index() == 0:
    # The numbers first: an unwritable workdir must not lose an evaluation that may have taken hours.
    print(f"evaluation of checkpoint {run.step}: {evaluation.summary_line(result)}", flush=True)
    suffix = results_suffix(which, run.step) + pose_corruption.results_suffix(described)
    path = evaluation.write_results(result, workdir, suffix=suffix, extra=extra, plots=plots)
    print(f"results written to {path}", flush=True)
  return dict(result, **extra)
