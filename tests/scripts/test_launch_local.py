"""scripts/launch_local.sh: Ctrl-C reaches every process as the preemption signal, each saves the checkpoint of the
step they agree on and stops; the launcher names how each process ended and the command that resumes; the rerun
finishes the run. A process killed outright (kill -9) stops the other within seconds, and the terminal gets one line
per process and the resume command, not the survivor's abort."""

import json
import os
import pathlib
import re
import signal
import subprocess
import time

import pytest

from clipmg_jax.run.folder import RunFolder

REPO = pathlib.Path(__file__).resolve().parents[2]
# A tiny CLIP-MG (test_end_to_end's sizes) on the tiny synthetic preset, long enough to be interrupted.
TINY = ("--config.batch_size=8 --config.eval_batch_size=16 --config.log_every_steps=1 --config.eval_every_steps=0 "
        "--config.checkpoint.every_steps=1000 --config.optimizer.warmup_steps=2 --config.model.vit.width=16 "
        "--config.model.vit.layers=2 --config.model.vit.heads=2 --config.model.vit.mlp_dim=32 "
        "--config.model.vit.image_size=32 --config.model.trainable_blocks=1 --config.model.skeleton.num_groups=4 "
        "--config.model.skeleton.embed_dim=16 --config.model.head.hidden_dim=16 --config.data.image_size=32 "
        "--config.data.worker_count=0 --config.data.synthetic.preset=tiny --config.data.validation.num_subjects=1 "
        "--config.init.allow_random_vit=True").split()


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_on_every_process_and_the_rerun_finishes(tmp_path):
  workdir = tmp_path / "two"
  command = ["bash", str(REPO / "scripts" / "launch_local.sh"), "2", "--", "--config", "configs/synthetic.py",
             "--workdir", str(workdir), *TINY, f"--config.data.synthetic.cache_dir={tmp_path / 'data'}"]
  env = dict(os.environ, DEVICES="1")
  # As from a terminal: SIGINT at its default in the launcher (a test worker may ignore it, and a shell cannot trap a
  # signal ignored when it started).
  launcher = subprocess.Popen([*command, "--config.total_steps=1000"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
  try:
    _wait_for_steps(launcher, workdir, 5)
    launcher.send_signal(signal.SIGINT)  # what Ctrl-C in the terminal sends the launcher
    start = time.time()
    out, err = launcher.communicate(timeout=300)
    print(f"every process stopped {time.time() - start:.1f} s after Ctrl-C")
  finally:
    if launcher.poll() is None:
      launcher.kill()
  assert launcher.returncode == 143, err
  assert "launch_local: interrupted (Ctrl-C): asking the 2 processes to save a checkpoint and stop" in err
  for i in (0, 1):
    assert f"launch_local: process {i} (pid " in err and "status 143 (stopped by SIGTERM after saving" in err
    log = (workdir / f"process_{i}.log").read_text()
    step = int(re.search(r"preempted \(SIGTERM\) at step (\d+): checkpoint saved", log).group(1))
  assert RunFolder(workdir).checkpoint_steps() == [step]  # the interrupt's (no periodic one before it)
  resume = re.search(r"launch_local: resume with: (.*)", err).group(1)
  assert resume.startswith("bash ") and "--workdir " + str(workdir) in resume
  rerun = subprocess.run([*command, "--config.total_steps=" + str(step + 4)], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=900, check=False)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert json.loads(RunFolder(workdir).results_file().read_text())["step"] == step + 4
  assert f"resuming from step {step}" in (workdir / "process_0.log").read_text()


def _wait_for_steps(launcher: subprocess.Popen, workdir: pathlib.Path, steps: int) -> None:
  """Until the run has logged `steps` training steps (10 min at most); the launcher must still be running."""
  run = RunFolder(workdir)
  deadline = time.time() + 600
  while time.time() < deadline and len(run.read_metrics("train")) < steps and launcher.poll() is None:
    time.sleep(0.5)
  assert launcher.poll() is None, launcher.communicate()


def _python_process(launcher: subprocess.Popen, rank: int) -> int:
  """The PID of the launcher's Python process of `rank` (a child of the script, with JAX_PROCESS_ID=rank)."""
  for entry in pathlib.Path("/proc").iterdir():
    try:
      parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
      environ = (entry / "environ").read_bytes().split(b"\0")
    except (OSError, ValueError, IndexError):
      continue
    if parent == launcher.pid and f"JAX_PROCESS_ID={rank}".encode() in environ:
      return int(entry.name)
  raise AssertionError(f"no process {rank} under the launcher")


@pytest.mark.slow
def test_kill_9_of_one_process_is_one_line_per_process_and_the_resume_command(tmp_path):
  workdir = tmp_path / "two"
  command = ["bash", str(REPO / "scripts" / "launch_local.sh"), "2", "--", "--config", "configs/synthetic.py",
             "--workdir", str(workdir), *TINY, f"--config.data.synthetic.cache_dir={tmp_path / 'data'}",
             "--config.total_steps=1000"]
  launcher = subprocess.Popen(command, cwd=REPO, env=dict(os.environ, DEVICES="1"), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
  try:
    _wait_for_steps(launcher, workdir, 3)
    victim = _python_process(launcher, 1)
    os.kill(victim, signal.SIGKILL)
    start = time.time()
    out, err = launcher.communicate(timeout=120)
    seconds = time.time() - start
    print(f"the launcher ended {seconds:.1f} s after kill -9 of process 1")
  finally:
    if launcher.poll() is None:
      launcher.kill()
  assert seconds < 60, err  # FAIL_GRACE (10 s) after the launcher sees it, not the heartbeat timeout (100 s)
  assert launcher.returncode == 137, err
  lines = err.strip().splitlines()
  assert lines[-3].startswith(f"launch_local: process 1 (pid {victim}) ended with signal KILL (status 137); log: ")
  assert lines[-2].startswith("launch_local: process 0 (pid ") and "was stopped after process 1 ended" in lines[-2]
  assert lines[-1].startswith("launch_local: resume with: bash ") and f"--workdir {workdir}" in lines[-1]
  terminal = out + err
  for dump in ("Traceback", "Fatal Python error", "Check failure", "Aborted", "Killed"):
    assert dump not in terminal, (dump, terminal[-3000:])
  assert not re.search(r"^F\d{4} ", terminal, re.MULTILINE), terminal[-3000:]  # JAX's fatal log lines
