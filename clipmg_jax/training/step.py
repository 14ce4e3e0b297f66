"""The jitted train and eval steps.

Both take the batch as it comes from the pipeline (frames uint8, keypoints in pixels) and do all array work on
the device: CLIP normalisation of the frames here, heatmap rendering inside the model. The train step is one
`jax.jit` with explicit shardings over the mesh's "data" axis and donates the train state.
"""

import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from clipmg_jax.training import losses
from clipmg_jax.training import pose_monitoring
from clipmg_jax.training import sharding as sharding_lib
from clipmg_jax.training.train_state import TrainState

Batch = dict[str, jax.Array]


def make_train_step(model: nn.Module, tx: optax.GradientTransformation, schedule: optax.Schedule, *,
                    mesh: jax.sharding.Mesh, state_sharding: Any, loss_config,
                    normalize: Callable[[jax.Array], jax.Array], aux_loss_weights: dict[str, float] | None = None,
                    class_weights: np.ndarray | None = None, logit_offset: np.ndarray | None = None,
                    skip_nonfinite: bool = False,
                    ) -> Callable[[TrainState, Batch], tuple[TrainState, dict[str, jax.Array]]]:
  """Returns step(state, batch) -> (new_state, metrics), jitted; `state` is donated.

  batch: frames uint8 (B, T, H, W, 3), keypoints float32 (B, Tp, 18, 3) in pixels of the HxW frames,
    label int32 (B,), optional mask (B,) (1 = real example; padding rows are ignored by the loss).
  normalize: uint8 frames -> the model's float input (ModelBundle.normalize: CLIP's mean/std for ClipMG).
  aux_loss_weights: {sown "aux" key: weight} of the auxiliary losses (ModelBundle.aux_loss_weights: "pose_logits",
    the auxiliary pose head; "vision_logits", robust fusion's vision classifier; "vision_distill_loss", its
    per-example distillation loss); a key ending in "_logits" adds the classification loss of those logits, another
    the mean of the per-example loss; a weight of 0 or a key the model does not sow adds nothing.
  metrics: float32 scalars loss (the total minimised), accuracy (top-1 on the raw logits), grad_norm (trainable
    grads, before clipping), learning_rate; with skip_nonfinite also nonfinite (1 when the step was not applied);
    with an auxiliary loss also main_loss and <name>_aux_loss for each (pose_aux_loss, vision_aux_loss).

  skip_nonfinite: a step whose loss, updated parameters or optimizer state hold a NaN/Inf is not applied: params and
    opt_state stay as they were (the step counter still advances, as the batch was consumed). Off by default: the
    extra check changes how XLA fuses the optimizer update, and with it the last bits of some optimizer-state
    values on finite steps too; the trainer instead stops on a non-finite loss or gradient norm and checks the
    state before saving or evaluating it.

  The loss is the classification loss of the logits plus, for each auxiliary weight > 0 whose logits the model sows
  (variants with both towers), that weight times the same loss of them.
  """
  weights = None if class_weights is None else jnp.asarray(class_weights)
  offset = None if logit_offset is None else jnp.asarray(logit_offset)
  smoothing = float(loss_config.label_smoothing)
  aux_weights = {k: float(w) for k, w in (aux_loss_weights or {}).items() if float(w) > 0}

  def step(state: TrainState, batch: Batch):
    dropout_rng = jax.random.fold_in(state.rng, state.step)
    frames, cached = model_inputs(batch, normalize)
    mask = batch.get("mask")

    def loss_of(logits):
      return losses.classification_loss(logits, batch["label"], weights=weights, logit_offset=offset,
                                        label_smoothing=smoothing, example_mask=mask)

    def loss_fn(params):
      logits, aux = model.apply({"params": params}, frames, batch["keypoints"], train=True,
                                rngs={"dropout": dropout_rng}, mutable=["aux"], **cached)
      loss = loss_of(logits)
      parts = {}
      for key, weight in aux_weights.items():  # in the order given: the pose loss first, as before
        if key not in aux.get("aux", {}):
          continue
        (value,) = aux["aux"][key]
        if key.endswith("_logits"):  # logits (B, C): the classification loss of them
          name, term = key.removesuffix("_logits") + "_aux_loss", loss_of(value)
        else:  # a per-example loss (B,) the model computed: its mean over the real examples
          valid = jnp.ones_like(value) if mask is None else mask.astype(jnp.float32)
          name, term = key, jnp.sum(value * valid) / jnp.maximum(jnp.sum(valid), 1.0)
        parts = dict(parts, main_loss=parts.get("main_loss", loss), **{name: term})
        loss = loss + weight * parts[name]
      return loss, (logits, parts)

    (loss, (logits, parts)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    extra = {}
    if skip_nonfinite:
      # The loss alone does not show a bad update: a finite loss can have NaN/Inf gradients, or a huge learning rate
      # can overflow the parameters. Check what would be kept, and keep the old values if any of it is not finite.
      finite = jnp.isfinite(loss) & all_finite((params, opt_state))
      params = keep_if(finite, params, state.params)
      opt_state = keep_if(finite, opt_state, state.opt_state)
      extra["nonfinite"] = 1.0 - finite.astype(jnp.float32)
    correct = (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)
    valid = jnp.ones_like(correct) if mask is None else mask.astype(jnp.float32)
    metrics = dict(
        loss=loss,
        accuracy=jnp.sum(correct * valid) / jnp.maximum(jnp.sum(valid), 1.0),
        grad_norm=optax.tree.norm(grads),
        learning_rate=jnp.asarray(schedule(state.step), jnp.float32),
        **parts,
        **extra,
    )
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
    return new_state, metrics

  data = sharding_lib.batch_sharding(mesh)
  return jax.jit(step, in_shardings=(state_sharding, data),
                 out_shardings=(state_sharding, sharding_lib.replicated(mesh)), donate_argnums=(0,))


def model_inputs(batch: Batch, normalize: Callable[[jax.Array], jax.Array]) -> tuple[jax.Array | None, dict]:
  """(the model's frames argument, its keyword arguments) for a batch: normalised frames, or, for a batch of a prefix
  cache (clipmg_jax/data/loader/token_pipeline.py: "tokens" instead of "frames"), None and the cached tokens."""
  if "tokens" in batch:
    return None, {"prefix_tokens": batch["tokens"]}
  return normalize(batch["frames"]), {}


def all_finite(tree: Any) -> jax.Array:
  """bool scalar: every floating-point value of the pytree is finite."""
  leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(jnp.result_type(x), jnp.inexact)]
  if not leaves:
    return jnp.array(True)
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def keep_if(ok: jax.Array, new: Any, old: Any) -> Any:
  """`new` where `ok`, else `old`, leaf by leaf (a select: the chosen values are passed through bit for bit)."""
  return jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, old)


def make_eval_step(model: nn.Module, *, mesh: jax.sharding.Mesh, params_sharding: Any,
                   normalize: Callable[[jax.Array], jax.Array],
                   ) -> Callable[[Any, Batch], dict[str, jax.Array]]:
  """Returns eval_step(params, batch) -> {"logits": float32 (B, C), and the per-window pose monitoring arrays
  float32 (B, T) of pose_monitoring.per_window where the model sows them}, replicated so that every host can read
  them all. Only this step makes "intermediates" mutable: training never computes what is sown there."""
  return jax.jit(functools.partial(eval_outputs, model, normalize),
                 in_shardings=(params_sharding, sharding_lib.batch_sharding(mesh)),
                 out_shardings=sharding_lib.replicated(mesh))


def eval_outputs(model: nn.Module, normalize: Callable[[jax.Array], jax.Array], params: Any,
                 batch: Batch) -> dict[str, jax.Array]:
  """What the eval step computes, unjitted (also the function clipmg_jax/exported/ serializes): {"logits" float32
  (B, C), and pose_monitoring.per_window's float32 (B, T) arrays where the model sows their sources}."""
  frames, cached = model_inputs(batch, normalize)
  logits, state = model.apply({"params": params}, frames, batch["keypoints"], train=False,
                              mutable=["intermediates"], **cached)
  return {"logits": logits.astype(jnp.float32), **pose_monitoring.per_window(state.get("intermediates", {}))}
