"""The trainer's config fields with their defaults; configs/*.py start from base_config() and fill model/data."""

import ast

import ml_collections

from clipmg_jax.data import pose_corruption
from clipmg_jax.run import distributed


def base_config() -> ml_collections.ConfigDict:
  """Trainer fields (units: steps are optimizer steps, batch sizes are global = summed over all devices/hosts)."""
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.batch_size = 32            # global batch; each of P processes loads batch_size / P
  config.eval_batch_size = 32       # global; the last partial batch is padded and masked
  config.total_steps = 1000
  config.log_every_steps = 10
  config.eval_every_steps = 0       # 0 = only at the end
  config.num_devices = 0            # 0 = all visible devices
  config.fsdp_min_size = 0          # > 0: shard state leaves with at least this many elements over the devices
  config.distributed = False        # True: join the other processes first (multi-host; distributed.py)
  config.cluster = distributed.cluster_config()  # coordinator, process count/id, timeouts (default: env/auto)
  config.stop_after_step = 0        # > 0: leave after this step as if preempted (resume tests, debugging)
  config.train_all_params = False   # True: ignore the model's frozen partition (random-init training)
  config.nonfinite_skips = 0        # consecutive NaN/Inf steps skipped (not applied) before stopping; 0 = stop
  # True: resume (or evaluate) a run on another dataset than the one it trained on, on purpose: the trained state is
  # kept and the input position starts afresh (input_setup.check_same_dataset refuses it otherwise).
  config.new_dataset = False

  config.optimizer = ml_collections.ConfigDict(dict(
      learning_rate=1e-4, warmup_steps=100, final_lr_fraction=0.01, weight_decay=0.05, b1=0.9, b2=0.999,
      eps=1e-8, grad_clip_norm=1.0))
  # Long-tailed labels: see clipmg_jax/training/losses.py.
  config.loss = ml_collections.ConfigDict(dict(
      class_weighting="none", logit_adjustment_tau=0.0, label_smoothing=0.0))
  config.checkpoint = ml_collections.ConfigDict(dict(every_steps=500, keep_last=2, keep_best=1))
  # vit_checkpoint: a ported CLIP tower (data_prep/port_clip.py). allow_random_vit: start even though frozen ViT
  # blocks would keep their random initialisation (smoke tests only; model_setup.check_vision_init).
  config.init = ml_collections.ConfigDict(dict(vit_checkpoint="", allow_random_vit=False))
  # Keypoints corrupted at evaluation time (python -m clipmg_jax.evaluate; off at level 0): pose_corruption.py.
  config.eval_corruption = pose_corruption.default_config()
  # Keypoints corrupted or dropped before each train step (robust fusion; off by default, not part of `+robust`):
  # pose_corruption.py.
  config.train_corruption = pose_corruption.train_config()
  config.model = ml_collections.ConfigDict()
  config.data = ml_collections.ConfigDict()
  return config


def override(config: ml_collections.ConfigDict, values: dict) -> ml_collections.ConfigDict:
  """Sets dotted fields in place, as `--config.a.b=v` would ({"a.b": v}); returns `config`. For code that builds a
  config from Python (tests, notebooks, benchmarks) rather than from the command line."""
  for key, value in values.items():
    target = config
    *parents, leaf = key.split(".")
    for name in parents:
      target = target[name]
    target[leaf] = value
  return config


def parse_overrides(items: list[str]) -> dict:
  """["model.skeleton.conv=xla", "total_steps=10", ...] -> {"model.skeleton.conv": "xla", "total_steps": 10}: each
  value read as a Python literal where it is one, else kept as a string (for benchmark command lines)."""
  out = {}
  for item in items:
    key, sep, text = item.partition("=")
    if not sep or not key:
      raise ValueError(f"override {item!r}: expected KEY=VALUE")
    try:
      out[key] = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      out[key] = text
  return out
