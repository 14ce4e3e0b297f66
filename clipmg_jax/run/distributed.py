"""Multi-process start-up: `jax.distributed.initialize` from the config, the environment or the cluster.

Where the coordinator, process count and process id come from, first match wins for each:
  1. the config: --config.cluster.coordinator_address=host:port, --config.cluster.num_processes=N,
     --config.cluster.process_id=i;
  2. the environment: JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID (scripts/launch_local.sh sets them);
  3. JAX's cluster auto-detection (Cloud TPU VMs, SLURM, Open MPI, Kubernetes), for whatever is still unset.

The coordination service's timeouts are set from config.cluster: a process that stops sending heartbeats (killed,
out of memory, a lost host) is declared dead after `heartbeat_timeout_seconds`, and the others then stop with an
error instead of waiting forever in their next collective.
"""

import itertools
import logging
import os

import jax
import ml_collections

ENV_ADDRESS = "JAX_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "JAX_PROCESS_ID"
_BARRIERS = itertools.count()  # barrier ids must be unique; every process creates them in the same order


def cluster_config() -> ml_collections.ConfigDict:
  """config.cluster: where the processes meet and how long they wait for each other."""
  return ml_collections.ConfigDict(dict(
      coordinator_address="",  # host:port of process 0; "" = $JAX_COORDINATOR_ADDRESS or auto-detection
      num_processes=0,  # 0 = $JAX_NUM_PROCESSES or auto-detection
      process_id=-1,  # -1 = $JAX_PROCESS_ID or auto-detection
      initialization_timeout=300,  # seconds to wait for every process to connect
      heartbeat_timeout_seconds=100,  # a silent process is declared dead after this long
      shutdown_timeout_seconds=300,  # seconds a finishing process waits for the others at the exit barrier
  ))


def _int_env(name: str) -> int | None:
  value = os.environ.get(name, "").strip()
  if not value:
    return None
  try:
    return int(value)
  except ValueError:
    raise ValueError(f"environment variable {name}={value!r}: expected an integer") from None


def initialize_arguments(cluster: ml_collections.ConfigDict | None) -> dict:
  """The keyword arguments for jax.distributed.initialize (those left out are auto-detected by JAX)."""
  cluster = cluster or cluster_config()
  address = cluster.get("coordinator_address") or os.environ.get(ENV_ADDRESS) or None
  num = int(cluster.get("num_processes", 0) or 0) or _int_env(ENV_NUM_PROCESSES)
  pid = int(cluster.get("process_id", -1))
  pid = pid if pid >= 0 else _int_env(ENV_PROCESS_ID)
  if num is not None and pid is not None and not 0 <= pid < num:
    raise ValueError(f"process id {pid} is not in [0, {num}) (config.cluster / ${ENV_PROCESS_ID}, "
                     f"${ENV_NUM_PROCESSES})")
  kwargs = dict(initialization_timeout=int(cluster.get("initialization_timeout", 300)),
                heartbeat_timeout_seconds=int(cluster.get("heartbeat_timeout_seconds", 100)),
                shutdown_timeout_seconds=int(cluster.get("shutdown_timeout_seconds", 300)))
  for key, value in (("coordinator_address", address), ("num_processes", num), ("process_id", pid)):
    if value is not None:
      kwargs[key] = value
  return kwargs


def initialize(config: ml_collections.ConfigDict) -> None:
  """Joins the other processes when config.distributed is set (a no-op otherwise); then quiets the logs
  of every process but process 0."""
  if not config.get("distributed", False):
    return
  # CPU processes all-reduce across hosts with gloo (JAX's default, named here so that a run on CPUs does not
  # depend on it); accelerators bring their own collectives.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(**initialize_arguments(config.get("cluster")))
  quiet_non_main_process()
  logging.info("%d processes, %d devices (%d per process)", jax.process_count(), jax.device_count(),
               jax.local_device_count())


def quiet_non_main_process() -> None:
  """Processes other than 0 log warnings and errors only: one readable log per run, from process 0."""
  if jax.process_index() == 0:
    return
  from absl import logging as absl_logging  # pylint: disable=import-outside-toplevel
  absl_logging.set_verbosity(absl_logging.WARNING)
  logging.getLogger().setLevel(logging.WARNING)


def barrier(name: str, timeout_seconds: int = 1800) -> None:
  """Every process waits here until all have arrived (a coordination-service barrier: no device collective)."""
  if jax.process_count() == 1:
    return
  from jax._src import distributed as jax_distributed  # pylint: disable=import-outside-toplevel
  jax_distributed.global_state.client.wait_at_barrier(name, timeout_seconds * 1000)


class _CompiledTogether:
  """A jitted function compiled ahead of its first call, then run only once every process has compiled it."""

  def __init__(self, fn, name: str):
    self._fn, self._name, self._compiled = fn, name, None

  def __call__(self, *args):
    if self._compiled is None:
      self._compiled = self._fn.lower(*args).compile()
      barrier(f"compiled {self._name} #{next(_BARRIERS)}")
    return self._compiled(*args)


def compiled_together(fn, name: str):
  """`fn` (a jax.jit function called with one signature, as the train and eval steps are) for multi-process runs.

  A process that reaches a cross-process collective long before another (which is still compiling, say) fails on
  CPU: gloo gives up setting up the collective after 30 s. Compiling first and meeting at a barrier before the first
  run removes that race; compile times vary by minutes on a loaded host. One process: `fn` itself."""
  return fn if jax.process_count() == 1 else _CompiledTogether(fn, name)


def shutdown() -> None:
  """Leaves the process group (a no-op when not in one). Called at the end of a run, so that every process meets
  at the exit barrier right after its last work rather than whenever interpreter teardown reaches it."""
  if jax.process_count() > 1:
    jax.distributed.shutdown()
