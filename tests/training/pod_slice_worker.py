"""Compiles a tiny CLIP-MG's train and eval steps for a TPU slice with the TPU compiler and prints, as JSON, what
the compiled steps hold per device against what the project's shardings ask for.

Executed in a subprocess by test_pod_slice.py (libtpu may live outside the test environment; see scripts/test.sh):
  python pod_slice_worker.py <topology> <fsdp_min_size>[,<fsdp_min_size>...]
"""

import collections
import json
import re
import sys

import jax
import ml_collections
import numpy as np

from clipmg_jax.training import aot
from clipmg_jax.training import defaults
from clipmg_jax.training import sharding as sharding_lib

from parity_worker import IMAGE, tiny_model_config  # pylint: disable=wrong-import-order

PER_DEVICE_BATCH = 2


def per_device_bytes(shapes) -> int:
  """Bytes one device holds of arrays with shardings (ShapeDtypeStructs): the shard's, not the whole array's."""
  return sum(int(np.prod(x.sharding.shard_shape(x.shape))) * np.dtype(x.dtype).itemsize
             for x in jax.tree.leaves(shapes))


HLO_TYPES = {"float32": "f32", "bfloat16": "bf16", "int32": "s32", "uint32": "u32", "uint8": "u8", "bool": "pred",
             "int64": "s64", "float16": "f16"}


def per_device_types(shapes) -> collections.Counter:
  """HLO types ("f32[4,32]") of the per-device shards of arrays with shardings, counted."""
  return collections.Counter(
      f"{HLO_TYPES[np.dtype(x.dtype).name]}[{','.join(str(d) for d in x.sharding.shard_shape(x.shape))}]"
      for x in jax.tree.leaves(shapes))


def compiled_parameter_types(executable) -> collections.Counter:
  """HLO types of the compiled (SPMD-partitioned: per-device) program's parameters, counted. Inputs the step does
  not read (subject, clip_id) are pruned from it."""
  entry = next(line for line in executable.as_text().splitlines() if line.startswith("ENTRY"))
  signature = entry[entry.index("(") + 1:entry.index(") ->")]
  return collections.Counter(re.findall(r": ([a-z0-9]+\[[0-9,]*\])", signature))


def unexpected(executable, *wanted) -> list[str]:
  """Compiled per-device parameters that are no per-device shard of the wanted inputs (e.g. a whole batch where a
  sixteenth was asked for, or a whole matrix where FSDP asked for a slice)."""
  return sorted((compiled_parameter_types(executable) - sum((per_device_types(w) for w in wanted),
                                                            collections.Counter())).elements())


def same_shardings(compiled, wanted, shapes) -> list[str]:
  """Paths of the leaves whose compiled input sharding differs from the wanted one."""
  paths = jax.tree_util.tree_flatten_with_path(shapes)[0]
  return [jax.tree_util.keystr(path) for (path, x), c, w in
          zip(paths, jax.tree.leaves(compiled), jax.tree.leaves(wanted)) if not c.is_equivalent_to(w, x.ndim)]


def wanted_batch(batch, mesh):
  """The batch as it should be laid out, stated here independently of the project's shardings: every leaf split
  along its first (example) dimension over all devices of the mesh."""
  split = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(mesh.axis_names[0]))
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=split), batch)


def wanted_state(state, mesh, fsdp_min_size):
  """The state as it should be laid out (docs/training.md): replicated, or with fsdp_min_size > 0 every leaf of at
  least that many elements split along its largest dimension that the device count divides."""
  n = mesh.devices.size

  def one(x):
    spec = [None] * x.ndim
    sizes = sorted(((d, i) for i, d in enumerate(x.shape) if d % n == 0), reverse=True)
    if fsdp_min_size and np.prod(x.shape) >= fsdp_min_size and sizes:
      spec[sizes[0][1]] = mesh.axis_names[0]
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(*spec))
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)

  return jax.tree.map(one, state)


def report(topology: str, fsdp_min_size: int) -> dict:
  devices = aot.topology_devices(topology)
  config = defaults.base_config()
  config.model = tiny_model_config("full")
  config.data = ml_collections.ConfigDict(dict(image_size=IMAGE))
  config.batch_size = config.eval_batch_size = PER_DEVICE_BATCH * len(devices)
  config.fsdp_min_size = fsdp_min_size
  setup = aot.make_setup(config, devices)
  train = aot.compile_train_step(setup, config.batch_size)
  evaluate = aot.compile_eval_step(setup, config.eval_batch_size)
  state = wanted_state(setup.abstract_state, setup.mesh, fsdp_min_size)
  params = state.params
  train_batch = wanted_batch(aot.batch_spec(setup, config.batch_size, train=True), setup.mesh)
  eval_batch = wanted_batch(aot.batch_spec(setup, config.eval_batch_size, train=False), setup.mesh)
  (state_in, batch_in), _ = train.executable.input_shardings
  (params_in, eval_batch_in), _ = evaluate.executable.input_shardings
  rows = sharding_lib.process_rows(setup.mesh, config.batch_size)
  shardings = lambda tree: jax.tree.map(lambda x: x.sharding, tree)
  return dict(
      devices=len(devices), processes=len(rows), rows_per_process=sorted({len(r) for r in rows.values()}),
      # What the layout should be, and what the compiled steps hold.
      compiled_batch_shard=[int(s) for s in batch_in["frames"].shard_shape(train_batch["frames"].shape)],
      batch_mismatch=same_shardings(batch_in, shardings(train_batch), train_batch)
      + same_shardings(eval_batch_in, shardings(eval_batch), eval_batch),
      state_mismatch=same_shardings(state_in, shardings(state), state)
      + same_shardings(params_in, shardings(params), params),
      train_unexpected=unexpected(train.executable, state, train_batch),
      eval_unexpected=unexpected(evaluate.executable, params, eval_batch),
      sharded_state_leaves=sum(x.sharding.shard_shape(x.shape) != x.shape for x in jax.tree.leaves(state)),
      state_bytes_per_device=per_device_bytes(state),
      train_memory=train.memory, eval_memory=evaluate.memory, train_flops=train.flops)


def uneven_mesh_error(topology: str) -> str:
  """The error Setup gives for a mesh over 6 of the slice's devices: 4 of process 0's and 2 of process 1's, so the
  two processes would have to feed unequal shares of each batch."""
  config = defaults.base_config()
  config.model = tiny_model_config("full")
  config.data = ml_collections.ConfigDict(dict(image_size=IMAGE))
  config.num_devices, config.batch_size, config.eval_batch_size = 6, 12, 12
  try:
    aot.make_setup(config, aot.topology_devices(topology))
  except ValueError as e:
    return str(e)
  return ""


def main(argv):
  topology, sizes = argv[0], [int(s) for s in argv[1].split(",")]
  out = {str(size): report(topology, size) for size in sizes}
  out["uneven_mesh_error"] = uneven_mesh_error(topology)
  print(json.dumps(out))


if __name__ == "__main__":
  main(sys.argv[1:])
