r"""A sweep: training runs of one config file, one per (variant, seed) in <root>/<variant>/seed<k> (a study may name
its runs otherwise, e.g. studies/prefix_cache_accuracy.py), trained unless finished, found once finished, and the
tables made of them published between markers of a Markdown file.

A run is read only through its RunFolder (clipmg_jax/run/folder.py), and what a run wrote is never rewritten: what
the sweep knows of a run beyond that (the wall time of its training command, the command itself) is kept in the
sweep's record, <root>/sweep.json, beside its runs. The analyses of a finished sweep keep their figures in a JSON file
of their own (`Saved`, studies/results/<name>.json by default), so that a rerun computes only what is missing.
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import threading
import time

from clipmg_jax.run.folder import RunFolder

REPO = pathlib.Path(__file__).resolve().parents[1]
RECORD = "sweep.json"  # the sweep's own file in its root, not a run's


class Saved(dict):
  """A JSON file of figures as a dict; put() and save() write it back (after each run, so an interrupted sweep or
  analysis keeps what it computed). Safe to share between threads (the sweep trains runs side by side)."""

  def __init__(self, path: str | pathlib.Path):
    self.path = pathlib.Path(path)
    self._lock = threading.Lock()
    super().__init__(json.loads(self.path.read_text()) if self.path.is_file() else {})

  def put(self, key: str, value) -> None:
    with self._lock:
      self[key] = value
      self._write()

  def save(self) -> None:
    with self._lock:
      self._write()

  def _write(self) -> None:
    # Through a temporary file: an interrupted write must not leave a file that the rerun cannot read.
    self.path.parent.mkdir(parents=True, exist_ok=True)
    temporary = self.path.with_name(self.path.name + ".tmp")
    temporary.write_text(json.dumps(self, indent=1, sort_keys=True))
    os.replace(temporary, self.path)


def log_file(folder: RunFolder, command: str) -> pathlib.Path:
  """The output of `python -m clipmg_jax.<command>` (train, pretrain) as the sweep ran it in the run's folder."""
  return folder.path / f"{command}.log"


def run_command(command: list[str], log: pathlib.Path | None = None) -> None:
  """Runs a command from the repository root (the configs' paths are relative to it); its output goes to `log`
  (appended) when given, else to this process's: runs side by side would interleave their progress bars."""
  print("$ " + " ".join(command) + (f"  >> {log}" if log else ""), flush=True)
  if log is None:
    subprocess.run(command, cwd=REPO, check=True)
    return
  log.parent.mkdir(parents=True, exist_ok=True)
  with open(log, "a") as out:
    subprocess.run(command, cwd=REPO, check=True, stdout=out, stderr=subprocess.STDOUT)


def config_flags(overrides: dict) -> list[str]:
  """{"a.b": v} -> ["--config.a.b=v"], the trainer's command-line overrides."""
  return [f"--config.{k}={v}" for k, v in overrides.items()]


class Sweep:
  """The runs under one root and the sweep's record of them."""

  def __init__(self, root: str | os.PathLike):
    self.root = pathlib.Path(root).absolute()
    self.record = Saved(self.root / RECORD)

  def folder(self, variant: str, seed: int) -> RunFolder:
    return RunFolder(self.root / variant / f"seed{seed}")

  def key(self, folder: RunFolder) -> str:
    """The run's name in the record: its folder relative to the root ("full/seed0")."""
    return pathlib.Path(os.path.relpath(folder.path.absolute(), self.root)).as_posix()

  def result(self, folder: RunFolder, steps: int) -> dict | None:
    """The run's final results when it trained to `steps` (else None), with "seconds": its training's wall time as
    this sweep recorded it (None for a run it did not train)."""
    result = folder.finished(steps)
    if result is None:
      return None
    return dict(result, seconds=self.record.get(self.key(folder), {}).get("seconds"))

  def train(self, folder: RunFolder, config: str, overrides: dict, extra: list[str] = (), *,
            log: bool = True) -> dict:
    """Trains one run (`python -m clipmg_jax.train --config=<config> --workdir=<folder>` with `overrides` as
    --config.* flags, which must hold total_steps, then the raw flags `extra`) unless it finished at that many
    steps; its results as `result` gives them. log: the trainer's output into the run folder's log file rather
    than this process's output."""
    steps = int(overrides["total_steps"])
    name = self.key(folder)
    result = self.result(folder, steps)
    if result is not None:
      print(f"[{name}] already trained: {folder}", flush=True)
      return result
    command = ([sys.executable, "-m", "clipmg_jax.train", f"--config={config}", f"--workdir={folder.path.absolute()}"]
               + config_flags(overrides) + list(extra))
    folder.path.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    run_command(command, log_file(folder, "train") if log else None)
    seconds = time.perf_counter() - start
    result = folder.read_results()
    if result is None:
      raise RuntimeError(f"{folder}: the training command finished without the run's results")
    self.record.put(name, {"seconds": seconds, "command": command})
    print(f"[{name}] top-1 {100 * result['top1']:.1f} in {seconds:.0f} s", flush=True)
    return dict(result, seconds=seconds)


# ------------------------------------------------------------------------------------- the flags of a sweep
def add_sweep_flags(parser: argparse.ArgumentParser, *, root: str, config: str, variants: str, seeds: str,
                    steps: int, marker: str) -> None:
  """The flags a sweep and every analysis of it share: where the sweep is (--root, --config, --data_dir, --steps),
  which runs (--variants, --seeds), where the Markdown table goes (--output, --marker)."""
  parser.add_argument("--root", default=root, help="the sweep's folder: <root>/<variant>/seed<k> (studies.ablations)")
  parser.add_argument("--config", default=config,
                      help="the runs' config file (configs/synthetic.py, configs/synthetic_pretrained.py)")
  parser.add_argument("--data_dir", default="",
                      help="the sweep's shared synthetic dataset (default: the root's synthetic data folder)")
  parser.add_argument("--variants", default=variants,
                      help="comma-separated variants (configs/synthetic.py:<variant>[+extras][+robust])")
  parser.add_argument("--seeds", default=seeds, help="comma-separated training seeds (the dataset is the same)")
  parser.add_argument("--steps", type=int, default=steps, help="training steps per run (batch 32): a run is "
                      "finished when it trained that many")
  parser.add_argument("--output", default=str(REPO / "docs" / "results.md"),
                      help="Markdown file the table goes into")
  parser.add_argument("--marker", default=marker,
                      help="the table goes between <!-- MARKER:begin --> and <!-- MARKER:end --> of --output")


def analysis_parser(description: str, *, name: str, variants: str, figure: str | None = None
                    ) -> argparse.ArgumentParser:
  """The flags of an analysis of a finished sweep: the sweep's (add_sweep_flags), --json (its figures, reused on a
  rerun), --figure (the plot) and --set (the overrides the sweep's runs were trained with)."""
  parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
  add_sweep_flags(parser, root="runs/ablations_pretrained", config="configs/synthetic_pretrained.py",
                  variants=variants, seeds="0,1,2,3,4", steps=250, marker=name)
  parser.add_argument("--json", default=f"studies/results/{name}.json", help="the figures (reused on a rerun)")
  parser.add_argument("--figure", default=f"docs/figures/{figure or name}.png", help="the plot")
  parser.add_argument("--set", default="", dest="overrides",
                      help="space-separated KEY=VALUE config overrides the sweep's runs were trained with "
                           "(studies.ablations' arguments after --, without --config.)")
  return parser


def parse(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
  """Parsed flags with data_dir resolved (absolute), variant_list, seed_list and override_dict (from --set, when the
  parser has it)."""
  args = parser.parse_args(argv)
  args.data_dir = str(pathlib.Path(args.data_dir or RunFolder(args.root).synthetic_data_dir).absolute())
  args.variant_list = args.variants.split(",")
  args.seed_list = [int(s) for s in args.seeds.split(",")]
  from clipmg_jax.training import defaults  # pylint: disable=import-outside-toplevel
  args.override_dict = defaults.parse_overrides(getattr(args, "overrides", "").split())
  return args


# ------------------------------------------------------------------------------------- a finished sweep
def finished(args: argparse.Namespace) -> dict[tuple[str, int], RunFolder]:
  """{(variant, seed): run folder} of the sweep's runs (parse's args) trained to args.steps; the others are listed
  on stdout."""
  sweep, out, missing = Sweep(args.root), {}, []
  for variant in args.variant_list:
    for seed in args.seed_list:
      folder = sweep.folder(variant, seed)
      if folder.finished(args.steps) is not None:
        out[(variant, seed)] = folder
      else:
        missing.append(f"{variant}/seed{seed}")
  if missing:
    print(f"not finished (left out): {', '.join(missing)}", flush=True)
  return out


def per_run(args: argparse.Namespace, saved: Saved, compute, key=lambda variant, seed: f"{variant}/seed{seed}"
            ) -> None:
  """saved[key(variant, seed)] = compute(variant, seed, folder) for each finished run whose key `saved` lacks,
  written back after each (an interrupted analysis keeps what it computed)."""
  for (variant, seed), folder in finished(args).items():
    name = key(variant, seed)
    if name not in saved:
      saved.put(name, compute(variant, seed, folder))


def publish(args: argparse.Namespace, text: str) -> None:
  """Prints an analysis's Markdown and writes it between the --marker comments of --output."""
  print(text)
  write_into(pathlib.Path(args.output), text, args.marker)


def write_into(path: pathlib.Path, text: str, marker: str) -> None:
  """Replaces the text between the markers of `path` (appends a section when there are none)."""
  begin, end = f"<!-- {marker}:begin -->", f"<!-- {marker}:end -->"
  block = f"{begin}\n{text}\n{end}"
  old = path.read_text() if path.is_file() else "# Results\n"
  if begin in old and end in old:
    new = old[:old.index(begin)] + block + old[old.index(end) + len(end):]
  else:
    new = old.rstrip("\n") + "\n\n## Ablations on the synthetic benchmark\n\n" + block + "\n"
  path.write_text(new)
  print(f"wrote {path}")
