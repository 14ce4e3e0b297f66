"""Preemption: SIGTERM (how TPU VMs, SLURM and Kubernetes stop a job) stops a run without losing what it trained.

Where a run can be when the signal comes, and what happens (exit status 143 and one line, cli_errors.py):
- set-up (data, model, restore; `stops_at_once`): nothing of this run to save yet, it stops at once;
- the training loop, a checkpoint write included (deferred, the default): the handler only records the signal, the
  loop polls it once per step (a Python flag, no device sync), saves that step and stops;
- the final evaluation (`stops_at_once`): the final state was saved before it began, so it stops at once, and the
  same command run again evaluates without training.
Inside a stops_at_once block a signal that does not stop the main thread within GRACE_SECONDS (its handler ran inside
a gc callback, whose exception Python cannot propagate, see _unraisable; or a C++ call that never returns to Python)
is acted on by a thread woken by the signal itself (signal.set_wakeup_fd): it ends the process with the same line
and status, releasing the workdir lock, instead of leaving the stop to the block's end, after the next long XLA
compile.
Several processes: JAX's preemption sync point (the coordination service receives the signal) makes every process
agree on the same step to save at; outside the loop the signal is left to it (the final state is already saved).
"""

import contextlib
import logging
import os
import signal
import sys
import threading
import time

import jax

# 128 + SIGTERM, what a shell reports for a job stopped by that signal: schedulers treat the run as preempted.
PREEMPTED_EXIT_CODE = 143
# 128 + SIGINT, what a shell reports for a job stopped by Ctrl-C.
INTERRUPTED_EXIT_CODE = 130
# How long a signal inside a stops_at_once block may take to stop the main thread before the watch ends the process
# itself (see the module's docstring): an XLA compile at paper size takes minutes.
GRACE_SECONDS = 1.0

SETUP = ("preempted (SIGTERM) during set-up, before this run trained a step: nothing to save (the checkpoints on "
         "disk are unchanged). Run the same command again.")


def exit_now(status: int) -> None:
  """Ends the process without the interpreter's clean-up: everything of the run is saved and closed by now (the
  checkpoint, metrics, the workdir lock). A signal that lands while XLA compiles (the final evaluation's first batch)
  leaves half-made compilation objects whose destruction at interpreter exit segfaults (exit status 139, not 143),
  even after jax.clear_caches(). Several processes exit through SystemExit instead (cli_errors.known_failures):
  their preemption is only ever raised at a step boundary, and jax.distributed's shutdown at exit is theirs to do."""
  sys.stdout.flush()
  sys.stderr.flush()
  logging.shutdown()
  os._exit(status)  # pylint: disable=protected-access


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
    self._wakeup = None  # (read fd, write fd, the previous wakeup fd)
    self._at_forced_exit = []

  def __enter__(self) -> "Watch":
    if Watch._active is not None:
      self._nested = True
      return Watch._active
    if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)
      self._previous_hook = sys.unraisablehook
      sys.unraisablehook = self._unraisable
      self._start_wakeup_thread()
    Watch._active = self
    return self

  def __exit__(self, *exc) -> None:
    if self._nested:
      return
    if self._previous is not None:
      self._stop_wakeup_thread()
      signal.signal(signal.SIGTERM, self._previous)
      self._previous = None
      sys.unraisablehook = self._previous_hook
      self._previous_hook = None
    Watch._active = None

  def at_forced_exit(self, release) -> None:
    """`release()` runs when the watch ends the process itself (a signal inside a long C++ call of a stops_at_once
    block), where the main thread's context managers cannot: the workdir lock's release (session.py)."""
    self._at_forced_exit.append(release)

  def _start_wakeup_thread(self) -> None:
    """The C-level signal handler writes each signal's number to a wakeup fd at once, wherever the main thread is;
    a thread reading it can act when the main thread is stuck in C++ (see GRACE_SECONDS)."""
    read, write = os.pipe()
    os.set_blocking(write, False)
    try:
      previous = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
    except ValueError:  # not the main thread of the main interpreter
      os.close(read)
      os.close(write)
      return
    self._wakeup = (read, write, previous)
    threading.Thread(target=self._wakeup_loop, args=(read,), name="signal-wakeup", daemon=True).start()

  def _stop_wakeup_thread(self) -> None:
    if self._wakeup is None:
      return
    read, write, previous = self._wakeup
    self._wakeup = None
    signal.set_wakeup_fd(previous)
    os.close(write)  # the thread's read returns b"" and it ends; it closes the read end

  def _wakeup_loop(self, read: int) -> None:
    try:
      while data := os.read(read, 64):
        for signum in data:
          if signum in (signal.SIGTERM, signal.SIGINT):
            self._stop_if_stuck(signum)
    finally:
      os.close(read)

  def _in_stops_at_once(self) -> bool:
    return bool(self._modes) and self._modes[-1] is not None

  def _stop_if_stuck(self, signum: int) -> None:
    """Inside a stops_at_once block the main thread's handler raises at once and the block is left within
    milliseconds. Still inside after GRACE_SECONDS, the signal did not reach it (a long C++ call, or a handler
    whose exception a gc callback swallowed): end the process here, as known_failures would."""
    deadline = time.monotonic() + GRACE_SECONDS
    while time.monotonic() < deadline:
      if not self._in_stops_at_once():
        return  # left the block, or the training loop / a checkpoint write, which act on the signal themselves
      time.sleep(0.02)
    message = self._modes[-1] if self._modes else None
    if message is None:
      return
    if signum == signal.SIGTERM:
      print(message, flush=True)
      status = PREEMPTED_EXIT_CODE
    else:
      print("interrupted (Ctrl-C)", file=sys.stderr, flush=True)
      status = INTERRUPTED_EXIT_CODE
    for release in self._at_forced_exit:
      with contextlib.suppress(Exception):
        release()
    exit_now(status)  # the main thread cannot be reached: nothing else stops it

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
    # signal is recorded all the same, and the wakeup thread (or stops_at_once, where its block ends) acts on it, so
    # say nothing here.
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
