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


def make_mesh(num_devices: int | None = None, devices: list | None = None) -> jax.sharding.Mesh:
  """A 1-D mesh with the axis "data" over the first `num_devices` (default: all) of `devices` (default:
  jax.devices(); or an explicit list, e.g. an abstract TPU slice's from clipmg_jax.training.aot.topology_devices).

  jax.make_mesh orders the devices along the interconnect's physical ring where it can. It refuses device sets it
  cannot lay out that way (the per-TensorCore devices of megacore chips, as TPU v4 topologies describe them, or part
  of a slice); those are used in the order given.
  """
  devices = list(jax.devices() if devices is None else devices)
  devices = devices[:num_devices or len(devices)]
  # Auto axes: the compiler propagates shardings through the model (Explicit axes would make every reshape of a
  # batch-sharded array in the model name its output sharding).
  axis_types = (jax.sharding.AxisType.Auto,)
  try:
    return jax.make_mesh((len(devices),), (DATA_AXIS,), axis_types=axis_types, devices=devices)
  except (AssertionError, ValueError, NotImplementedError):
    return jax.sharding.Mesh(np.asarray(devices), (DATA_AXIS,), axis_types=axis_types)


def process_rows(mesh: jax.sharding.Mesh, global_batch: int) -> dict[int, list[int]]:
  """{process index: the rows of a global batch that its devices hold} under batch_sharding(mesh)."""
  rows: dict[int, list[int]] = {}
  for device, index in batch_sharding(mesh).devices_indices_map((global_batch,)).items():
    rows.setdefault(device.process_index, []).extend(range(*index[0].indices(global_batch)))
  return {p: sorted(r) for p, r in sorted(rows.items())}


def check_batch_layout(mesh: jax.sharding.Mesh, global_batch: int) -> None:
  """Raises ValueError unless every process's devices hold the same number of rows of the global batch: each
  process feeds global_batch / process count rows (place_batch), so a mesh that gives one process more devices
  than another cannot be fed."""
  counts = {p: len(r) for p, r in process_rows(mesh, global_batch).items()}
  if len(set(counts.values())) > 1:
    raise ValueError(f"the mesh's devices hold unequal shares of a batch of {global_batch} per process ({counts}): "
                     "every process must contribute the same number of devices")


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
