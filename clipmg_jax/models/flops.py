"""Parameter and FLOP counts of CLIP-MG and its components, from XLA's cost analysis on abstract shapes.

Nothing is executed or compiled: each function is traced and lowered with jax.ShapeDtypeStruct inputs and XLA's
HLO cost analysis counts its floating-point operations (a multiply-add = 2 FLOPs, exps and divisions = 1). So the
figures of ViT-B/16 are available on a laptop in seconds.
"""

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from clipmg_jax.models import clipmg as clipmg_lib
from clipmg_jax.models import clipmg_config
from clipmg_jax.models import pose_guidance
from clipmg_jax.models import readout
from clipmg_jax.models import skeleton as skeleton_lib
from clipmg_jax.models import variants
from clipmg_jax.models import vit as vit_lib


def count_flops(fn: Callable[..., Any], *args: Any) -> float:
  """Forward FLOPs of fn(*args); args may be arrays or jax.ShapeDtypeStruct (then nothing runs)."""
  cost = jax.jit(fn).lower(*args).cost_analysis()
  if isinstance(cost, (list, tuple)):  # older JAX returns one dict per computation
    cost = cost[0]
  return float(cost["flops"])


def count_params(tree: Any, mask: Any | None = None) -> int:
  """Number of scalars in a pytree of arrays or ShapeDtypeStructs (only where `mask`, a pytree of bools with the same
  structure, is True, when given)."""
  leaves = jax.tree.leaves(tree)
  if mask is not None:
    leaves = [x for x, m in zip(leaves, jax.tree.leaves(mask)) if m]
  return int(sum(x.size for x in leaves))


def _abstract_init(module: Any, *args: Any, **kwargs: Any) -> Any:
  return jax.eval_shape(lambda *a: module.init(jax.random.key(0), *a, **kwargs), *args)["params"]


def _spec(shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.ShapeDtypeStruct:
  return jax.ShapeDtypeStruct(shape, dtype)


def vit_forward_flops(vit: Any = "B/16", num_frames: int = 8, image_size: int = 224) -> float:
  """Forward FLOPs of the CLIP vision tower (tokens up to the last block) on num_frames images."""
  fields = vit_lib.vit_config(vit)
  fields.pop("dtype", None)
  fields["proj_dim"] = None
  model = vit_lib.VisionTransformer(**fields)
  images = _spec((num_frames, image_size, image_size, 3))
  params = _abstract_init(model, images)
  return count_flops(lambda p, x: model.apply({"params": p}, x)["last_hidden_state"], params, images)


def reference_formulation(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A copy of `config` computing the skeleton branch as written: dense heatmaps into XLA convolutions.

  FLOPs are counted on this form, without rematerialisation, so a faster formulation of the same function (the
  separable stem, im2col matmuls) or recomputation does not change the model's FLOPs: "model FLOPs" stay the
  arithmetic of the model as defined.
  """
  config = ml_collections.ConfigDict(config.to_dict())
  config.skeleton.stem = "heatmaps"
  config.skeleton.conv = "xla"
  config.remat = ()  # recomputation is not model arithmetic
  return config


def skeleton_encoder_flops(config: ml_collections.ConfigDict) -> tuple[float, int]:
  """(forward FLOPs, parameters) of the 3D-CNN of `config` for one clip (heatmap rendering not included)."""
  config = reference_formulation(config)
  encoder = clipmg_config.skeleton_encoder(config)
  frame = (config.num_pose_frames * 8, config.num_pose_frames * 8)  # any frame size; the heatmaps do not depend on it
  keypoints = _spec((1, config.num_pose_frames, config.num_joints, 3))
  params = jax.eval_shape(lambda k: encoder.init(jax.random.key(0), k, frame), keypoints)["params"]
  render = lambda k: skeleton_lib.render_heatmaps(
      k, frame, resolution=config.heatmap.resolution, sigma=config.heatmap.sigma,
      confidence_threshold=config.confidence_threshold)
  total = count_flops(lambda p, k: encoder.apply({"params": p}, k, frame), params, keypoints)
  return total - count_flops(render, keypoints), count_params(params)


def component_table(config: ml_collections.ConfigDict, image_size: int = 224) -> list[dict[str, Any]]:
  """Rows {component, params, gflops} for one clip (batch 1) of the model described by `config`.

  Components are measured one at a time on their own input shapes; "model total" lowers the whole ClipMG
  forward pass, so small glue ops (means, reshapes, casts) appear only there.
  """
  config = reference_formulation(config)
  b, t, tp, j = 1, config.num_frames, config.num_pose_frames, config.num_joints
  fields = clipmg_config.vit_fields(config)
  d, patch = fields["width"], fields["patch_size"]
  num_patches = (image_size // patch) ** 2
  frames = _spec((b, t, image_size, image_size, 3))
  keypoints = _spec((b, tp, j, 3))
  model = clipmg_lib.ClipMG(config)
  params = _abstract_init(model, frames, keypoints)
  rows = []

  def add(name, params_count, flops):
    rows.append(dict(component=name, params=int(params_count), gflops=flops / 1e9))

  variant = config.variant
  vit_name = config.vit if isinstance(config.vit, str) else f"(width {fields['width']}, {fields['layers']} blocks)"
  if "vit" in params:
    frozen = fields["layers"] - config.trainable_blocks
    vit_params = params["vit"]
    trainable = {k for k in vit_params if k.startswith("resblocks_") and int(k.split("_")[1]) >= frozen}
    trainable |= {"ln_post"}
    tower = vit_lib.VisionTransformer(**fields)
    images = _spec((t, image_size, image_size, 3))
    tokens = _spec((t, 1 + num_patches, d))
    prefix = lambda p, x: tower.apply({"params": p}, x, method=lambda m, x: m.run_blocks(m.embed(x), 0, frozen))
    suffix = lambda p, x: tower.apply(
        {"params": p}, x, method=lambda m, x: m.ln_post(m.run_blocks(x, frozen, m.layers)))
    add(f"ViT {vit_name} frozen part ({t} frames: embedding + {frozen} blocks)",
        count_params({k: v for k, v in vit_params.items() if k not in trainable}),
        count_flops(prefix, vit_params, images))
    add(f"ViT {vit_name} trainable part (last {config.trainable_blocks} blocks + ln_post on all tokens)",
        count_params({k: v for k, v in vit_params.items() if k in trainable}),
        count_flops(suffix, vit_params, tokens))
    add(f"ViT {vit_name} forward, {t} frames", count_params(vit_params),
        vit_forward_flops(config.vit, t, image_size))
  if "skeleton_encoder" in params:
    render = lambda k: skeleton_lib.render_heatmaps(
        k, (image_size, image_size), resolution=config.heatmap.resolution, sigma=config.heatmap.sigma,
        confidence_threshold=config.confidence_threshold)
    add(f"heatmap rendering ({tp} x {config.heatmap.resolution}^2 x {j})", 0, count_flops(render, keypoints))
    flops, n = skeleton_encoder_flops(config)
    add("3D-CNN skeleton encoder", n, flops)
  skel = _spec((b, t, config.skeleton.embed_dim))
  if "skeleton_embed" in params:
    embed = lambda p, n, x: nn.Dense(d).apply({"params": p}, nn.LayerNorm().apply({"params": n}, x))
    add("skeleton embedding (LN + Dense S->D)",
        count_params(params["skeleton_embed"]) + count_params(params["skeleton_norm"]),
        count_flops(embed, params["skeleton_embed"], params["skeleton_norm"], skel))
  if variants.uses(variant).guidance:
    tokens = _spec((b, t, num_patches, d))
    pw = lambda k, v: jnp.einsum("btp,btpd->btd", pose_guidance.patch_weights(
        k, (image_size, image_size), patch, t, sigma=config.patch_weights.sigma,
        uniform_mass=config.patch_weights.uniform_mass), v)
    add("patch weights + semantic query", 0, count_flops(pw, keypoints, tokens))
  if "gate" in params:
    gate = lambda p, x, r: pose_guidance.PoseGate().apply({"params": p}, x, r)
    add("gate", count_params(params["gate"]), count_flops(gate, params["gate"], skel, _spec((b, t))))
  if "cross_attention" in params:
    pool = readout.CrossAttentionPool(fields["heads"] if not config.cross_attention.num_heads
                                      else config.cross_attention.num_heads)
    q, kv = _spec((b, d)), _spec((b, t * num_patches, d))
    add(f"cross-attention (1 query over {t * num_patches} tokens)", count_params(params["cross_attention"]),
        count_flops(lambda p, x, y: pool.apply({"params": p}, x, y), params["cross_attention"], q, kv))
  head = readout.ClassifierHead(config.num_classes, config.head.hidden_dim)
  feat = _spec((b, jax.tree.leaves(params["head"]["norm"])[0].shape[0]))
  if "context" in params["head"]:  # the gated pose context (B, S) enters the hidden layer too
    context = _spec((b, params["head"]["context"]["kernel"].shape[0]))
    head_flops = count_flops(lambda p, x, c: head.apply({"params": p}, x, c), params["head"], feat, context)
    name = "classifier head (2-layer MLP + pose context)"
  else:
    head_flops = count_flops(lambda p, x: head.apply({"params": p}, x), params["head"], feat)
    name = "classifier head (2-layer MLP)"
  add(name, count_params(params["head"]), head_flops)
  if "pose_aux_head" in params:  # training only: its logits are sown for the loss, evaluation never computes them
    aux_feat = _spec((b, config.skeleton.embed_dim))
    add("auxiliary pose head (training only)", count_params(params["pose_aux_head"]),
        count_flops(lambda p, x: head.apply({"params": p}, x), params["pose_aux_head"], aux_feat))
  total = count_flops(lambda p, f, k: model.apply({"params": p}, f, k), params, frames, keypoints)
  add("model total (forward)", count_params(params), total)

  add("model total (forward + backward; frozen prefix under stop_gradient)", count_params(params),
      train_flops(config, image_size))
  return rows


def train_flops(config: ml_collections.ConfigDict, image_size: int = 224, batch: int = 1) -> float:
  """Forward + backward FLOPs of the model as defined (`reference_formulation`) for `batch` clips.

  What a train step differentiates: the logits and, where sown, the auxiliary pose logits, with respect to all
  parameters (the frozen ViT prefix runs under stop_gradient, so only its forward counts).
  """
  config = reference_formulation(config)
  model = clipmg_lib.ClipMG(config)
  frames = _spec((batch, config.num_frames, image_size, image_size, 3))
  keypoints = _spec((batch, config.num_pose_frames, config.num_joints, 3))
  params = _abstract_init(model, frames, keypoints)

  def train_loss(p, f, k):
    logits, aux = model.apply({"params": p}, f, k, mutable=["aux"])
    return jnp.sum(logits) + sum(jnp.sum(x) for x in jax.tree.leaves(aux))

  return count_flops(jax.grad(train_loss), params, frames, keypoints)


def format_table(rows: list[dict[str, Any]]) -> str:
  """Markdown table of component_table rows."""
  lines = ["| component | parameters | forward GFLOPs |", "|---|---:|---:|"]
  for row in rows:
    gflops = row["gflops"]
    gflops = "—" if gflops != gflops else (f"{gflops:.2f}" if gflops >= 0.1 else f"{gflops:.2g}")
    lines.append(f"| {row['component']} | {row['params']:,} | {gflops} |")
  return "\n".join(lines)
