"""The session of a command: what it holds while it works on a run folder, taken in this one place.

  processes   jax.distributed joined at the start (distributed.initialize, when config.distributed is set) and left
              at the end (distributed.shutdown): every command that starts processes stops them.
  lock        <workdir>/train.lock (workdir_lock.py): one writing run per folder; a second one stops at once,
              naming the host and pid of the holder.
  watch       the SIGTERM handler (preemption.py): a preemption signal is recorded here and honoured by the
              training loop (a checkpoint at the next step, exit status 143) or at once where nothing is left to
              save.

`python -m clipmg_jax.<command>` opens one through command.run; library callers (tests, notebooks, sweeps) get one
from trainer.train_and_evaluate and contrastive.pretrain when they pass none.
"""

import contextlib
import pathlib

import ml_collections

from clipmg_jax.run import distributed
from clipmg_jax.run import preemption
from clipmg_jax.run import workdir_lock
from clipmg_jax.run.folder import RunFolder


class Session:
  """Context manager. writes: take the folder's lock and the SIGTERM watch (commands that write a run: train,
  pretrain); processes: join the other processes (commands that run over all of them: train, pretrain,
  evaluate)."""

  def __init__(self, config: ml_collections.ConfigDict | None, workdir=None, *, writes: bool = False,
               processes: bool = True):
    if writes and workdir is None:
      raise ValueError("a writing session needs a run folder (--workdir)")
    self.config = config
    self.folder = None if workdir is None else RunFolder.of(workdir)
    self.writes = writes
    self.processes = processes and config is not None
    self.watch: preemption.Watch | None = None
    self._stack = contextlib.ExitStack()

  @property
  def workdir(self) -> pathlib.Path | None:
    return None if self.folder is None else self.folder.path

  def __enter__(self) -> "Session":
    if self.processes:
      distributed.initialize(self.config)
    try:
      if self.writes:
        self.folder.path.mkdir(parents=True, exist_ok=True)
        self._stack.enter_context(workdir_lock.hold(self.folder))
        self.watch = self._stack.enter_context(preemption.Watch())
        self.watch.at_forced_exit(workdir_lock.release_all)
    except BaseException:
      self._stack.close()
      raise
    return self

  def __exit__(self, exc_type, *_) -> None:
    self._stack.close()
    # Only after a clean end: a failing process leaves through cli_errors, which knows how to stop the others
    # without waiting at the exit barrier for a process that may be dead.
    if self.processes and exc_type is None:
      distributed.shutdown()

  def stops_at_once(self, message: str):
    """watch.stops_at_once(message) (nothing to save yet: a signal stops at once); a no-op without a watch."""
    return self.watch.stops_at_once(message) if self.watch is not None else contextlib.nullcontext()


def writing(config: ml_collections.ConfigDict | None, workdir, session: Session | None):
  """`session` when the caller holds one (a command), else a new writing Session of `workdir` (library callers): the
  context trainer.train_and_evaluate and contrastive.pretrain work in."""
  if session is not None:
    if not session.writes:
      raise ValueError("training needs a writing session (Session(..., writes=True))")
    return contextlib.nullcontext(session)
  return Session(config, workdir, writes=True, processes=False)
