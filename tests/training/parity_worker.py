"""Runs one train step of a tiny CLIP-MG on a 1-device and on an N-device mesh and prints the differences as JSON.

Executed in a subprocess by test_multi_device.py, because the host device count must be set (XLA_FLAGS) before
JAX starts: python parity_worker.py <fsdp_min_size>[,<fsdp_min_size>...] <variant>
"""

import json
import sys

import jax
import ml_collections
import numpy as np

from clipmg_jax.models import clipmg
from clipmg_jax.training import defaults
from clipmg_jax.training import model_setup
from clipmg_jax.training import optimizer as optimizer_lib
from clipmg_jax.training import sharding as sharding_lib
from clipmg_jax.training import step as step_lib
from clipmg_jax.training import train_state as train_state_lib

GLOBAL_BATCH = 16
IMAGE = 32


def tiny_model_config(variant: str) -> ml_collections.ConfigDict:
  vit = dict(width=32, layers=2, heads=2, patch_size=16, image_size=IMAGE, mlp_dim=64, proj_dim=None)
  return clipmg.get_model_config(vit, num_classes=5, num_frames=2, num_pose_frames=4, trainable_blocks=1,
                                 variant=variant, heatmap=dict(resolution=16),
                                 skeleton=dict(features=(4, 8, 8), strides=((1, 2, 2), (1, 2, 2), (1, 1, 1)),
                                               depths=(1, 1, 1), embed_dim=16, num_groups=4),
                                 head=dict(hidden_dim=16, dropout=0.1))


def make_batch(num_classes: int) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(0)
  kp = rng.uniform(0, IMAGE, (GLOBAL_BATCH, 4, 18, 3)).astype(np.float32)
  kp[..., 2] = rng.uniform(0, 1, kp.shape[:-1])
  return dict(frames=rng.integers(0, 256, (GLOBAL_BATCH, 2, IMAGE, IMAGE, 3), dtype=np.uint8), keypoints=kp,
              label=rng.integers(0, num_classes, GLOBAL_BATCH).astype(np.int32),
              subject=np.zeros(GLOBAL_BATCH, np.int32), clip_id=np.arange(GLOBAL_BATCH, dtype=np.int32))


def one_step(num_devices: int, fsdp_min_size: int, variant: str):
  config = defaults.base_config()
  config.optimizer.learning_rate = 1e-2
  config.optimizer.warmup_steps = 0
  # Some gradients are exactly zero in exact arithmetic (attention key biases: softmax ignores a per-query constant),
  # so both runs hold only rounding noise there, and Adam's first step g / (|g| + eps) turns noise of 1e-9 into
  # steps of lr * 0.1 at eps = 1e-8. A larger eps keeps that amplification below the tolerance; the sharded
  # computation itself is what is compared.
  config.optimizer.eps = 1e-3
  config.loss.class_weighting = "sqrt_inverse"
  config.loss.label_smoothing = 0.1
  model_config = tiny_model_config(variant)
  bundle = model_setup.build_model(model_config)
  mesh = sharding_lib.make_mesh(num_devices)
  params = model_setup.init_params(bundle, jax.random.PRNGKey(0), IMAGE)
  trainable = bundle.trainable_mask(params)
  tx, schedule = optimizer_lib.make_optimizer(config.optimizer, 10, trainable)
  params_0 = jax.tree.map(np.array, params)  # copies: the step donates (and so deletes) the state's buffers
  state = train_state_lib.create_train_state(params, tx, jax.random.PRNGKey(1))
  shardings = sharding_lib.state_shardings(state, mesh, fsdp_min_size)
  state = jax.device_put(state, shardings)
  counts = np.array([30, 10, 5, 3, 1])
  from clipmg_jax.training import losses  # pylint: disable=import-outside-toplevel
  weights, offset = losses.make_loss_constants(config.loss, counts, 5)
  step = step_lib.make_train_step(bundle.module, tx, schedule, mesh=mesh, state_sharding=shardings,
                                  loss_config=config.loss, normalize=bundle.normalize,
                                  aux_loss_weights=bundle.aux_loss_weights,
                                  class_weights=weights, logit_offset=offset)
  batch = sharding_lib.place_batch(make_batch(5), mesh)
  new_state, metrics = step(state, batch)
  sharded_leaves = sum(1 for x in jax.tree.leaves(new_state.params) if not x.sharding.is_fully_replicated)
  return (float(metrics["loss"]), jax.tree.map(np.asarray, new_state.params), sharded_leaves,
          len(batch["frames"].sharding.device_set), params_0)


def main():
  fsdp_sizes, variant = [int(x) for x in sys.argv[1].split(",")], sys.argv[2]
  n = jax.device_count()
  loss_1, params_1, _, _, params_0 = one_step(1, 0, variant)
  results = {}
  for fsdp_min_size in fsdp_sizes:
    loss_n, params_n, sharded, batch_devices = one_step(n, fsdp_min_size, variant)[:4]
    diffs = [float(np.max(np.abs(a - b))) for a, b in zip(jax.tree.leaves(params_1), jax.tree.leaves(params_n))]
    moved = [float(np.max(np.abs(a - b))) for a, b in zip(jax.tree.leaves(params_1), jax.tree.leaves(params_0))]
    results[str(fsdp_min_size)] = dict(devices=n, batch_devices=batch_devices, loss_1=loss_1, loss_n=loss_n,
                                       max_param_diff=max(diffs), max_update=max(moved), sharded_leaves=sharded)
  print(json.dumps(results))


if __name__ == "__main__":
  main()
