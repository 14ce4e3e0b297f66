"""Trains the stand-ins in <workdir> (argv[1]) for argv[2] steps, slowed to ~0.1 s per step so that a test can send
SIGTERM mid-run; ends as `python -m clipmg_jax.train` does (cli_errors.known_failures: on preemption the status and
line it prints, a named error as one message).

argv[3] (optional), "validation" or "test": the final evaluation of that split prints "evaluating <split>" and waits
a minute first, so that a test can send its signal while the final evaluation runs (the code it waits in is the
production one: the signal handler runs during the sleep)."""

import pathlib
import sys
import time

# Beside this file; its callers also name tests/training in PYTHONPATH, as pyproject.toml's pythonpath does for the
# tests.
import training_stand_ins as stand_ins
from clipmg_jax import cli_errors
from clipmg_jax.training import loop
from clipmg_jax.training import setup as setup_lib
from clipmg_jax.training import trainer


def slow(batches):
  for item in batches:
    time.sleep(0.1)
    yield item


def pause_before(split: str) -> None:
  evaluate = setup_lib.Setup.evaluate

  def paused(self, params, **kwargs):
    if kwargs.get("split") == split:
      print(f"evaluating {split}", flush=True)
      time.sleep(60)
    return evaluate(self, params, **kwargs)
  setup_lib.Setup.evaluate = paused


def main():
  workdir, steps = pathlib.Path(sys.argv[1]), int(sys.argv[2])
  prefetch = loop._prefetch  # pylint: disable=protected-access
  loop._prefetch = lambda *a, **k: slow(prefetch(*a, **k))  # pylint: disable=protected-access
  if len(sys.argv) > 3:
    pause_before(sys.argv[3])
  config = stand_ins.tiny_config(**{"total_steps": steps, "checkpoint.every_steps": 1000, "eval_every_steps": 0})
  with cli_errors.known_failures(str(workdir)):
    trainer.train_and_evaluate(config, workdir, stand_ins.tiny_data(), stand_ins.tiny_model())


if __name__ == "__main__":
  main()
