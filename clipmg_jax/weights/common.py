"""Key maps from checkpoint tensors to the Flax ViT params tree, with full validation.

A layout (Hugging Face, OpenAI) describes every checkpoint key it expects as a
`KeySpec`: the key, the shape it must have for a given ViT config, and where
its (transformed) value lands in the Flax tree. `apply_key_map` checks the
whole state dict against the specs and reports every missing, unexpected and
mis-shaped key at once, naming the key and both shapes.
"""

import dataclasses
from typing import Any, Callable, Sequence

import numpy as np

FlaxPath = tuple[str, ...]
Transform = Callable[[np.ndarray], np.ndarray]


class CheckpointError(ValueError):
  """A checkpoint does not match the expected layout or shapes."""


@dataclasses.dataclass(frozen=True)
class KeySpec:
  """One checkpoint tensor: its key, expected shape and Flax destinations.

  targets: (flax path, transform) pairs; a fused tensor such as OpenAI's
  in_proj_weight fans out to several Flax parameters.
  """

  key: str
  shape: tuple[int, ...]
  targets: tuple[tuple[FlaxPath, Transform], ...]


def identity(x: np.ndarray) -> np.ndarray:
  return x


def transpose(x: np.ndarray) -> np.ndarray:
  """PyTorch Linear weight (out, in) -> Flax Dense kernel (in, out)."""
  return np.ascontiguousarray(x.T)


def conv_to_hwio(x: np.ndarray) -> np.ndarray:
  """PyTorch Conv2d weight (D, 3, p, p) -> Flax kernel (p, p, 3, D)."""
  return np.ascontiguousarray(x.transpose(2, 3, 1, 0))


def spec(key: str, shape: tuple[int, ...], path: FlaxPath, fn: Transform = identity) -> KeySpec:
  """One checkpoint tensor that fills one Flax leaf."""
  return KeySpec(key, shape, ((path, fn),))


def layer_norm_specs(key: str, path: FlaxPath, width: int) -> list[KeySpec]:
  """A torch LayerNorm (`weight`, `bias`) -> Flax LayerNorm (`scale`, `bias`)."""
  return [spec(f"{key}.weight", (width,), path + ("scale",)), spec(f"{key}.bias", (width,), path + ("bias",))]


def linear_specs(key: str, path: FlaxPath, n_in: int, n_out: int) -> list[KeySpec]:
  """A torch Linear (weight (out, in)) -> Flax Dense (kernel (in, out), transposed)."""
  return [spec(f"{key}.weight", (n_out, n_in), path + ("kernel",), transpose),
          spec(f"{key}.bias", (n_out,), path + ("bias",))]


def fields_from_shapes(vision: dict[str, np.ndarray], names: dict[str, str], proj_dim: int | None,
                       source: str) -> dict[str, Any]:
  """ViT fields read off a checkpoint layout's weight shapes (`names`: its keys of class_embedding, patch_embedding,
  position_embedding, the first block's MLP input weight `fc1`, and the `blocks` prefix). Heads cannot be read from
  shapes: width // 64, as every released CLIP ViT has 64-wide heads."""
  width, = require(vision, names["class_embedding"], 1, source)
  _, _, ph, pw = require(vision, names["patch_embedding"], 4, source)
  if ph != pw:
    raise CheckpointError(f"{source}: key {names['patch_embedding']!r} has non-square patches {ph}x{pw}")
  positions, _ = require(vision, names["position_embedding"], 2, source)
  mlp_dim, _ = require(vision, names["fc1"], 2, source)
  return dict(width=width, layers=count_blocks(list(vision), names["blocks"]), heads=max(width // 64, 1),
              patch_size=ph, image_size=grid_image_size(positions, ph, names["position_embedding"], source),
              mlp_dim=mlp_dim, proj_dim=proj_dim)


def check_heads(fields: dict[str, Any], source: str) -> dict[str, Any]:
  """`fields`, after checking that the width splits into the heads."""
  if fields["width"] % fields["heads"]:
    raise CheckpointError(f"{source}: width {fields['width']} is not divisible by {fields['heads']} heads")
  return fields


def stem_specs(config: dict[str, Any], names: dict[str, str]) -> list[KeySpec]:
  """The tower's parts outside its blocks, under a checkpoint layout's `names` for them: class_embedding,
  patch_embedding (a torch Conv2d weight), position_embedding, ln_pre and ln_post (torch LayerNorms)."""
  d, p = config["width"], config["patch_size"]
  n = (config["image_size"] // p)**2 + 1
  return [spec(names["class_embedding"], (d,), ("class_embedding",)),
          spec(names["patch_embedding"], (d, 3, p, p), ("conv1", "kernel"), conv_to_hwio),
          spec(names["position_embedding"], (n, d), ("positional_embedding",)),
          *layer_norm_specs(names["ln_pre"], ("ln_pre",), d), *layer_norm_specs(names["ln_post"], ("ln_post",), d)]


def chunk(index: int, parts: int, then: Transform = identity) -> Transform:
  """Takes part `index` of `parts` equal slices along axis 0, then applies `then`."""

  def fn(x: np.ndarray) -> np.ndarray:
    size = x.shape[0] // parts
    return then(x[index * size:(index + 1) * size])

  return fn


@dataclasses.dataclass
class KeyMapResult:
  params: dict[str, Any]  # nested Flax params, float32 numpy arrays
  ignored: list[tuple[str, str]]  # (checkpoint key, reason) of tensors deliberately not used


def _nest(flat: dict[FlaxPath, np.ndarray]) -> dict[str, Any]:
  tree: dict[str, Any] = {}
  for path, value in flat.items():
    node = tree
    for name in path[:-1]:
      node = node.setdefault(name, {})
    node[path[-1]] = value
  return tree


def format_problems(source: str, problems: Sequence[str], limit: int = 20) -> str:
  shown = "\n  ".join(problems[:limit])
  more = f"\n  ... and {len(problems) - limit} more" if len(problems) > limit else ""
  return f"{source}: {len(problems)} problem(s) with the checkpoint:\n  {shown}{more}"


def apply_key_map(state: dict[str, np.ndarray], specs: Sequence[KeySpec], ignored: Sequence[tuple[str, str]],
                  source: str) -> KeyMapResult:
  """Validates `state` against `specs` and builds the Flax params tree.

  Args:
    state: checkpoint key -> array, restricted to the vision tower's keys (prefix removed).
    specs: every key the layout expects.
    ignored: (key, reason) of keys the caller already set aside (not in `state`).
    source: file name used in error messages.

  Raises:
    CheckpointError listing every missing, unexpected or mis-shaped key.
  """
  problems = []
  by_key = {spec.key: spec for spec in specs}
  for key in sorted(set(state) - set(by_key)):
    problems.append(f"unexpected key '{key}' with shape {tuple(state[key].shape)}")
  flat: dict[FlaxPath, np.ndarray] = {}
  for spec in specs:
    if spec.key not in state:
      problems.append(f"missing key '{spec.key}' (expected shape {spec.shape})")
      continue
    value = state[spec.key]
    if tuple(value.shape) != spec.shape:
      problems.append(f"key '{spec.key}' has shape {tuple(value.shape)} in the checkpoint, expected {spec.shape}")
      continue
    value = np.asarray(value, np.float32)
    for path, fn in spec.targets:
      flat[path] = fn(value)
  if problems:
    raise CheckpointError(format_problems(source, problems))
  return KeyMapResult(params=_nest(flat), ignored=list(ignored))


def require(state: dict[str, np.ndarray], key: str, ndim: int, source: str) -> tuple[int, ...]:
  """Shape of `state[key]`, which must exist with `ndim` dimensions (used while inferring the config)."""
  if key not in state:
    raise CheckpointError(f"{source}: missing key '{key}' (needed to infer the ViT size)")
  shape = tuple(state[key].shape)
  if len(shape) != ndim:
    raise CheckpointError(f"{source}: key '{key}' has shape {shape}, expected a {ndim}-d tensor")
  return shape


def count_blocks(keys: Sequence[str], prefix: str) -> int:
  """Number of blocks L = 1 + the largest i in keys '<prefix><i>.<...>'."""
  indices = set()
  for key in keys:
    if key.startswith(prefix):
      head = key[len(prefix):].split(".", 1)[0]
      if head.isdigit():
        indices.add(int(head))
  # Gaps (a block absent in the middle) surface later as missing keys, named one by one.
  return max(indices) + 1 if indices else 0


def grid_image_size(num_positions: int, patch_size: int, key: str, source: str) -> int:
  """image_size from (1 + side^2) position embeddings."""
  side = int(round((num_positions - 1)**0.5))
  if side * side != num_positions - 1:
    raise CheckpointError(
        f"{source}: key '{key}' holds {num_positions} positions, not 1 + a square number of patches")
  return side * patch_size
