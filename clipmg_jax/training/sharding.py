"""Device mesh, shardings of the train state and the batch, and host -> device batch placement.

One mesh axis, "data": the batch is split over it. Parameters (and their optimizer moments, which have the same
shapes) are replicated, or — with `fsdp_min_size` > 0 — every leaf with at least that many elements is split along
its largest dimension divisible by the number of devices (FSDP-style; XLA inserts the all-gathers and
reduce-scatters). The rule looks at shapes only, so params and Adam moments get the same layout.
"""

from typing import Any

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from clipmg_jax.data.loader import batch as batch_lib

DATA_AXIS = "data"


def make_mesh(num_devices: int | None = None) -> jax.sharding.Mesh:
  """A 1-D mesh over `num_devices` (default: all) devices with the axis "data"."""
  n = num_devices or jax.device_count()
  # Auto axes: the compiler propagates shardings through the model (Explicit axes would make every reshape of a
  # batch-sharded array in the model name its output sharding).
  return jax.make_mesh((n,), (DATA_AXIS,), axis_types=(jax.sharding.AxisType.Auto,), devices=jax.devices()[:n])


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: jax.sharding.Mesh) -> NamedSharding:
  """Leading (batch) dimension split over "data"; the rest replicated."""
  return NamedSharding(mesh, P(DATA_AXIS))


def leaf_sharding(shape: tuple[int, ...], mesh: jax.sharding.Mesh, fsdp_min_size: int) -> NamedSharding:
  """Sharding for one state leaf: replicated, or split along its largest dimension divisible by the mesh size."""
  n = mesh.shape[DATA_AXIS]
  if fsdp_min_size <= 0 or n == 1 or int(np.prod(shape, dtype=np.int64)) < fsdp_min_size:
    return replicated(mesh)
  candidates = [d for d in np.argsort(shape)[::-1] if shape[d] % n == 0]
  if not candidates:
    return replicated(mesh)
  spec = [None] * len(shape)
  spec[int(candidates[0])] = DATA_AXIS
  return NamedSharding(mesh, P(*spec))


def state_shardings(abstract_state: Any, mesh: jax.sharding.Mesh, fsdp_min_size: int = 0) -> Any:
  """Shardings with the structure of `abstract_state` (arrays or ShapeDtypeStructs)."""
  return jax.tree.map(lambda x: leaf_sharding(tuple(x.shape), mesh, fsdp_min_size), abstract_state)


def place_batch(batch: dict[str, np.ndarray], mesh: jax.sharding.Mesh) -> dict[str, jax.Array]:
  """Host batch (this process's share, leading dim = global batch / process count) -> global sharded arrays.

  Uses jax.make_array_from_process_local_data, so it works unchanged on one host and on many.
  """
  sharding = batch_sharding(mesh)
  return {key: jax.make_array_from_process_local_data(sharding, value)
          for key, value in batch_lib.device_leaves(batch).items()}
