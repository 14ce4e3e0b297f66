"""Everything a run builds from its config before the first step: the `Setup` of training, evaluation and prediction.

`Setup` builds model -> mesh -> parameter shapes -> optimizer -> state shardings -> steps, and checks first that the
batch sizes split over the mesh (ConfigError names the field and the values that would).
"""

import functools
import pathlib
from typing import Any

import jax
import ml_collections

from clipmg_jax.data import pose_corruption
from clipmg_jax.data.data_source import DataSource
from clipmg_jax.models import clipmg_config
from clipmg_jax.models import variants
from clipmg_jax.run import distributed
from clipmg_jax.run.folder import RunFolder
from clipmg_jax.training import checkpointing
from clipmg_jax.training import evaluation
from clipmg_jax.training import losses
from clipmg_jax.training import model_setup
from clipmg_jax.training import optimizer as optimizer_lib
from clipmg_jax.training import sharding as sharding_lib
from clipmg_jax.training import step as step_lib
from clipmg_jax.training import train_state as train_state_lib


class ConfigError(ValueError):
  """A config value that cannot work with this machine (named field, the value, and what would)."""


# Trainer fields that must be at least this (a negative step count would "train" nothing and evaluate the random
# model; a negative learning rate climbs the loss): (dotted field, lowest value, what it is).
_AT_LEAST = (
    ("total_steps", 1, "optimizer steps"), ("batch_size", 1, "clips per step"),
    ("eval_batch_size", 1, "clips per evaluation batch"), ("log_every_steps", 1, "steps"),
    ("eval_every_steps", 0, "steps (0: only at the end)"), ("checkpoint.every_steps", 0, "steps (0: only the last)"),
    ("optimizer.warmup_steps", 0, "steps"), ("optimizer.weight_decay", 0, "a decay rate"),
    ("data.image_size", 1, "pixels"))


def check_config(config: ml_collections.ConfigDict) -> None:
  """ConfigError naming the field for a value that cannot mean anything: counts and sizes below their minimum, a
  learning rate that is not positive, a crop that is not a whole number of ViT patches. Run by the train command
  before any work (command.run's check) and by Setup."""
  for field, lowest, unit in _AT_LEAST:
    value = config
    for key in field.split("."):
      value = value.get(key) if value is not None else None
    if value is not None and value < lowest:
      raise ConfigError(f"config.{field}={value}: expected at least {lowest} ({unit})")
  rate = config.optimizer.learning_rate
  if not rate > 0:
    raise ConfigError(f"config.optimizer.learning_rate={rate}: expected a positive rate")
  model = config.get("model")
  if model is not None and "variant" in model and variants.uses(model.variant).vision:  # CLIP-MG's, not pretraining's
    patch = int(clipmg_config.vit_fields(model)["patch_size"])
    if int(config.data.image_size) % patch:
      size = int(config.data.image_size)
      raise ConfigError(f"config.data.image_size={size} is not a multiple of the ViT's patch size {patch} "
                        f"(config.model.vit.patch_size): e.g. {size // patch * patch}")


class Setup:
  """Everything built from a config that training, stand-alone evaluation and prediction need, in the order it is
  built: model -> mesh -> parameter shapes -> optimizer -> state shardings -> steps."""

  def __init__(self, config: ml_collections.ConfigDict, data: DataSource,
               model: model_setup.ModelBundle | None = None, devices: list | None = None):
    """devices: the mesh's devices (default: this machine's; clipmg_jax.training.aot passes a TPU slice's)."""
    check_config(config)
    self.config = config
    self.data = data
    self.total_steps = int(config.total_steps)
    if config.get("train_corruption") is not None:
      pose_corruption.check_training(config.train_corruption)
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
    if config.train_all_params:
      # From random initialisation nothing is worth freezing, including the ViT stem the mask keeps frozen.
      self.trainable = jax.tree.map(lambda _: True, self.trainable)
    self.tx, self.schedule = optimizer_lib.make_optimizer(config.optimizer, self.total_steps, self.trainable,
                                                             self.model.optimizer_groups)
    # --- shardings of the train state; the real arrays are created in place by fresh_state()
    abstract_state = jax.eval_shape(
        lambda p: train_state_lib.create_train_state(p, self.tx, self.train_rng), abstract_params)
    self.state_sharding = sharding_lib.state_shardings(abstract_state, self.mesh, config.fsdp_min_size)
    self.abstract_state = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                                       abstract_state, self.state_sharding)

  # --- steps: both built here, each on first use (evaluation and prediction never build the train step)
  @functools.cached_property
  def train_step(self):
    config = self.config
    weights, offset = losses.make_loss_constants(config.loss, self.data.train_class_counts, self.model.num_classes)
    step = step_lib.make_train_step(
        self.model.module, self.tx, self.schedule, mesh=self.mesh, state_sharding=self.state_sharding,
        loss_config=config.loss, normalize=self.model.normalize, aux_loss_weights=self.model.aux_loss_weights,
        class_weights=weights, logit_offset=offset, skip_nonfinite=nonfinite_skips(config) > 0)
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

  def checkpointer(self, workdir: "str | pathlib.Path | RunFolder") -> checkpointing.Checkpointer:
    """The checkpoints of <workdir>/checkpoints, recording the global batch size with the input position."""
    ckpt = self.config.checkpoint
    return checkpointing.Checkpointer(RunFolder.of(workdir).checkpoints_dir, keep_last=ckpt.keep_last,
                                      keep_best=ckpt.keep_best,
                                      global_batch_size=self.config.batch_size)

  # --- evaluation
  @property
  def has_validation(self) -> bool:
    return self.data.validation_batches is not None

  def evaluate(self, params: Any, *, split: str = "test", progress: bool = True,
               corruption: ml_collections.ConfigDict | None = None) -> dict:
    """Metrics on split "test" (the final figures only) or "validation" (periodic evaluation, selection); with
    `corruption` (a config.eval_corruption), the keypoints corrupted first (pose_corruption.py)."""
    batches = {"test": self.data.eval_batches, "validation": self.data.validation_batches}[split]
    if batches is None:
      raise ValueError(f"no {split} split: set config.data.validation (clipmg_jax/data/loader/validation.py)")
    batches = pose_corruption.corrupted(batches(), corruption)
    predictions = evaluation.predict(params, self.eval_step, batches, self.mesh, self.data.eval_batch_size,
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


def nonfinite_skips(config: ml_collections.ConfigDict) -> int:
  """config.nonfinite_skips: consecutive non-finite steps skipped before the run stops (0 = stop at the first)."""
  return int(config.nonfinite_skips)
