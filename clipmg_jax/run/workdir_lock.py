"""One training run per --workdir at a time: <workdir>/train.lock.

Two runs on one workdir would write each other's checkpoints and metrics.jsonl without a word. Process 0 of a run
creates the lock file (O_EXCL: of two runs starting together, one wins) holding its host, pid and start time, and
removes it when the run ends, however it ends short of kill -9. A second run stops at once with WorkdirLockedError
naming the holder. A lock whose holder is gone — its pid no longer runs on this host, or now runs another process
(another start time) — was left by a killed run: it is taken over with a warning saying so. A lock held from another
host cannot be checked from here: the message says when it is safe to delete it.

Several processes: only process 0 takes the lock and tells the others whether it got it, so all stop together (the
others never refuse their own run's lock). Readers (evaluate, predict, inspect_clip) take no lock: they only read,
and Orbax only ever shows them complete checkpoints.
"""

import contextlib
import datetime
import errno
import json
import logging
import os
import pathlib
import socket
import sys

import jax
import numpy as np

from clipmg_jax.run.folder import RunFolder


_held: dict[pathlib.Path, int] = {}  # lock path -> nesting depth, in this process (the command's and the trainer's)


class WorkdirLockedError(RuntimeError):
  """Another run holds the workdir's lock; the message names its host and pid and what to do."""


@contextlib.contextmanager
def hold(workdir: str | os.PathLike):
  """Holds <workdir>/train.lock inside (creating workdir); WorkdirLockedError when another live run holds it.
  Re-entrant within a process: only the outermost hold takes and releases the lock."""
  path = RunFolder.of(workdir).lock_file.absolute()
  if path in _held:
    _held[path] += 1
    try:
      yield
    finally:
      _held[path] -= 1
    return
  error = None
  if jax.process_index() == 0:
    try:
      _acquire(path)
    except WorkdirLockedError as e:
      error = e
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
    locked = int(multihost_utils.broadcast_one_to_all(np.int32(error is None)))
    if not locked and error is None:
      error = WorkdirLockedError(f"process 0 of this run could not lock {path.parent} (its output names the run "
                                 "holding it)")
  if error is not None:
    raise error
  _held[path] = 1
  try:
    yield
  finally:
    del _held[path]
    if jax.process_index() == 0:
      _release(path)


def release_all() -> None:
  """Releases every lock this process holds, for an exit that skips the holders' own clean-up (preemption.py's
  forced exit): the next run then finds no lock instead of a stale one."""
  if jax.process_index() == 0:
    for path in list(_held):
      _release(path)
  _held.clear()


class WorkdirNotWritableError(OSError):
  """The workdir (or its lock) cannot be created or written; the message names it."""


def _acquire(path: pathlib.Path) -> None:
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(3):  # another run may take over the same stale lock at the same moment: look again
      if _create_whole(path, json.dumps(_identity())):
        return
      holder = _read(path)
      if holder is None or not _is_gone(holder):
        raise WorkdirLockedError(_locked_message(path, holder))
      _take_over(path, holder)
  except OSError as e:  # not ours to write: no permission, or a read-only file system (a dataset volume, say)
    if not isinstance(e, PermissionError) and e.errno != errno.EROFS:
      raise
    raise WorkdirNotWritableError(f"cannot write the run folder {path.parent} ({e.strerror}): choose a --workdir "
                                  "you can write to") from None
  raise WorkdirLockedError(_locked_message(path, _read(path)))


def _create_whole(path: pathlib.Path, text: str) -> bool:
  """Creates `path` holding `text`, or returns False when it exists. The file appears with its content (written
  aside, then hard-linked into place): another run never reads a lock that exists but is still empty, which it
  would take for a torn, stale one and take over."""
  aside = path.with_name(f"{path.name}.{os.getpid()}.new")
  _write_synced(os.open(aside, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o644), text)
  try:
    os.link(aside, path)
    return True
  except FileExistsError:
    return False
  except OSError:  # a file system without hard links: create exclusively, then write (the old window remains)
    try:
      _write_synced(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644), text)
    except FileExistsError:
      return False
    return True
  finally:
    aside.unlink(missing_ok=True)


def _write_synced(fd: int, text: str) -> None:
  with os.fdopen(fd, "w") as f:
    f.write(text)
    f.flush()
    os.fsync(f.fileno())


def _take_over(path: pathlib.Path, holder: dict) -> None:
  """Moves a stale lock out of the way (a rename: of two runs doing this, one moves it) and says so."""
  aside = path.with_name(f"{path.name}.stale.{os.getpid()}")
  try:
    os.rename(path, aside)
  except FileNotFoundError:
    return  # the other run moved it first; the O_EXCL create decides between us
  if _read(aside) != holder:  # another run had already replaced it with its own, live lock: put that back
    with contextlib.suppress(OSError):
      os.link(aside, path)
    aside.unlink(missing_ok=True)
    raise WorkdirLockedError(_locked_message(path, _read(path)))
  aside.unlink(missing_ok=True)
  logging.warning("%s: taking over the lock of process %s on host %s (started %s): that process is gone (a killed "
                  "run)", path, holder.get("pid"), holder.get("host"), holder.get("started"))


def _release(path: pathlib.Path) -> None:
  holder = _read(path)
  if holder is not None and holder.get("host") == socket.gethostname() and holder.get("pid") == os.getpid():
    path.unlink(missing_ok=True)


def _identity() -> dict:
  return {"host": socket.gethostname(), "pid": os.getpid(), "start_ticks": _start_ticks(os.getpid()),
          "started": datetime.datetime.now().isoformat(timespec="seconds"), "command": " ".join(sys.argv)[:500]}


def _read(path: pathlib.Path) -> dict | None:
  """The lock's holder; {} for a lock file that cannot be read (torn by a kill while it was written); None when
  there is no lock file."""
  try:
    text = path.read_text()
  except FileNotFoundError:
    return None
  except OSError:
    return {}
  try:
    holder = json.loads(text)
  except ValueError:
    return {}
  return holder if isinstance(holder, dict) else {}


def _is_gone(holder: dict) -> bool:
  """Whether the holder surely no longer runs: on this host, its pid is free or belongs to a later process. A torn
  lock file counts as gone; a holder on another host never does (it cannot be checked from here)."""
  if not holder:
    return True
  if holder.get("host") != socket.gethostname():
    return False
  pid = int(holder.get("pid", -1))
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return True
  except PermissionError:
    pass  # alive, another user's
  saved, now = holder.get("start_ticks"), _start_ticks(pid)
  return saved is not None and now is not None and saved != now


def _start_ticks(pid: int) -> int | None:
  """The process's start time (clock ticks after boot, /proc/<pid>/stat field 22), which tells a reused pid from
  the original; None where /proc is absent."""
  try:
    stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
  except OSError:
    return None
  return int(stat.rsplit(")", 1)[1].split()[19])


def _locked_message(path: pathlib.Path, holder: dict | None) -> str:
  who = (f"process {holder.get('pid')} on host {holder.get('host')} (started {holder.get('started')}: "
         f"{holder.get('command')})" if holder else "another run")
  return (f"--workdir {path.parent} is in use by {who}: two runs on one workdir would overwrite each other's "
          "checkpoints and metrics. Wait for it to end (or stop it), or use another --workdir. If that run is gone "
          f"(e.g. its machine crashed), delete {path}.")
