"""The run package: the run folder names its files in one place and reads them back; the session of a command takes
the workdir lock and the SIGTERM watch once; nothing else spells a run's file names or restores a checkpoint."""

import json
import pathlib
import re
import signal

import pytest

from clipmg_jax.run import preemption
from clipmg_jax.run import session as session_lib
from clipmg_jax.run import workdir_lock
from clipmg_jax.run.folder import RunFolder

REPO = pathlib.Path(__file__).resolve().parents[2]
RUN_FILES = ("config.json", "metrics.jsonl", "eval.json", "train.lock", "checkpoints", "tensorboard", "synthetic_data",
             "corpus.npz", "hf_vision")


def test_folder_names_and_reads_what_a_run_wrote(tmp_path):
  run = RunFolder(str(tmp_path))
  assert RunFolder.of(run) is run and RunFolder.of(tmp_path) == run
  assert run.read_config() is None and run.read_results() is None and run.read_metrics() == []
  assert run.checkpoint_steps() == [] and run.finished(10) is None
  run.results_file().write_text(json.dumps({"top1": 0.5, "step": 10}))
  run.results_file("_best_4").write_text(json.dumps({"top1": 0.25}))
  run.metrics_file.write_text('{"step": 5, "split": "train", "loss": 1.0}\n\n{"step": 10, "split": "validation"}\n')
  for step in (5, 10):
    (run.checkpoints_dir / str(step)).mkdir(parents=True)
  (run.checkpoints_dir / "10.orbax-checkpoint-tmp").mkdir()  # a half-written save is not a step
  assert run.finished(10) == {"top1": 0.5, "step": 10} and run.finished(20) is None
  assert run.read_results("_best_4") == {"top1": 0.25} and run.results_file("_best_4").name == "eval_best_4.json"
  assert [m["step"] for m in run.read_metrics()] == [5, 10]
  assert run.read_metrics("validation") == [{"step": 10, "split": "validation"}]
  assert run.checkpoint_steps() == [5, 10]
  assert run.figure_file("confusion", "_latest_6").name == "confusion_latest_6.png"
  with pytest.raises(ValueError, match="unknown run figure"):
    run.figure_file("confusoin")
  run.metrics_file.write_text('{"step": 5}\n{"step": 1')  # torn by a killed run
  with pytest.raises(ValueError, match=r"metrics.jsonl line 2"):
    run.read_metrics()


def test_writing_session_holds_the_lock_and_the_watch(tmp_path):
  workdir = tmp_path / "new" / "run"
  before = signal.getsignal(signal.SIGTERM)
  with session_lib.Session(None, workdir, writes=True) as session:
    assert session.folder == RunFolder(workdir) and session.workdir == workdir
    assert RunFolder(workdir).lock_file.is_file()
    assert isinstance(session.watch, preemption.Watch) and signal.getsignal(signal.SIGTERM) != before
    # Re-entered by the library (the trainer called inside a command): the same lock and watch, not a second one.
    with session_lib.writing(None, workdir, session) as inner:
      assert inner is session
  assert not RunFolder(workdir).lock_file.exists() and signal.getsignal(signal.SIGTERM) == before
  with session_lib.Session(None, workdir) as reading:  # a reading command takes neither
    assert reading.watch is None and not RunFolder(workdir).lock_file.exists()
  with pytest.raises(ValueError, match="--workdir"):
    session_lib.Session(None, None, writes=True)
  with pytest.raises(ValueError, match="writing session"), session_lib.writing(None, workdir, reading):
    pass


def test_a_held_folder_is_refused_before_any_work(tmp_path):
  RunFolder(tmp_path).lock_file.write_text(json.dumps({"host": "elsewhere", "pid": 1, "started": "then"}))
  with pytest.raises(workdir_lock.WorkdirLockedError, match="elsewhere"):
    with session_lib.Session(None, tmp_path, writes=True):
      pytest.fail("the session must not open")


def _sources():
  for folder in ("clipmg_jax", "benchmarks", "studies", "scripts", "data_prep"):
    yield from (REPO / folder).rglob("*.py") if (REPO / folder).is_dir() else ()


def test_run_file_names_and_checkpoint_reads_live_in_one_module_each():
  """A quoted run-file name ('eval.json', "checkpoints", .../"metrics.jsonl") only in run/folder.py, and Orbax's
  restore only in training/checkpointing.py. weights/ is left out: a Hugging Face checkpoint has a config.json of
  its own."""
  name = re.compile(r"""["'](?:[^"'\s]*/)?(?:%s)["']""" % "|".join(re.escape(n) for n in RUN_FILES))
  restore = re.compile(r"(?:Checkpointer\(\)|manager)\.restore\(")
  spelled, restored = [], []
  for path in _sources():
    where = path.relative_to(REPO).as_posix()
    text = path.read_text()
    if where != "clipmg_jax/run/folder.py" and not where.startswith("clipmg_jax/weights/"):
      spelled += [f"{where}: {m.group(0)}" for m in name.finditer(text)]
    if where != "clipmg_jax/training/checkpointing.py":
      restored += [f"{where}: {m.group(0)}" for m in restore.finditer(text)]
  assert not spelled, spelled
  assert not restored, restored
