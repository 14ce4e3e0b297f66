"""bfloat16 compute with float32 parameters: the step runs, keeps float32 params and tracks the float32 loss."""

import jax
import numpy as np
import pytest

import parity_worker
from clipmg_jax.training import defaults
from clipmg_jax.training import model_setup
from clipmg_jax.training import optimizer as optimizer_lib
from clipmg_jax.training import sharding as sharding_lib
from clipmg_jax.training import step as step_lib
from clipmg_jax.training import train_state as train_state_lib


def _loss_after_step(dtype: str):
  config = defaults.base_config()
  model_config = parity_worker.tiny_model_config("full")
  model_config.dtype = dtype
  bundle = model_setup.build_model(model_config)
  mesh = sharding_lib.make_mesh(1)
  params = model_setup.init_params(bundle, jax.random.PRNGKey(0), parity_worker.IMAGE)
  tx, schedule = optimizer_lib.make_optimizer(config.optimizer, 10, bundle.trainable_mask(params))
  state = train_state_lib.create_train_state(params, tx, jax.random.PRNGKey(1))
  shardings = sharding_lib.state_shardings(state, mesh)
  step = step_lib.make_train_step(bundle.module, tx, schedule, mesh=mesh, state_sharding=shardings,
                                  loss_config=config.loss, normalize=bundle.normalize,
                                  aux_loss_weights=bundle.aux_loss_weights)
  state, metrics = step(jax.device_put(state, shardings),
                        sharding_lib.place_batch(parity_worker.make_batch(5), mesh))
  return float(metrics["loss"]), state.params


@pytest.mark.slow
def test_bfloat16_compute_keeps_float32_params():
  loss32, _ = _loss_after_step("float32")
  loss16, params16 = _loss_after_step("bfloat16")
  assert all(x.dtype == np.float32 for x in jax.tree.leaves(params16))
  assert np.isfinite(loss16)
  assert abs(loss16 - loss32) < 0.05 * abs(loss32)  # bf16 has ~3 significant digits
