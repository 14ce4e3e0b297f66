"""A signal in a block with nothing to save (set-up, the final evaluation) stops the process within
preemption.GRACE_SECONDS with its one line and status, and releases the workdir lock, also when its handler ran
inside a gc callback (JAX registers one), whose exception Python swallows: the stop used to wait for the block's
end, after whatever long call came next (an XLA compile: minutes at paper size)."""

import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from clipmg_jax.run import preemption

REPO = pathlib.Path(__file__).resolve().parents[2]

# The signal is sent while the main thread sleeps inside a gc callback: its handler runs there and its exception is
# swallowed; then the block goes on with work of 30 s that never returns to a handler (as an XLA compile of minutes
# at paper size: here a sleep, whose length does not depend on the machine's speed; the signal is already spent).
_SCRIPT = """
import gc, sys, time
from clipmg_jax import cli_errors
from clipmg_jax.run import session as session_lib

armed = []
def in_gc(phase, info):
  if phase == "start" and armed:
    armed.clear()
    print("in a gc callback", flush=True)
    time.sleep(1)

with cli_errors.known_failures(), session_lib.Session(None, sys.argv[1], writes=True) as session:
  gc.callbacks.append(in_gc)
  with session.stops_at_once("preempted (SIGTERM) while compiling: nothing to save"):
    armed.append(True)
    gc.collect()
    time.sleep(30)
    print(f"compiled at {time.time()!r}", flush=True)
"""


def test_a_signal_swallowed_by_a_gc_callback_still_stops_within_the_grace(tmp_path):
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
  proc = subprocess.Popen([sys.executable, "-c", _SCRIPT, str(tmp_path / "run")], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  assert proc.stdout.readline() == "in a gc callback\n"
  time.sleep(0.2)
  sent = time.monotonic()
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=300)
  waited = time.monotonic() - sent
  assert "compiled at" not in out, f"the compilation ran to its end ({waited:.1f} s) before the signal was honoured"
  assert proc.returncode == preemption.PREEMPTED_EXIT_CODE, err[-2000:]
  assert "preempted (SIGTERM) while compiling" in out and "Traceback" not in err
  assert waited < preemption.GRACE_SECONDS + 10, waited  # ~2 s; generous for a loaded machine
  assert not (tmp_path / "run" / "train.lock").exists()  # released, not left stale for the next run
