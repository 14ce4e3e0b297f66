"""AdamW with linear warmup + cosine decay, global-norm clipping and frozen parameters.

Frozen parameters go through `optax.set_to_zero()` inside `optax.multi_transform`, so they are never updated and
carry no optimizer state (Adam's moments exist only for trainable leaves).
"""

from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax

TRAINABLE = "trainable"
FROZEN = "frozen"


def make_schedule(config: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
  """Learning rate per step: linear warmup 0 -> lr over warmup_steps, then cosine down to lr * final_lr_fraction.

  Args:
    config: the `optimizer` block: learning_rate, warmup_steps, final_lr_fraction.
    total_steps: length of the whole run in optimizer steps.
  """
  warmup = min(int(config.warmup_steps), max(total_steps - 1, 0))
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0,
      peak_value=config.learning_rate,
      warmup_steps=warmup,
      decay_steps=max(total_steps, warmup + 1),
      end_value=config.learning_rate * config.final_lr_fraction,
  )


def weight_decay_mask(params: Any) -> Any:
  """True for matrices and kernels (ndim >= 2); biases, norms and embeddings vectors are not decayed."""
  return jax.tree.map(lambda p: jnp.ndim(p) >= 2, params)


def make_optimizer(config: ml_collections.ConfigDict, total_steps: int,
                   trainable: Any) -> tuple[optax.GradientTransformation, Callable[[Any], Any]]:
  """Builds the optimizer.

  Args:
    config: the `optimizer` block: learning_rate, warmup_steps, final_lr_fraction, weight_decay, b1, b2, eps,
      grad_clip_norm (<= 0 disables clipping).
    total_steps: length of the run (for the cosine schedule).
    trainable: pytree of bools with the structure of the params (True = updated), e.g. from `trainable_mask`.

  Returns:
    (transformation, schedule). The global norm used for clipping is over the trainable gradients only.
  """
  schedule = make_schedule(config, total_steps)
  parts = []
  if config.grad_clip_norm and config.grad_clip_norm > 0:
    parts.append(optax.clip_by_global_norm(config.grad_clip_norm))
  parts.append(optax.adamw(schedule, b1=config.b1, b2=config.b2, eps=config.get("eps", 1e-8),
                           weight_decay=config.weight_decay,
                           mask=weight_decay_mask))
  labels = jax.tree.map(lambda t: TRAINABLE if t else FROZEN, trainable)
  tx = optax.multi_transform({TRAINABLE: optax.chain(*parts), FROZEN: optax.set_to_zero()}, labels)
  return tx, schedule
