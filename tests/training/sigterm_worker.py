"""Trains the stand-ins in <workdir> (argv[1]) for argv[2] steps, slowed to ~0.1 s per step so that a test can send
SIGTERM mid-run; exits as `python -m clipmg_jax.train` does on preemption (the status and line it prints)."""

import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import training_stand_ins as stand_ins  # noqa: E402  pylint: disable=wrong-import-position
from clipmg_jax import cli_errors  # noqa: E402  pylint: disable=wrong-import-position
from clipmg_jax.training import loop  # noqa: E402  pylint: disable=wrong-import-position
from clipmg_jax.training import preemption  # noqa: E402  pylint: disable=wrong-import-position
from clipmg_jax.training import trainer  # noqa: E402  pylint: disable=wrong-import-position


def slow(batches):
  for item in batches:
    time.sleep(0.1)
    yield item


def main():
  workdir, steps = pathlib.Path(sys.argv[1]), int(sys.argv[2])
  prefetch = loop._prefetch  # pylint: disable=protected-access
  loop._prefetch = lambda *a, **k: slow(prefetch(*a, **k))  # pylint: disable=protected-access
  config = stand_ins.tiny_config(**{"total_steps": steps, "checkpoint.every_steps": 1000, "eval_every_steps": 0})
  try:
    trainer.train_and_evaluate(config, workdir, stand_ins.tiny_data(), stand_ins.tiny_model())
  except preemption.Preempted as e:
    print(e, flush=True)
    sys.exit(cli_errors.PREEMPTED_EXIT_CODE)


if __name__ == "__main__":
  main()
