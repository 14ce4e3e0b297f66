"""Builds the model named by the config, initialises its parameters, and drops in pretrained vision weights."""

import dataclasses
import logging
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from clipmg_jax.data.keypoints import NUM_JOINTS
from clipmg_jax.models import variants
from clipmg_jax.models import vit


@dataclasses.dataclass(frozen=True)
class ModelBundle:
  """module: a Linen module called as module.apply({"params": p}, frames (B,T,H,W,3) float32 CLIP-normalised,
  keypoints (B,Tp,18,3) pixels of the HxW frames, train=bool) -> logits (B, C).
  trainable_mask: params -> pytree of bools (True = updated by the optimizer).
  example_inputs: image_size -> the positional inputs `init` is called with, for a module with other inputs than
  (frames, keypoints) (the contrastive pretraining model); None = zeros of input_shapes().
  normalize: uint8 frames (..., H, W, 3) -> the module's float input; the steps apply it on the device.
  aux_loss_weights: {key the module sows into "aux": weight} of the auxiliary losses the train step adds ("pose_logits":
  the auxiliary pose head; "vision_logits": robust fusion's vision path).
  optimizer_groups: parameters that train with an optimizer of their own (optimizer.make_optimizer's `groups`)."""
  module: nn.Module
  trainable_mask: Callable[[Any], Any]
  num_frames: int
  num_pose_frames: int
  num_classes: int
  example_inputs: Callable[[int], tuple] | None = None
  normalize: Callable[[jax.Array], jax.Array] = vit.normalize_images
  aux_loss_weights: dict[str, float] = dataclasses.field(default_factory=dict)
  optimizer_groups: dict[str, tuple[tuple[str, ...], float]] = dataclasses.field(default_factory=dict)


def build_model(model_config: ml_collections.ConfigDict) -> ModelBundle:
  """The CLIP-MG model (clipmg_jax.models.clipmg) for a `model` config block from get_model_config()."""
  from clipmg_jax.models import clipmg  # pylint: disable=import-outside-toplevel
  from clipmg_jax.models import clipmg_params  # pylint: disable=import-outside-toplevel
  module = clipmg.ClipMG(config=model_config)
  return ModelBundle(module=module,
                     trainable_mask=lambda params: clipmg_params.trainable_mask(params, model_config),
                     num_frames=int(model_config.num_frames), num_pose_frames=int(model_config.num_pose_frames),
                     num_classes=int(model_config.num_classes),
                     aux_loss_weights=aux_loss_weights(model_config),
                     optimizer_groups=clipmg_params.optimizer_groups(model_config))


def aux_loss_weights(model_config: ml_collections.ConfigDict) -> dict[str, float]:
  """{"pose_logits": head.pose_aux_weight, "vision_logits": robust.vision_aux_weight}: the weights of the auxiliary
  losses of a model config (0 = off), the pose loss first."""
  robust = model_config.get("robust") or {}
  return {"pose_logits": float(model_config.head.get("pose_aux_weight", 0.0)),
          "vision_logits": float(robust.get("vision_aux_weight", 0.0)),
          "vision_distill_loss": float(robust.get("distill_weight", 0.0))}


def input_shapes(bundle: ModelBundle, image_size: int, batch_size: int = 1) -> tuple[tuple, tuple]:
  """(frames shape, keypoints shape) of a batch."""
  return ((batch_size, bundle.num_frames, image_size, image_size, 3),
          (batch_size, bundle.num_pose_frames, NUM_JOINTS, 3))


def init_params(bundle: ModelBundle, rng: jax.Array, image_size: int, out_shardings: Any = None) -> Any:
  """Random float32 parameters, created directly with `out_shardings` (a pytree prefix) when given."""
  frames_shape, keypoints_shape = input_shapes(bundle, image_size)

  def init(rng):
    params_rng, dropout_rng = jax.random.split(rng)
    if bundle.example_inputs is not None:
      inputs = bundle.example_inputs(image_size)
    else:
      inputs = (jnp.zeros(frames_shape, jnp.float32), jnp.zeros(keypoints_shape, jnp.float32))
    variables = bundle.module.init({"params": params_rng, "dropout": dropout_rng}, *inputs, train=False)
    return variables["params"]

  return jax.jit(init, out_shardings=out_shardings)(rng)


class RandomVisionTowerError(ValueError):
  """The config freezes ViT blocks but gives no pretrained weights for them."""


def check_vision_init(config: ml_collections.ConfigDict) -> None:
  """Raises RandomVisionTowerError when training would keep frozen ViT blocks at their random initialisation.

  That happens when the model has a vision tower, freezes some of its blocks (model.trainable_blocks < layers) and
  config.init.vit_checkpoint is empty: such a run cannot learn what the paper's model learns, and would only show
  it hours later. config.init.allow_random_vit=True (smoke tests) or config.train_all_params=True lets it start.
  Configs whose blocks are all trainable (configs/synthetic.py) pass.
  """
  from clipmg_jax.models import clipmg_config  # pylint: disable=import-outside-toplevel
  model, init = config.model, config.get("init") or ml_collections.ConfigDict()
  if not variants.uses(model.variant).vision or init.get("vit_checkpoint") or init.get("allow_random_vit", False):
    return
  if config.get("train_all_params", False):
    return
  layers = clipmg_config.vit_fields(model)["layers"]
  frozen = layers - int(model.trainable_blocks)
  if frozen > 0:
    raise RandomVisionTowerError(
        f"config.model freezes {frozen} of the {layers} ViT blocks (model.trainable_blocks={model.trainable_blocks}) "
        f"but config.init.vit_checkpoint is empty, so they would stay randomly initialised. Port CLIP weights once "
        f"with `python data_prep/port_clip.py --checkpoint=<CLIP ViT-B/16> --out=<dir>` and pass "
        f"--config.init.vit_checkpoint=<dir>; for a smoke test, --config.init.allow_random_vit=True.")


def load_pretrained_vision(params: Any, init_config: ml_collections.ConfigDict) -> Any:
  """Replaces params["vit"] with pretrained CLIP vision weights when `init.vit_checkpoint` is set.

  The path is anything clipmg_jax.weights.port_checkpoint reads: a Hugging Face directory or weights file, an
  OpenAI/open_clip file, or a directory written by `port_clip` (fastest). Its tree must match params["vit"] leaf for
  leaf (name and shape; CLIP's unused projection is dropped); a mismatch is an error naming the leaf.
  """
  path = init_config.get("vit_checkpoint") if init_config is not None else None
  if not path:
    return params
  from clipmg_jax import weights  # pylint: disable=import-outside-toplevel
  from clipmg_jax.models import clipmg_params  # pylint: disable=import-outside-toplevel
  ported = weights.port_checkpoint(path)
  shardings = jax.tree.map(lambda x: x.sharding, params)
  params = clipmg_params.with_pretrained_vit(params, ported.params)  # checks every leaf's name and shape
  logging.info("loaded pretrained vision tower (%s layout) from %s", ported.layout, path)
  return jax.device_put(params, shardings)
