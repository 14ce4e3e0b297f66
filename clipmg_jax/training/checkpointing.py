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
"""

import json
import logging
import pathlib
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

from clipmg_jax.training import data_position

STATE = "state"
DATA = "data"
LAYOUT = "data_layout"
# Key the trainer adds to the metrics of a checkpoint ranked on the validation split; best_step(require=...) skips
# checkpoints without it (e.g. ones ranked on another split by an older version).
VALIDATION_MARK = "ranked_on_validation"


class Checkpointer:
  """Thin wrapper over ocp.CheckpointManager for (train state, data iterator) pairs."""

  def __init__(self, directory: str | pathlib.Path, *, keep_last: int = 2, keep_best: int = 1,
               best_metric: str = "top1", global_batch_size: int | None = None):
    """global_batch_size: recorded with the input position, so that a restore with another batch size or process
    count can carry the position over (data_position.py); None = not recorded (then assumed unchanged)."""
    self.global_batch_size = global_batch_size
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
                       LAYOUT: ocp.JsonCheckpointHandler()})

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

  def all_steps(self) -> list[int]:
    return list(self.manager.all_steps())

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
    self.manager.save(step, args=ocp.args.Composite(**items), metrics=metrics, force=True)
    self.manager.wait_until_finished()
    logging.info("saved checkpoint %d to %s", step, self.directory)

  def restore(self, abstract_state: Any, data_iterator: Any | None = None, step: int | None = None) -> Any:
    """Restores checkpoint `step` (default: the latest) into arrays shaped and sharded like `abstract_state`
    (a pytree of jax.ShapeDtypeStruct with .sharding); moves `data_iterator` to the saved position in place."""
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {self.directory}")
    items = {STATE: ocp.args.StandardRestore(abstract_state)}
    carried = data_iterator is not None and self._restore_position_elsewhere(step, data_iterator)
    if data_iterator is not None and not carried:
      items[DATA] = grain.checkpoint.CheckpointRestore(data_iterator)
    restored = self.manager.restore(step, args=ocp.args.Composite(**items))
    logging.info("restored checkpoint %d from %s", step, self.directory)
    return restored[STATE]

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


class _RecordedPosition:
  """Hands a recorded iterator state to Grain's checkpoint handler, which writes get_state() as text: it
  JSON-encodes the dict of a dataset iterator itself and decodes the bytes of any other, so a dict goes as JSON
  bytes (the same file, restored by the same handler)."""

  def __init__(self, state: Any):
    self._state = state

  def get_state(self) -> bytes:
    return self._state if isinstance(self._state, bytes) else json.dumps(self._state, indent=4).encode()


def abstract_like(state: Any, shardings: Any) -> Any:
  """ShapeDtypeStructs with the shapes/dtypes of `state` and the given shardings (restore targets)."""
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, shardings)
