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
