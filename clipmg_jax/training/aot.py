"""The real train and eval steps compiled ahead of time for any set of devices, without data and without running.

The devices may be this machine's, or those of a TPU slice that is not here: with libtpu installed
(`pip install -e ".[tpu]"`), `topology_devices("v5e:4x4")` gives the abstract devices of that slice, several
processes' worth for a multi-host one, and the TPU compiler itself compiles for them on a CPU-only machine. The
compiled step's memory and cost analyses then give per-chip bytes and FLOPs of a pod slice before one is rented, and
compiling over a multi-process device set checks the mesh, the state shardings and the batch layout of that slice.

The steps are the trainer's own (`setup.Setup` over a mesh of the given devices); the data is replaced by its
shapes (`runs.without_data`).
"""

import dataclasses
import time
from typing import Any

import jax
import ml_collections
import numpy as np

from clipmg_jax.data.loader import batch as batch_lib
from clipmg_jax.training import runs
from clipmg_jax.training import setup as setup_lib
from clipmg_jax.training import sharding as sharding_lib

# HBM per chip in GiB, from the Cloud TPU system-architecture pages (v4, v5e, v5p, v6e). The topologies' devices
# are per chip, except v4's, which are per TensorCore (2 per chip, sharing the chip's HBM): see devices_per_chip.
HBM_GIB_PER_CHIP = {"TPU v4": 32, "TPU v5 lite": 16, "TPU v5": 95, "TPU v6 lite": 32}
# Published dense bfloat16 peak TFLOP/s per chip (same sources).
PEAK_TFLOPS_PER_CHIP = {"TPU v4": 275.0, "TPU v5 lite": 197.0, "TPU v5": 459.0, "TPU v6 lite": 918.0}
# Published HBM bandwidth per chip in GB/s (same sources: cloud.google.com/tpu/docs/v4, v5e, v5p, v6e), for the
# memory side of a roofline (benchmarks/roofline.py).
HBM_GBPS_PER_CHIP = {"TPU v4": 1200.0, "TPU v5 lite": 819.0, "TPU v5": 2765.0, "TPU v6 lite": 1638.0}


class NoTpuCompilerError(RuntimeError):
  """libtpu is not installed, so no TPU topology can be described or compiled for."""


def topology_devices(name: str) -> list:
  """The abstract devices of TPU slice `name` ("v5e:2x2", "v4:2x2x2", "v5p:2x2x1", "v6e:2x2", ...), in the
  topology's order (grouped by process). Raises NoTpuCompilerError without libtpu, ValueError for a name this
  libtpu does not know."""
  try:
    import libtpu  # pylint: disable=import-outside-toplevel,unused-import
  except ImportError:
    raise NoTpuCompilerError('the TPU compiler (libtpu) is not installed: pip install -e ".[tpu]"') from None
  from jax.experimental import topologies  # pylint: disable=import-outside-toplevel
  try:
    return list(topologies.get_topology_desc(platform="tpu", topology_name=name).devices)
  except Exception as e:  # pylint: disable=broad-except  (libtpu raises its own runtime errors)
    raise ValueError(f"TPU topology {name!r} could not be described by this libtpu: {e}") from None


def devices_per_chip(devices: list) -> int:
  """How many of `devices` share one chip: 2 for v4's per-TensorCore devices (megacore chips), else 1."""
  cores = {getattr(d, "core_on_chip", 0) for d in devices}
  return len(cores)


def batch_spec(setup: setup_lib.Setup, batch_size: int, *, train: bool) -> dict[str, jax.ShapeDtypeStruct]:
  """The global batch the step receives, as shapes with the batch sharding: the pipeline's layout (every device
  leaf of batch.padding_example), with the mask as the pipeline gives it (bool) to the train step and as
  batch.pad_batch gives it (float32) to the eval step."""
  example = batch_lib.padding_example(setup.model.num_frames, setup.model.num_pose_frames, setup.data.image_size)
  example = batch_lib.device_leaves(example)
  if not train:
    example["mask"] = np.float32(1)
  sharding = sharding_lib.batch_sharding(setup.mesh)
  return {k: jax.ShapeDtypeStruct((batch_size,) + np.shape(v), np.asarray(v).dtype, sharding=sharding)
          for k, v in example.items()}


@dataclasses.dataclass
class Compiled:
  """One compiled step: per-device memory (bytes; see memory_of), compiled FLOPs per device per call, compile
  seconds, the compiled object (input_shardings, as_text(), ...), and the rest of XLA's cost analysis (cost_of)."""
  name: str
  batch_size: int
  memory: dict[str, int]
  flops: float
  seconds: float
  executable: Any
  cost: dict[str, float] = dataclasses.field(default_factory=dict)


def memory_of(compiled: Any) -> dict[str, int]:
  """Per-device bytes of a compiled step: arguments, outputs, aliased (outputs written into donated arguments),
  temporaries, and total = arguments + outputs - aliased + temporaries (what must fit at once)."""
  stats = compiled.memory_analysis()
  out = dict(arguments=int(stats.argument_size_in_bytes), outputs=int(stats.output_size_in_bytes),
             aliased=int(stats.alias_size_in_bytes), temporaries=int(stats.temp_size_in_bytes))
  out["total"] = out["arguments"] + out["outputs"] - out["aliased"] + out["temporaries"]
  return out


def flops_of(compiled: Any) -> float:
  """FLOPs per device per call of a compiled step, from XLA's cost analysis (NaN when it gives none)."""
  return cost_of(compiled).get("flops", float("nan"))


def cost_of(compiled: Any) -> dict[str, float]:
  """XLA's whole-program cost analysis per device per call: "flops", "bytes accessed" (HBM traffic as the compiler
  counts it after fusion: what a roofline's memory bound needs), "transcendentals", and on TPU "optimal_seconds"
  where the compiler gives it. The per-operand entries are left out."""
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return {k: float(v) for k, v in (cost or {}).items() if "{" not in k and isinstance(v, (int, float))}


def _compile(name: str, fn, args, batch_size: int) -> Compiled:
  start = time.perf_counter()
  executable = fn.lower(*args).compile()
  seconds = time.perf_counter() - start
  cost = cost_of(executable)
  return Compiled(name, batch_size, memory_of(executable), cost.get("flops", float("nan")), seconds, executable, cost)


def make_setup(config: ml_collections.ConfigDict, devices: list | None = None) -> setup_lib.Setup:
  """The trainer's Setup for `config` over a mesh of `devices` (default: this machine's), with shapes-only data."""
  # Uniform class counts stand in for the manifest's: they only scale class-weighted losses.
  num_classes = int(config.model.num_classes)
  data = runs.without_data(config, [f"class {i}" for i in range(num_classes)], np.ones(num_classes, np.int64))
  return setup_lib.Setup(config, data, devices=devices)


def compile_train_step(setup: setup_lib.Setup, batch_size: int) -> Compiled:
  """The train step for a global batch of `batch_size`, compiled for the setup's mesh."""
  return _compile("train", setup.train_step, (setup.abstract_state, batch_spec(setup, batch_size, train=True)),
                  batch_size)


def compile_eval_step(setup: setup_lib.Setup, batch_size: int) -> Compiled:
  """The eval step for a global batch of `batch_size`, compiled for the setup's mesh."""
  return _compile("eval", setup.eval_step, (setup.abstract_state.params, batch_spec(setup, batch_size, train=False)),
                  batch_size)
