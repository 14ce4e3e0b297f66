"""The input position of a checkpoint restored on another number of processes (or another global batch size).

Grain saves one iterator state per process (process_<i>-of-<P>.json) and restores only onto the same P. The
pipeline makes that unnecessary: the global batches do not depend on the process count (process p reads rows
[p*L, (p+1)*L) of every global batch, clipmg_jax/data/loader/pipeline.ProcessShare), so a position is fully described by
the number of global batches read. The rule, applied when P or the global batch size G differ from the saved ones:

  * every saved process must be at the same batch count n (synchronous data parallelism guarantees it; if not,
    the checkpoint is inconsistent and restoring stops with DataPositionError);
  * n * G_saved examples of the (shuffled, repeated) example stream were read. If that is a multiple of the new
    G, training resumes exactly at the next example: nothing repeated, nothing skipped;
  * otherwise it resumes at the start of the new-size batch that holds the next unread example, and re-reads the
    examples of that batch read before (fewer than one batch); a warning names how many. Nothing is skipped.

With the same P and G, Grain's own per-process state is restored unchanged.
"""

import json
import logging
import pathlib
import re
from typing import Any

import grain

_STATE_FILE = re.compile(r"process_(\d+)-of-(\d+)\.json$")


class DataPositionError(ValueError):
  """The saved input position cannot be carried over."""


def _state_files(data_dir: pathlib.Path) -> dict[int, dict[int, pathlib.Path]]:
  """{process count: {process index: path}} of the iterator state files in data_dir."""
  files = {}
  for path in data_dir.glob("process_*-of-*.json"):
    m = _STATE_FILE.search(path.name)
    if m:
      files.setdefault(int(m.group(2)), {})[int(m.group(1))] = path
  return files


def saved_states(data_dir: str | pathlib.Path) -> tuple[int, list[Any]] | None:
  """(saved process count P, the P saved iterator states in process order), or None without state files."""
  data_dir = pathlib.Path(data_dir)
  files = _state_files(data_dir)
  if not files:
    return None
  if len(files) > 1:
    raise DataPositionError(f"{data_dir}: iterator states for several process counts {sorted(files)}")
  (count, by_index), = files.items()
  missing = sorted(set(range(count)) - set(by_index))
  if missing:
    raise DataPositionError(f"{data_dir}: no iterator state of process(es) {missing} of {count}")
  states = []
  for i in range(count):
    try:
      states.append(json.loads(by_index[i].read_text()))
    except json.JSONDecodeError as e:
      raise DataPositionError(f"{by_index[i]}: not a JSON iterator state ({e})") from None
  return count, states


def resume_batch(saved_batches: list[int], saved_global_batch: int, new_global_batch: int) -> tuple[int, int]:
  """(index of the next global batch to read at the new batch size, examples read again) under the rule above."""
  if len(set(saved_batches)) != 1:
    raise DataPositionError(f"the saved processes are at different batch counts {saved_batches}: the checkpoint's "
                            f"input position is inconsistent")
  read = saved_batches[0] * saved_global_batch
  batch = read // new_global_batch
  return batch, read - batch * new_global_batch


def restore(data_dir: str | pathlib.Path, iterator: Any, *, process_count: int, global_batch: int,
            saved_global_batch: int | None = None) -> bool:
  """Moves `iterator` (this process's, of the current layout) to the checkpoint's position in `data_dir`.

  Returns False, leaving the iterator alone, when the saved layout is the current one (use Grain's restore then).
  saved_global_batch: the global batch size at save time; None = the same as now.
  """
  saved_global_batch = saved_global_batch or global_batch
  if set(_state_files(pathlib.Path(data_dir))) == {process_count} and saved_global_batch == global_batch:
    return False  # the saved layout: Grain's restore, whatever the state's format
  saved = saved_states(data_dir)
  if saved is None:
    raise DataPositionError(f"{data_dir}: no saved iterator state (process_<i>-of-<n>.json)")
  saved_count, states = saved
  # The states are in the format of this pipeline's iterators, whatever the process count: read each one's
  # batch count through the iterator itself (grain.experimental.get_next_index) rather than parsing the state.
  counts = []
  for state in states:
    iterator.set_state(state)
    counts.append(int(grain.experimental.get_next_index(iterator)))
  batch, repeated = resume_batch(counts, saved_global_batch, global_batch)
  grain.experimental.set_next_index(iterator, batch)
  message = (f"input position carried over from {saved_count} process(es) x global batch {saved_global_batch} to "
             f"{process_count} x {global_batch}: {counts[0]} saved batches -> next batch {batch}")
  if repeated:
    logging.warning("%s; %d examples read before the checkpoint are read again (the saved position is not a "
                    "multiple of the new global batch)", message, repeated)
  else:
    logging.info("%s (exact)", message)
  return True
