"""Preemption: SIGTERM (how TPU VMs, SLURM and Kubernetes stop a job) stops a run without losing what it trained.

Where a run can be when the signal comes, and what happens (exit status 143 and one line, cli_errors.py):
- set-up (data, model, restore; `stops_at_once`): nothing of this run to save yet, it stops at once;
- the training loop, a checkpoint write included (deferred, the default): the handler only records the signal, the
  loop polls it once per step (a Python flag, no device sync), saves that step and stops;
- the final evaluation (`stops_at_once`): the final state was saved before it began, so it stops at once, and the
  same command run again evaluates without training.
Several processes: JAX's preemption sync point (the coordination service receives the signal) makes every process
agree on the same step to save at; outside the loop the signal is left to it (the final state is already saved).
"""

import contextlib
import logging
import signal
import sys
import threading

import jax

SETUP = ("preempted (SIGTERM) during set-up, before this run trained a step: nothing to save (the checkpoints on "
         "disk are unchanged). Run the same command again.")


class Preempted(Exception):
  """A preemption signal stopped the run; the message says what was saved. Raised by the loop after it saved the
  checkpoint of `step` (at_step), or at once where nothing is left to save."""

  def __init__(self, message: str, step: int | None = None):
    super().__init__(message)
    self.step = step

  @classmethod
  def at_step(cls, step: int, directory: str) -> "Preempted":
    return cls(f"preempted (SIGTERM) at step {step}: checkpoint {step} saved in {directory}. Run the same command "
               "again to resume.", step)


class Watch:
  """Context manager; reached(step) is True once a preemption signal arrived (all processes agree on the step).

  A Watch entered while another is active in this process (the command's around the trainer's) returns that one:
  one handler, one record of the signal."""

  _active = None  # the outermost Watch of this process

  def __init__(self):
    self.signalled = False
    self._previous = None
    self._previous_hook = None
    self._warned = False
    self._nested = False
    self._modes = []  # innermost last: None = deferred, a message = stop at once with it

  def __enter__(self) -> "Watch":
    if Watch._active is not None:
      self._nested = True
      return Watch._active
    if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)
      self._previous_hook = sys.unraisablehook
      sys.unraisablehook = self._unraisable
    Watch._active = self
    return self

  def __exit__(self, *exc) -> None:
    if self._nested:
      return
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
      self._previous = None
      sys.unraisablehook = self._previous_hook
      self._previous_hook = None
    Watch._active = None

  @contextlib.contextmanager
  def stops_at_once(self, message: str):
    """Inside, where nothing is left to save, a preemption signal raises Preempted(message) at once (on entering,
    when it came before)."""
    self._modes.append(message)
    try:
      if self.signalled:
        raise Preempted(message)
      yield
      if self.signalled:  # the handler's exception was swallowed (see _unraisable): stop where the block ends
        raise Preempted(message)
    finally:
      self._modes.pop()

  @contextlib.contextmanager
  def deferred(self):
    """Inside (the training loop, a checkpoint write), a preemption signal is only recorded, for reached()."""
    self._modes.append(None)
    try:
      yield
    finally:
      self._modes.pop()

  def _handle(self, signum, frame) -> None:  # pylint: disable=unused-argument
    self.signalled = True
    if self._modes and self._modes[-1] is not None:
      raise Preempted(self._modes[-1])

  def _unraisable(self, unraisable) -> None:
    # The handler runs wherever the main thread is, also inside a gc callback (JAX registers one) or a __del__,
    # where Python cannot propagate an exception: it prints "Exception ignored ... Traceback" and goes on. The
    # signal is recorded all the same, and stops_at_once raises it where its block ends, so say nothing here.
    if isinstance(unraisable.exc_value, Preempted):
      return
    self._previous_hook(unraisable)

  def reached(self, step: int) -> bool:
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
      try:
        return multihost_utils.reached_preemption_sync_point(step)
      except RuntimeError as e:  # the preemption service is off (jax.distributed.initialize without it)
        if not self._warned:
          logging.warning("no preemption sync point (%s): SIGTERM will not save a checkpoint", e)
          self._warned = True
        return False
    return self.signalled
