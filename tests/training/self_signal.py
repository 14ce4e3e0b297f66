"""SIGTERM sent to the test process itself, for the preemption tests of the classifier's and the pretraining runs."""

import contextlib
import os
import signal
import time

from clipmg_jax.training import checkpointing


class Killed(BaseException):
  """What SIGTERM raises where the code under test installed no handler of its own (instead of killing pytest)."""


@contextlib.contextmanager
def sigterm_guard():
  def killed(signum, frame):
    raise Killed()
  previous = signal.signal(signal.SIGTERM, killed)
  try:
    yield
  finally:
    signal.signal(signal.SIGTERM, previous)


def sigterm_self():
  os.kill(os.getpid(), signal.SIGTERM)
  time.sleep(0.5)  # the handler runs here


def sigterm_when_saving(monkeypatch, step: int) -> None:
  """Checkpointer.save of `step` receives SIGTERM before it writes (the handler runs there, then the write goes on)."""
  save = checkpointing.Checkpointer.save

  def signalled_save(self, at_step, *args, **kwargs):
    if at_step == step:
      sigterm_self()
    return save(self, at_step, *args, **kwargs)
  monkeypatch.setattr(checkpointing.Checkpointer, "save", signalled_save)
