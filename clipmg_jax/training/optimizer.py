"""AdamW with linear warmup + cosine decay, global-norm clipping, frozen parameters and optional parameter groups.

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


def make_optimizer(config: ml_collections.ConfigDict, total_steps: int, trainable: Any,
                   groups: dict[str, tuple[tuple[str, ...], float]] | None = None
                   ) -> tuple[optax.GradientTransformation, Callable[[Any], Any]]:
  """Builds the optimizer.

  Args:
    config: the `optimizer` block: learning_rate, warmup_steps, final_lr_fraction, weight_decay, b1, b2, eps,
      grad_clip_norm (<= 0 disables clipping).
    total_steps: length of the run (for the cosine schedule).
    trainable: pytree of bools with the structure of the params (True = updated), e.g. from `trainable_mask`.
    groups: {name: (top-level module names, learning-rate scale)}: trainable parameters under those modules get an
      optimizer of their own, with their own gradient clip and the schedule times the scale (robust fusion's vision
      classifier, ModelBundle.optimizer_groups). A module may sit under a "params" key.

  Returns:
    (transformation, schedule). The global norm used for clipping is over each group's trainable gradients only.
  """
  schedule = make_schedule(config, total_steps)
  groups = groups or {}

  def chain(scale: float) -> optax.GradientTransformation:
    parts = []
    if config.grad_clip_norm and config.grad_clip_norm > 0:
      parts.append(optax.clip_by_global_norm(config.grad_clip_norm))
    rate = schedule if scale == 1 else (lambda step: scale * schedule(step))
    parts.append(optax.adamw(rate, b1=config.b1, b2=config.b2, eps=config.get("eps", 1e-8),
                             weight_decay=config.weight_decay, mask=weight_decay_mask))
    return optax.chain(*parts)

  module_group = {module: name for name, (modules, _) in groups.items() for module in modules}

  def label(path, is_trainable):
    if not is_trainable:
      return FROZEN
    names = [str(getattr(p, "key", getattr(p, "name", p))) for p in path]
    top = names[1] if names[0] == "params" and len(names) > 1 else names[0]
    return module_group.get(top, TRAINABLE)

  labels = jax.tree_util.tree_map_with_path(label, trainable)
  transforms = {TRAINABLE: chain(1.0), FROZEN: optax.set_to_zero()}
  used = set(jax.tree.leaves(labels))
  transforms.update({name: chain(float(scale)) for name, (_, scale) in groups.items() if name in used})
  return optax.multi_transform(transforms, labels), schedule
