r"""A fault-injection pass over training and conversion; prints what each fault ended with.

  python -m scripts.fault_pass [--workdir /tmp/fault_pass] [--kills 5] [--seed 0]   # from the repository root

Training runs use the small stand-in model and in-memory data of the tests (tests/training/training_stand_ins.py),
each in its own process, so that a fault is a real signal to a real process:
  kill -9   at random moments (N times, each followed by a plain rerun): the final parameters must equal those of an
            uninterrupted run;
  NaN       a batch of NaN keypoints at step 5: NonFiniteLossError, no non-finite checkpoint;
  damaged   the latest checkpoint's state/_METADATA deleted: the rerun falls back to the previous one and finishes
            equal to the uninterrupted run;
  SIGTERM   exit status 143 with a checkpoint at the step named, then an exact resume;
  repaired  conversion of a small raw dataset with one truncated skeleton file, repaired, converted again: the
            repaired clip is in the shards and only its shard was redone.
"""

import argparse
import pathlib
import random
import shutil
import signal
import subprocess
import sys
import time

from clipmg_jax.run.folder import RunFolder

REPO = pathlib.Path(__file__).resolve().parents[1]
STEPS = 60


def worker(workdir: str, poison_step: int) -> None:
  """One training run of the stand-ins (slowed to ~0.05 s per step so that signals land mid-run)."""
  from tests.training import training_stand_ins as stand_ins  # pylint: disable=import-outside-toplevel
  from clipmg_jax.run import preemption  # pylint: disable=import-outside-toplevel
  from clipmg_jax.training import loop, trainer  # pylint: disable=import-outside-toplevel
  prefetch = loop._prefetch  # pylint: disable=protected-access

  def slow(*args, **kwargs):
    for item in prefetch(*args, **kwargs):
      time.sleep(0.05)
      yield item
  loop._prefetch = slow  # pylint: disable=protected-access
  config = stand_ins.tiny_config(**{"total_steps": STEPS, "checkpoint.every_steps": 7, "eval_every_steps": 20,
                                    "log_every_steps": 5})
  data = stand_ins.tiny_data(poison_step=poison_step or None)
  try:
    trainer.train_and_evaluate(config, workdir, data, stand_ins.tiny_model())
  except preemption.Preempted as e:
    print(e, flush=True)
    sys.exit(143)
  except trainer.NonFiniteLossError as e:
    print(f"NonFiniteLossError: {e}", flush=True)
    sys.exit(3)


def run(workdir: pathlib.Path, poison_step: int = 0, *, kill_after: float | None = None, sig=signal.SIGKILL,
        kill_when=None):
  proc = subprocess.Popen([sys.executable, "-m", "scripts.fault_pass", "--worker", str(workdir), str(poison_step)],
                          cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  if kill_after is not None:
    # Wait for the first logged step (start-up and compilation vary), then the random delay.
    metrics = RunFolder(workdir).metrics_file
    start = time.time()
    while proc.poll() is None and not (metrics.is_file() and metrics.read_text().strip()) and (
        time.time() - start < 300):
      time.sleep(0.05)
    time.sleep(kill_after)
    while kill_when is not None and proc.poll() is None and not kill_when():
      time.sleep(0.05)
    if proc.poll() is None:
      proc.send_signal(sig)
  out, err = proc.communicate(timeout=900)
  return proc.returncode, out, err


def final_params(workdir: pathlib.Path):
  import jax  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  from clipmg_jax.training import checkpointing  # pylint: disable=import-outside-toplevel
  ckpt = checkpointing.Checkpointer(RunFolder(workdir).checkpoints_dir)
  try:
    return [np.asarray(x) for x in jax.tree.leaves(ckpt.saved_params(STEPS))]
  finally:
    ckpt.close()


def same(a, b) -> str:
  import numpy as np  # pylint: disable=import-outside-toplevel
  diff = max(float(np.max(np.abs(x - y))) for x, y in zip(a, b))
  return "bit-equal" if diff == 0 else f"max |diff| {diff:.2e}"


def steps_on_disk(workdir: pathlib.Path) -> list[int]:
  return RunFolder(workdir).checkpoint_steps()


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--workdir", default="/tmp/fault_pass")
  parser.add_argument("--kills", type=int, default=5)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  root = pathlib.Path(args.workdir)
  shutil.rmtree(root, ignore_errors=True)
  rng = random.Random(args.seed)
  results = _Results()

  rc, _, err = run(root / "reference")
  assert rc == 0, err[-2000:]
  reference = final_params(root / "reference")

  for i in range(args.kills):
    workdir = root / f"kill9_{i}"
    delay = rng.uniform(0.0, STEPS * 0.05)
    rc, _, _ = run(workdir, kill_after=delay)
    rc2, _, err = run(workdir)
    outcome = f"killed (status {rc}) {delay:.2f} s after the first log line; rerun status {rc2}"
    outcome += f", final params {same(final_params(workdir), reference)}" if rc2 == 0 else f": {err[-300:]}"
    results.append((f"kill -9 #{i + 1}", outcome))

  workdir = root / "nan"
  rc, out, _ = run(workdir, poison_step=5)
  line = next((l for l in out.splitlines() if l.startswith("NonFiniteLossError")), out[-200:])
  results.append(("NaN batch at step 5", f"status {rc}; {line[:160]}...; checkpoints on disk {steps_on_disk(workdir)}"))

  workdir = root / "damaged"
  run(workdir, kill_after=0.0, kill_when=lambda: len(steps_on_disk(workdir)) >= 2)
  latest = steps_on_disk(workdir)[-1]
  (RunFolder(workdir).checkpoints_dir / str(latest) / "state" / "_METADATA").unlink()
  rc, _, err = run(workdir)
  set_aside = sorted(p.name for p in (workdir / "checkpoints_unreadable").iterdir()) if (
      workdir / "checkpoints_unreadable").is_dir() else []
  results.append((f"damaged latest checkpoint ({latest})", f"rerun status {rc}, set aside {set_aside}, final params "
                  + (same(final_params(workdir), reference) if rc == 0 else err[-300:])))

  workdir = root / "sigterm"
  rc, out, _ = run(workdir, kill_after=0.5, sig=signal.SIGTERM)
  line = next((l for l in out.splitlines() if l.startswith("preempted")), "no preemption line")
  rc2, _, err = run(workdir)
  results.append(("SIGTERM", f"status {rc}: {line}; rerun status {rc2}, final params "
                  + (same(final_params(workdir), reference) if rc2 == 0 else err[-300:])))

  results.append(("repaired raw data", repaired_raw_data(root / "convert")))


class _Results(list):
  """Prints each outcome as soon as it is known (a long pass can be read while it runs)."""

  def append(self, item):
    super().append(item)
    print(f"{item[0]:32s} {item[1]}", flush=True)


def repaired_raw_data(root: pathlib.Path) -> str:
  from tests.data import test_convert_faults as conv  # pylint: disable=import-outside-toplevel
  root.mkdir(parents=True)
  raw = conv._raw_root(root)  # pylint: disable=protected-access
  good = (raw / "skeleton" / "1" / "1_000000000007_keypoints.json").read_text()
  conv._write_frame(raw, "1", 7, good[:30])  # pylint: disable=protected-access
  first = conv._convert(raw, root / "shards")  # pylint: disable=protected-access
  conv._write_frame(raw, "1", 7, good)  # pylint: disable=protected-access
  second = conv._convert(raw, root / "shards")  # pylint: disable=protected-access
  return (f"before repair {first['splits']['train']['num_clips']} train clips ({first['num_skipped']} skipped: "
          f"{first['skipped'][0]['reason'][:80]}...); after {second['splits']['train']['num_clips']} "
          f"({second['num_skipped']} skipped)")


if __name__ == "__main__":
  if len(sys.argv) > 1 and sys.argv[1] == "--worker":
    worker(sys.argv[2], int(sys.argv[3]))
  else:
    main()
