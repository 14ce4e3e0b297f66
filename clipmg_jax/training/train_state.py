"""The train state: everything the step reads and writes, as one pytree (checkpointed as a whole)."""

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
  """step: int32 scalar (optimizer steps taken); params: float32 model params; opt_state: optax state (no entries
  for frozen params); rng: PRNG key data (uint32 (2,)) from which each step's dropout key is folded."""
  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array


def create_train_state(params: Any, tx: optax.GradientTransformation, rng: jax.Array) -> TrainState:
  """Fresh state at step 0. `rng` is a raw uint32 key (jax.random.PRNGKey), stored as is so Orbax can save it."""
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params), rng=rng)
