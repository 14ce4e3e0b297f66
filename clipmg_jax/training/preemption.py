"""Preemption: SIGTERM (how TPU VMs, SLURM and Kubernetes stop a job) saves a checkpoint at the next step and stops.

Single process: a SIGTERM handler records the signal and the loop polls it once per step (a Python flag, no device
sync). Several processes: JAX's preemption sync point (the coordination service receives the signal) makes every
process agree on the same step to save at.
"""

import logging
import signal
import threading

import jax


class Preempted(Exception):
  """Raised by the training loop after it saved the checkpoint of `step` on a preemption signal."""

  def __init__(self, step: int, directory: str):
    super().__init__(f"preempted (SIGTERM) at step {step}: checkpoint {step} saved in {directory}. Run the same "
                     "command again to resume.")
    self.step = step


class Watch:
  """Context manager; reached(step) is True once a preemption signal arrived (all processes agree on the step)."""

  def __init__(self):
    self.signalled = False
    self._previous = None
    self._warned = False

  def __enter__(self) -> "Watch":
    if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def __exit__(self, *exc) -> None:
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
      self._previous = None

  def _handle(self, signum, frame) -> None:  # pylint: disable=unused-argument
    self.signalled = True

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
