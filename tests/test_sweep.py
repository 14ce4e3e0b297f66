"""studies/sweep.py: a run is trained once and then found finished, the wall time of its training goes into the
sweep's record (never into what the run wrote), and a table replaces the text between its markers."""

import json

from clipmg_jax.run.folder import RunFolder
from studies import sweep


def _fake_trainer(ran: list, top1: float = 0.5):
  """Stands in for run_command: writes the run's results as the trainer would, at the --config.total_steps given."""
  def run(command, log=None):
    ran.append((command, log))
    workdir = next(a.split("=", 1)[1] for a in command if a.startswith("--workdir="))
    steps = int(next(a.split("=", 1)[1] for a in command if a.startswith("--config.total_steps=")))
    RunFolder(workdir).results_file().write_text(json.dumps({"top1": top1, "step": steps}))
  return run


def test_a_run_is_trained_once_and_its_time_kept_in_the_sweeps_record(tmp_path, monkeypatch):
  ran = []
  monkeypatch.setattr(sweep, "run_command", _fake_trainer(ran))
  runs = sweep.Sweep(tmp_path / "root")
  folder = runs.folder("full", 1)
  first = runs.train(folder, "configs/synthetic.py:full", {"total_steps": 20, "seed": 1}, ["--config.x=1"])
  (command, log), = ran
  assert command[-3:] == ["--config.total_steps=20", "--config.seed=1", "--config.x=1"]
  assert "--config=configs/synthetic.py:full" in command and log == sweep.log_file(folder, "train")
  assert first["top1"] == 0.5 and first["seconds"] >= 0
  assert folder.read_results() == {"top1": 0.5, "step": 20}  # the run's own results are left as it wrote them
  record = json.loads((tmp_path / "root" / sweep.RECORD).read_text())
  assert record["full/seed1"]["seconds"] == first["seconds"] and record["full/seed1"]["command"] == command
  again = sweep.Sweep(tmp_path / "root").train(folder, "configs/synthetic.py:full", {"total_steps": 20, "seed": 1})
  assert len(ran) == 1 and again == first  # finished: not trained again, the time read back from the record
  sweep.Sweep(tmp_path / "root").train(folder, "configs/synthetic.py:full", {"total_steps": 40}, log=False)
  assert len(ran) == 2 and ran[1][1] is None  # another budget: trained again, output not to a log file


def test_finished_lists_the_runs_at_the_sweeps_step(tmp_path, monkeypatch, capsys):
  monkeypatch.setattr(sweep, "run_command", _fake_trainer([]))
  runs = sweep.Sweep(tmp_path)
  for variant, seed, steps in (("full", 0, 250), ("full", 1, 100), ("no_gate", 0, 250)):
    runs.train(runs.folder(variant, seed), "c.py", {"total_steps": steps})
  parser = sweep.analysis_parser("d", name="study", variants="full,no_gate")
  args = sweep.parse(parser, ["--root", str(tmp_path), "--seeds", "0,1"])
  assert args.data_dir == str(RunFolder(tmp_path).synthetic_data_dir.absolute())
  assert args.json == "studies/results/study.json" and args.marker == "study"
  found = sweep.finished(args)
  assert list(found) == [("full", 0), ("no_gate", 0)] and found[("full", 0)] == runs.folder("full", 0)
  assert "not finished (left out): full/seed1, no_gate/seed1" in capsys.readouterr().out
  saved = sweep.Saved(tmp_path / "figures.json")
  sweep.per_run(args, saved, lambda variant, seed, folder: folder.read_results()["top1"])
  assert sweep.Saved(tmp_path / "figures.json") == {"full/seed0": 0.5, "no_gate/seed0": 0.5}


def test_write_into_replaces_the_text_between_the_markers(tmp_path):
  page = tmp_path / "results.md"
  page.write_text("# R\n\n<!-- t:begin -->\nold\n<!-- t:end -->\nafter\n")
  sweep.write_into(page, "| new |", "t")
  assert page.read_text() == "# R\n\n<!-- t:begin -->\n| new |\n<!-- t:end -->\nafter\n"
  sweep.write_into(page, "| other |", "u")  # no such markers: a section is appended
  assert page.read_text().endswith("<!-- u:begin -->\n| other |\n<!-- u:end -->\n")
