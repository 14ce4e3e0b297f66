"""Orbax checkpoints of the train state together with the Grain iterator state.

Layout: <workdir>/checkpoints/<step>/{state, data}. `state` is the TrainState pytree (params, optimizer moments,
step, rng); `data` is the input iterator's position (one JSON file per process, Grain's own format), saved in
the same atomic checkpoint so that a resumed run sees exactly the batches an uninterrupted run would have seen.

A checkpoint also records the data layout it was saved with (process count and global batch size, item
`data_layout`); restored on another layout, the input position is carried over by the rule of data_position.py
(exact whenever the examples read fill whole batches of the new size) and the train state is read straight into
the new mesh's shardings, so a checkpoint of 2 hosts x 2 devices resumes on 1 x 1 or 1 x 4.

Kept: the last `keep_last` checkpoints plus the `keep_best` with the best validation top-1 (checkpoints saved
with evaluation metrics take part in the ranking).

Each checkpoint also holds `digest`: a checksum of every state leaf (state_digest), checked on restore, so that a
changed byte in a data file is a named CheckpointCorruptError rather than a silently different weight. Resuming
(restore with fallback=True) skips an unreadable or corrupt latest checkpoint: it says which and why, moves it to
<checkpoints>_unreadable/ (nothing is deleted) and restores the newest readable one.
"""

import errno
import json
import logging
import os
import pathlib
import shutil
import threading
import time
import warnings
from typing import Any

import grain
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_manager as checkpoint_manager_lib
from orbax.checkpoint import checkpoint_managers

from clipmg_jax import disk_full
from clipmg_jax.training import data_position

STATE = "state"
DATA = "data"
DIGEST = "digest"
LAYOUT = "data_layout"
# Key the trainer adds to the metrics of a checkpoint ranked on the validation split; best_step(require=...) skips
# checkpoints without it (e.g. ones ranked on another split by an older version).
VALIDATION_MARK = "ranked_on_validation"


class CheckpointCorruptError(RuntimeError):
  """A checkpoint cannot be read, or its restored state does not match the digest saved with it."""


class NoCheckpointError(FileNotFoundError):
  """The workdir holds no checkpoint, or not the one asked for."""


class Checkpointer:
  """Thin wrapper over ocp.CheckpointManager for (train state, data iterator) pairs."""

  def __init__(self, directory: str | pathlib.Path, *, keep_last: int = 2, keep_best: int = 1,
               best_metric: str = "top1", global_batch_size: int | None = None):
    """global_batch_size: recorded with the input position, so that a restore with another batch size or process
    count can carry the position over (data_position.py); None = not recorded (then assumed unchanged)."""
    self.global_batch_size = global_batch_size
    self.keep_last, self.keep_best = keep_last, keep_best
    self.directory = pathlib.Path(directory).absolute()
    self.best_metric = best_metric
    policy = checkpoint_managers.AnyPreservationPolicy([
        checkpoint_managers.LatestN(n=keep_last),
        checkpoint_managers.BestN(get_metric_fn=lambda m: m[best_metric], n=keep_best,
                                  keep_checkpoints_without_metrics=False),
    ])
    # best_fn also makes Orbax write each checkpoint's metrics to disk, so the ranking survives a restart.
    options = ocp.CheckpointManagerOptions(preservation_policy=policy, create=True,
                                           best_fn=lambda m: m[best_metric], best_mode="max",
                                           # The iterator state must be read at save time, and the state
                                           # arrays are donated to the next step: save synchronously.
                                           enable_async_checkpointing=False)
    self.manager = ocp.CheckpointManager(
        self.directory, options=options,
        item_handlers={STATE: ocp.StandardCheckpointHandler(), DATA: grain.checkpoint.CheckpointHandler(),
                       DIGEST: ocp.JsonCheckpointHandler(), LAYOUT: ocp.JsonCheckpointHandler()})

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def best_step(self, require: str | None = None) -> int | None:
    """The kept step with the highest `best_metric` (the latest among ties), or None if none has metrics; with
    `require`, only among checkpoints whose metrics hold that key."""
    scored = []
    for step in self.all_steps():
      m = self.manager.metrics(step)
      if m and self.best_metric in m and (require is None or require in m):
        scored.append((float(m[self.best_metric]), step))
    return max(scored)[1] if scored else None

  def has_metrics(self, step: int, key: str) -> bool:
    """Whether checkpoint `step` carries metrics holding `key`."""
    return key in (self.manager.metrics(step) or {})

  def attach_metrics(self, step: int, metrics: dict) -> None:
    """Gives the saved checkpoint `step` its ranking metrics (what save(metrics=...) records): the trainer saves the
    final state before evaluating it, so that nothing is lost if the evaluation is stopped. Written where Orbax keeps
    a checkpoint's metrics (<step>/metrics/metrics, read by manager.metrics), atomically, by process 0."""
    name = checkpoint_manager_lib.METRIC_ITEM_NAME
    path = self.directory / str(step) / name / name
    if jax.process_index() == 0:
      path.parent.mkdir(parents=True, exist_ok=True)
      tmp = path.with_name(path.name + ".tmp")
      tmp.write_text(json.dumps({k: float(v) for k, v in metrics.items()}))
      tmp.replace(path)
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
      multihost_utils.sync_global_devices(f"attach_metrics_{step}")
    self.manager.reload()
    self._prune()

  def _prune(self) -> None:
    """Applies the keep rule again (the last keep_last, plus the keep_best with the best metric): Orbax applies it
    when it saves, and a checkpoint given its metrics after saving may now outrank one kept then."""
    steps = sorted(self.all_steps())
    keep = set(steps[-self.keep_last:]) if self.keep_last > 0 else set()
    scored = [(float(m[self.best_metric]), s) for s in steps
              if (m := self.manager.metrics(s)) and self.best_metric in m]
    keep |= {s for _, s in sorted(scored, reverse=True)[:self.keep_best]}
    for step in steps:
      if step not in keep:
        self.manager.delete(step)
        logging.info("deleted checkpoint %d (neither among the last %d nor the best %d)", step, self.keep_last,
                     self.keep_best)

  def all_steps(self) -> list[int]:
    return list(self.manager.all_steps())

  def choose_step(self, which: str) -> tuple[int, str]:
    """(step, rule) for "latest", "best" (the highest validation top-1; the latest when no checkpoint carries
    validation metrics) or a step number; rule is "latest", "best", "latest_fallback" or "asked"."""
    if which == "latest":
      step, rule = self.latest_step(), "latest"
    elif which == "best":
      step, rule = self.best_step(require=VALIDATION_MARK), "best"
      if step is None:
        logging.warning("no checkpoint carries validation metrics; evaluating the latest instead")
        step, rule = self.latest_step(), "latest_fallback"
    else:
      step, rule = int(which), "asked"
    if step is None:
      raise NoCheckpointError(f"no checkpoint in {self.directory}: train first (python -m clipmg_jax.train)")
    return step, rule

  def save(self, step: int, state: Any, data_iterator: Any | None, metrics: dict | None = None, *,
           data_state: Any | None = None) -> None:
    """Saves (state, iterator position) as checkpoint `step`; `metrics` (with `best_metric`) ranks it.

    data_state: a position recorded earlier with data_iterator.get_state(), saved instead of the iterator's
      current one (a loop that pulls batches ahead of the step being saved records it with the step's batch).
    """
    items = {STATE: ocp.args.StandardSave(state)}
    if data_state is not None:
      data_iterator = _RecordedPosition(data_state)
    if data_iterator is not None:
      items[DATA] = grain.checkpoint.CheckpointSave(data_iterator)
      items.update(self._layout_item())
    items[DIGEST] = ocp.args.JsonSave(state_digest(state))
    threads = set(threading.enumerate())
    try:
      self.manager.save(step, args=ocp.args.Composite(**items), metrics=metrics, force=True)
      self.manager.wait_until_finished()
    except Exception as e:  # pylint: disable=broad-except
      if not disk_full.is_disk_full(e):
        raise
      _join_new_threads(threads, timeout=60)
      self._discard_partial(step)
      # The failed save leaves writes of tensorstore's that were never awaited; at interpreter exit Python would warn
      # of each after the command's one message (sometimes, by timing).
      warnings.filterwarnings("ignore", message=r"coroutine .* was never awaited", category=RuntimeWarning)
      # The OS's error for the checkpoint, whichever writer (Python's or tensorstore's, as a ValueError) hit it.
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.directory / str(step))) from e
    logging.info("saved checkpoint %d to %s", step, self.directory)

  def _discard_partial(self, step: int) -> None:
    """Removes what a failed save of `step` wrote (Orbax's temporary folder, never read as a checkpoint): the space
    it holds is given back. Left to the rerun (Orbax replaces it) when other processes may still write into it."""
    if jax.process_count() == 1:
      for partial in self.directory.glob(f"{step}{ocp.path.atomicity.TMP_DIR_SUFFIX}*"):
        shutil.rmtree(partial, ignore_errors=True)

  def restore(self, abstract_state: Any, data_iterator: Any | None = None, step: int | None = None, *,
              fallback: bool = False) -> Any:
    """Restores checkpoint `step` (default: the latest) into arrays shaped and sharded like `abstract_state`
    (a pytree of jax.ShapeDtypeStruct with .sharding); moves `data_iterator` to the saved position in place.

    The restored state is checked against the checkpoint's digest (CheckpointCorruptError on a mismatch or an
    unreadable checkpoint). fallback=True (resuming; only with step=None): an unreadable latest checkpoint is set
    aside (set_aside) with a warning naming it, and the next newest is tried.
    """
    if step is not None or not fallback:
      step = self.latest_step() if step is None else step
      if step is None:
        raise NoCheckpointError(f"no checkpoint in {self.directory}")
      return self._restore_verified(abstract_state, data_iterator, step)
    return self._restore_newest_readable(abstract_state, data_iterator)

  def saved_params(self, step: int | None = None) -> Any:
    """The parameters of checkpoint `step` (default: the latest) as stored: host arrays, no target tree, no checks.
    For comparing the checkpoints of two runs (the fault pass, the GPU suite's resume check); a run to apply or
    resume goes through restore (runs.load_run, the trainer)."""
    step = self.latest_step() if step is None else step
    if step is None:
      raise NoCheckpointError(f"no checkpoint in {self.directory}")
    restored = self.manager.restore(step, args=ocp.args.Composite(**{STATE: ocp.args.StandardRestore()}))
    return restored[STATE]["params"]

  def _restore_verified(self, abstract_state: Any, data_iterator: Any | None, step: int) -> Any:
    self._check_saved_shapes(step, abstract_state)
    items = {STATE: ocp.args.StandardRestore(abstract_state)}
    carried = data_iterator is not None and self._restore_position_elsewhere(step, data_iterator)
    if data_iterator is not None and not carried:
      items[DATA] = grain.checkpoint.CheckpointRestore(data_iterator)
    try:
      restored = self.manager.restore(step, args=ocp.args.Composite(**items))
    except Exception as e:  # pylint: disable=broad-except
      raise CheckpointCorruptError(f"checkpoint {step} in {self.directory} cannot be restored: "
                                   f"{type(e).__name__}: {_first_line(e)}") from e
    _check_fits(restored[STATE], abstract_state, f"checkpoint {step} in {self.directory}")
    verify_digest(restored[STATE], self.saved_digest(step), f"checkpoint {step} in {self.directory}")
    logging.info("restored checkpoint %d from %s", step, self.directory)
    return restored[STATE]

  def _restore_newest_readable(self, abstract_state: Any, data_iterator: Any | None) -> Any:
    """Tries the checkpoints newest first; sets aside the unreadable ones newer than the one restored. When none
    can be restored nothing is moved (all failing usually means the config differs from the one that wrote them)."""
    steps = sorted(self.all_steps(), reverse=True)
    if not steps:
      raise NoCheckpointError(f"no checkpoint in {self.directory}")
    failures = []
    for step in steps:
      try:
        state = self._restore_verified(abstract_state, data_iterator, step)
      except CheckpointCorruptError as e:
        logging.warning("%s", e)
        failures.append((step, e))
        continue
      for bad, error in failures:
        logging.warning("checkpoint %d is unreadable (%s); resuming from checkpoint %d instead", bad, error, step)
        self.set_aside(bad)
      return state
    step, error = failures[0]
    raise CheckpointCorruptError(
        f"none of the checkpoints {steps} in {self.directory} can be restored into this run's train state (newest, "
        f"step {step}: {error}). If the model, optimizer or data config differs from the one that wrote them, "
        "run with the original config (copied to <workdir>/config.json) or use a new --workdir. Nothing was "
        "changed on disk.") from error

  def _check_saved_shapes(self, step: int, abstract_state: Any) -> None:
    """CheckpointCorruptError when the leaves saved in checkpoint `step` (its metadata: names and shapes) differ from
    `abstract_state`'s, before any array is read: a restore that fails part-way leaves Orbax's other reads pending,
    and each of them prints a long "Exception ignored" traceback when the process exits."""
    what = f"checkpoint {step} in {self.directory}"
    try:
      saved = self.manager.item_metadata(step)[STATE]
    except Exception as e:  # pylint: disable=broad-except
      raise CheckpointCorruptError(f"{what} cannot be restored: its metadata cannot be read: {type(e).__name__}: "
                                   f"{_first_line(e)}") from e
    if saved is None:
      return
    have = {_leaf_name(p): tuple(getattr(v, "shape", ())) for p, v in jax.tree_util.tree_leaves_with_path(saved)}
    want = {_leaf_name(p): tuple(v.shape) for p, v in jax.tree_util.tree_leaves_with_path(abstract_state)}
    if set(have) != set(want):
      raise CheckpointCorruptError(
          f"{what} holds a train state of another structure ({len(have)} leaves, this run's has {len(want)}; "
          f"e.g. {sorted(set(have) ^ set(want))[:3]})")
    differ = [name for name in want if have[name] != want[name]]
    if differ:
      more = f" (and {len(differ) - 1} more leaves)" if len(differ) > 1 else ""
      raise CheckpointCorruptError(f"{what}: {differ[0]} has shape {have[differ[0]]}, this run's "
                                   f"{want[differ[0]]}{more}")

  def saved_digest(self, step: int) -> dict | None:
    """The digest saved with checkpoint `step`, or None for a checkpoint written before digests existed."""
    path = self.directory / str(step) / DIGEST
    if not path.exists():
      return None
    try:
      return self.manager.restore(step, args=ocp.args.Composite(**{DIGEST: ocp.args.JsonRestore()}))[DIGEST]
    except Exception as e:  # pylint: disable=broad-except
      raise CheckpointCorruptError(f"the digest of checkpoint {step} in {self.directory} cannot be read: "
                                   f"{type(e).__name__}: {_first_line(e)}") from e

  def set_aside(self, step: int) -> pathlib.Path:
    """Moves checkpoint `step` to <checkpoints>_unreadable/<step>[.<time>] (kept for inspection, out of the way of
    the steps that will be saved again)."""
    target = self.directory.with_name(self.directory.name + "_unreadable") / str(step)
    if jax.process_index() == 0:
      if target.exists():
        target = target.with_name(f"{step}.{int(time.time())}")
      target.parent.mkdir(parents=True, exist_ok=True)
      shutil.move(str(self.directory / str(step)), str(target))
      logging.warning("moved unreadable checkpoint %d to %s", step, target)
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
      multihost_utils.sync_global_devices(f"set_aside_checkpoint_{step}")
    self.manager.reload()
    return target

  def close(self) -> None:
    self.manager.close()

  def _layout_item(self) -> dict:
    if self.global_batch_size is None:
      return {}
    return {LAYOUT: ocp.args.JsonSave(dict(process_count=jax.process_count(),
                                           global_batch_size=int(self.global_batch_size)))}

  def saved_layout(self, step: int) -> dict | None:
    """{"process_count", "global_batch_size"} of checkpoint `step`, or None when it was not recorded."""
    if not (self.directory / str(step) / LAYOUT).exists():
      return None
    return dict(self.manager.restore(step, args=ocp.args.Composite(**{LAYOUT: ocp.args.JsonRestore()}))[LAYOUT])

  def _restore_position_elsewhere(self, step: int, data_iterator: Any) -> bool:
    """Carries the input position of checkpoint `step` over to this process count and global batch size when
    they differ from the saved ones (data_position.py); False when they match (Grain restores it as saved)."""
    layout = self.saved_layout(step) or {}
    return data_position.restore(self.directory / str(step) / DATA, data_iterator,
                                 process_count=jax.process_count(),
                                 global_batch=int(self.global_batch_size or layout.get("global_batch_size") or 1),
                                 saved_global_batch=layout.get("global_batch_size"))


def _join_new_threads(before: set, timeout: float) -> None:
  """Waits (at most `timeout` s in all) for the threads started since `before`: the save's first failure reaches the
  caller while Orbax's other writer threads of the same save still run; they end here, not during the interpreter's
  shutdown (where each would fail again with a traceback), and not while their folder is removed."""
  deadline = time.monotonic() + timeout
  for thread in set(threading.enumerate()) - before:
    if thread is not threading.current_thread():
      # Thread's own join: Orbax's threads re-raise their error from join, and it is the failure in hand.
      threading.Thread.join(thread, max(0.0, deadline - time.monotonic()))


class _RecordedPosition:
  """Hands a recorded iterator state to Grain's checkpoint handler, which writes get_state() as text: it
  JSON-encodes the dict of a dataset iterator itself and decodes the bytes of any other, so a dict goes as JSON
  bytes (the same file, restored by the same handler)."""

  def __init__(self, state: Any):
    self._state = state

  def get_state(self) -> bytes:
    return self._state if isinstance(self._state, bytes) else json.dumps(self._state, indent=4).encode()


def _check_fits(restored: Any, abstract_state: Any, what: str) -> None:
  """Orbax can restore a checkpoint whose tree differs from the target (e.g. optimizer state for another set of
  trainable parameters); such a state would fail later, inside the step. Raises CheckpointCorruptError instead."""
  got, want = jax.tree.structure(restored), jax.tree.structure(abstract_state)
  if got != want:
    raise CheckpointCorruptError(f"{what} holds a train state of another structure ({got.num_leaves} leaves, this "
                                 f"run's has {want.num_leaves})")
  for path, a, b in zip(jax.tree_util.tree_leaves_with_path(restored), jax.tree.leaves(restored),
                        jax.tree.leaves(abstract_state)):
    if tuple(a.shape) != tuple(b.shape):
      raise CheckpointCorruptError(f"{what}: {jax.tree_util.keystr(path[0])} has shape {tuple(a.shape)}, this "
                                   f"run's {tuple(b.shape)}")


def _leaf_name(path) -> str:
  """A state leaf's name as Orbax writes it in a checkpoint's metadata ("params.head.kernel", "opt_state.0.mu...")."""
  return ".".join(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path)


def _first_line(error: BaseException) -> str:
  text = str(error).strip()
  return text.splitlines()[0][:500] if text else ""


def _leaf_checksum(x: jax.Array) -> jax.Array:
  """uint32 (2,): the sum of the leaf's bit patterns and their position-weighted sum, both mod 2**32. Integer sums
  are exact in any order, so the value does not depend on how the leaf is sharded or reduced."""
  x = jnp.asarray(x)
  if x.dtype == jnp.bool_:
    bits = x.astype(jnp.uint32)
  elif x.dtype.itemsize in (4, 8):
    bits = jax.lax.bitcast_convert_type(x, jnp.uint32)  # 8-byte values become two uint32 words
  else:
    bits = jax.lax.bitcast_convert_type(x, {2: jnp.uint16, 1: jnp.uint8}[x.dtype.itemsize]).astype(jnp.uint32)
  bits = bits.reshape(-1)
  weights = jnp.arange(bits.size, dtype=jnp.uint32) * jnp.uint32(2) + jnp.uint32(1)
  return jnp.stack([jnp.sum(bits, dtype=jnp.uint32), jnp.sum(bits * weights, dtype=jnp.uint32)])


@jax.jit
def _checksums(tree: Any) -> Any:
  return jax.tree.map(_leaf_checksum, tree)


def state_digest(state: Any) -> dict:
  """{"leaves": {leaf path: [sum, weighted sum]}} of a state pytree (jax or numpy arrays), computed on the devices
  where the state lives."""
  sums = _checksums(state)
  return {"format": 1, "leaves": {
      jax.tree_util.keystr(path): [int(v) for v in np.asarray(_local(value))]
      for path, value in jax.tree_util.tree_leaves_with_path(sums)}}


def _local(x: Any) -> Any:
  """The whole value on this host: gathered when this process sees every shard, else (several processes) the
  local copy of the replicated reduction result."""
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    return x.addressable_data(0)
  return jax.device_get(x)


def verify_digest(state: Any, saved: dict | None, what: str) -> None:
  """Raises CheckpointCorruptError naming the leaves of `state` whose checksum differs from `saved` (None: an
  older checkpoint without a digest, accepted)."""
  if saved is None:
    return
  now = state_digest(state)["leaves"]
  expected = saved.get("leaves", {})
  bad = [k for k in expected if k in now and list(expected[k]) != now[k]]
  missing = sorted(set(expected) ^ set(now))
  if bad or missing:
    raise CheckpointCorruptError(
        f"{what} does not match the digest saved with it: "
        + (f"{len(bad)} changed leaves, e.g. {bad[:3]}" if bad else f"leaves differ: {missing[:3]}")
        + ". Its files were modified or damaged after saving.")
