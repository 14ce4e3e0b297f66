"""The CLIP-MG model configuration: its defaults and checks, and what the model builds from it.

get_model_config holds every field with its meaning; vit_fields, compute_dtype, remat_parts and skeleton_encoder
turn a configuration into the ViT fields, the compute dtype, the rematerialised parts and the skeleton tower.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from clipmg_jax.models import skeleton as skeleton_lib
from clipmg_jax.models import variants as variants_lib
from clipmg_jax.models import vit as vit_lib

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def get_model_config(vit: Any = "B/16", **overrides) -> ml_collections.ConfigDict:
  """The model configuration; the defaults are the paper's setup (ViT-B/16, 8 RGB / 32 pose frames).

  Args:
    vit: a name in VIT_CONFIGS ("B/16", "tiny", ...) or a dict of VisionTransformer fields.
    **overrides: values to replace, nested dicts (heatmap=dict(resolution=64)) or dotted keys
      (**{"heatmap.resolution": 64}). Unknown keys raise KeyError.
  """
  config = ml_collections.ConfigDict()
  config.vit = vit if isinstance(vit, str) else dict(vit)
  config.num_classes = 32
  config.num_frames = 8  # RGB frames T
  config.num_pose_frames = 32  # pose frames T_p; window t holds pose frames [t T_p/T, (t+1) T_p/T)
  config.num_joints = 18  # COCO-18
  config.trainable_blocks = 2  # last ViT blocks updated (plus ln_post); the rest is frozen
  config.variant = "full"
  config.dtype = "float32"  # compute dtype: "float32" | "bfloat16"; parameters are always float32
  # Rematerialisation (memory for time; the function is unchanged): "vit" recomputes each trainable ViT block's
  # activations in the backward pass, "skeleton" the 3D-CNN's; e.g. ("vit", "skeleton"). docs/performance.md.
  config.remat = ()
  # Joints with confidence below this, or outside the frame, count for nothing (heatmaps, patch weights, gate).
  config.confidence_threshold = 0.1
  config.heatmap = ml_collections.ConfigDict(dict(
      resolution=256,  # heatmap cells per side (int or (R_h, R_w))
      sigma=2.5,  # Gaussian sigma in cells of a 256 x 256 heatmap; scales with the resolution
  ))
  config.skeleton = ml_collections.ConfigDict(dict(
      features=(64, 128, 256),
      kernels=((3, 5, 5), (3, 3, 3), (3, 3, 3)),
      strides=((2, 4, 4), (2, 2, 2), (1, 2, 2)),  # 32 x 256^2 -> 16 x 64^2 -> 8 x 32^2 -> 8 x 16^2
      depths=(1, 2, 2),
      embed_dim=512,
      num_groups=16,
      # How it is computed, not what: "separable" builds the stem's output from each heatmap's row and column
      # factors, "heatmaps" renders and convolves them; conv "auto" = im2col matmuls on CPU, XLA convs elsewhere.
      stem="separable",
      conv="auto",
  ))
  config.patch_weights = ml_collections.ConfigDict(dict(
      sigma=1.0,  # Gaussian kernel width in patches (1.0 = 16 px at patch 16)
      uniform_mass=1e-3,  # added to every patch before normalising: no valid joint -> uniform weights
  ))
  config.gate = ml_collections.ConfigDict(dict(
      confidence_scale_init=4.0,  # initial a in g = sigmoid(u . LN(s_t) + a r_t + b)
      bias_init=-2.0,  # initial b: g = 0.12 with no reliable joint, 0.88 with all joints at confidence 1
  ))
  config.cross_attention = ml_collections.ConfigDict(dict(num_heads=0))  # 0 = as many heads as the ViT
  # Two additions beyond the paper, off by default (clipmg_jax/models/variants.py EXTRAS turns both on):
  # pose_context: the head also gets the gated skeleton feature mean_t g_t LN(s_t) (variants with a skeleton).
  # pose_aux_weight > 0: an auxiliary pose-only head on mean_t s_t whose loss, times this weight, is added in
  # training (variants with both towers); predictions always come from the main head.
  config.head = ml_collections.ConfigDict(dict(hidden_dim=512, dropout=0.1, pose_context=False, pose_aux_weight=0.0))
  # Robust fusion, beyond the paper and off by default (variants.py ROBUST turns it on; docs/method.md "Robust
  # fusion"), in the variants with both towers:
  # vision_aux_weight > 0: the g = 0 path (the vision-only computation: mean-patch query, plain tokens, no pose
  # context) goes through the same cross-attention and head, and its loss, times this weight, is added in training.
  # reliability_floor > 0: the gate is multiplied by min(1, r_t / floor): 0 when no joint of the window is usable.
  # vision_readout: "shared" — the g = 0 path uses the model's cross-attention and head; "head" — it has its own
  # (vision_cross_attention, vision_head) over the same tokens; "tower" — also its own copy of the trainable ViT
  # blocks and ln_post (vision_top) over the frozen prefix: a visual_only classifier beside the fused one. With
  # "head" or "tower" the output moves from the fused logits to the vision logits as the clip's pose reliability
  # falls below the floor: z = lam z_fused + (1 - lam) z_vision, lam = min(1, mean_t r_t / floor).
  # distill_weight > 0 ("head"/"tower"): the vision classifier also learns the fused model's class probabilities
  # (cross-entropy to softmax(z_fused), held fixed), times this weight.
  # vision_lr_scale ("head"/"tower"): the vision classifier trains as a parameter group of its own (its own gradient
  # clip), at the learning rate times this scale.
  config.robust = ml_collections.ConfigDict(dict(vision_aux_weight=0.0, reliability_floor=0.0,
                                                 vision_readout="shared", distill_weight=0.0, vision_lr_scale=1.0))
  flat = {k: v for k, v in overrides.items() if "." in k}
  nested = {k: v for k, v in overrides.items() if "." not in k}
  unknown = sorted(k for k in nested if k not in config)
  if unknown:
    raise KeyError(f"unknown model config keys {unknown}; known: {sorted(config.keys())}")
  config.update(nested)
  if flat:
    config.update_from_flattened_dict(flat)
  validate_config(config)
  return config


VISION_READOUTS = ("shared", "head", "tower")  # robust.vision_readout


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the field when the configuration is inconsistent."""
  if config.variant not in variants_lib.VARIANTS:
    raise ValueError(f"config.variant={config.variant!r}; expected one of {variants_lib.VARIANTS}")
  if config.dtype not in _DTYPES:
    raise ValueError(f"config.dtype={config.dtype!r}; expected one of {sorted(_DTYPES)}")
  if config.num_pose_frames % config.num_frames:
    raise ValueError(f"num_pose_frames={config.num_pose_frames} is not a multiple of num_frames="
                     f"{config.num_frames}; each RGB frame needs a whole window of pose frames")
  remat_parts(config)
  layers = vit_fields(config)["layers"]
  if config.head.pose_aux_weight < 0:
    raise ValueError(f"head.pose_aux_weight={config.head.pose_aux_weight} must be >= 0")
  robust = config.get("robust") or {}
  for field in ("vision_aux_weight", "reliability_floor", "distill_weight"):
    if float(robust.get(field, 0.0)) < 0:
      raise ValueError(f"robust.{field}={robust.get(field)} must be >= 0")
  if not float(robust.get("vision_lr_scale", 1.0)) > 0:
    raise ValueError(f"robust.vision_lr_scale={robust.get('vision_lr_scale')} must be > 0")
  readout = robust.get("vision_readout", "shared")
  if readout not in VISION_READOUTS:
    raise ValueError(f"robust.vision_readout={readout!r}; expected one of {VISION_READOUTS}")
  if readout != "shared" and not float(robust.get("reliability_floor", 0.0)) > 0:
    raise ValueError(f"robust.vision_readout={readout!r} needs robust.reliability_floor > 0 (the fallback's scale)")
  if not 0 <= config.trainable_blocks <= layers:
    raise ValueError(f"trainable_blocks={config.trainable_blocks} outside [0, {layers}] for ViT {config.vit!r}")


def vit_fields(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """VisionTransformer fields of the model's tower. proj_dim is dropped: CLIP-MG uses tokens, not the embedding."""
  vit = config.vit if isinstance(config.vit, str) else dict(config.vit)
  fields = vit_lib.vit_config(vit)
  fields.pop("dtype", None)
  fields["proj_dim"] = None
  return fields


def remat_parts(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  parts = config.get("remat", ()) or ()
  parts = (parts,) if isinstance(parts, str) else tuple(parts)
  unknown = set(parts) - {"vit", "skeleton"}
  if unknown:
    raise ValueError(f"remat={parts!r}: unknown parts {sorted(unknown)}; expected some of ('vit', 'skeleton')")
  return parts


def compute_dtype(config: ml_collections.ConfigDict) -> Any:
  return _DTYPES[config.dtype]


def skeleton_encoder(config: ml_collections.ConfigDict, **kwargs) -> skeleton_lib.SkeletonEncoder:
  """The SkeletonEncoder of a model config (heatmap settings, CNN shape, implementation, dtype)."""
  sk = config.skeleton
  # frame_size (argument 2, counting self) is static under remat.
  encoder = (nn.remat(skeleton_lib.SkeletonEncoder, static_argnums=(2,)) if "skeleton" in remat_parts(config)
             else skeleton_lib.SkeletonEncoder)
  return encoder(
      features=tuple(sk.features), kernels=tuple(map(tuple, sk.kernels)), strides=tuple(map(tuple, sk.strides)),
      depths=tuple(sk.depths), embed_dim=sk.embed_dim, num_windows=config.num_frames, num_groups=sk.num_groups,
      resolution=config.heatmap.resolution, sigma=config.heatmap.sigma,
      confidence_threshold=config.confidence_threshold, stem=sk.get("stem", "separable"),
      conv=sk.get("conv", "auto"), dtype=compute_dtype(config), **kwargs)
