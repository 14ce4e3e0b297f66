r"""Trains the CLIP-MG ablations on the synthetic benchmark with a longer budget and prints a results table.

Each (variant, seed) is one `python -m clipmg_jax.train --config configs/synthetic.py:<variant>` run in its own
workdir <root>/<variant>/seed<k> (rerunning this script resumes unfinished runs and reuses finished ones); all share
one synthetic dataset, generated and converted once before the runs start. The table (Markdown: the mean over the
seeds, then each seed's value) is printed and written to --output.

  python benchmarks/ablations.py                                   # full+extras, visual_only, pose_only; 2 seeds
  python benchmarks/ablations.py --variants full,no_gate,no_guidance,no_cross_attention --seeds 0   # paper model
  python benchmarks/ablations.py --jobs 8 -- --config.data.worker_count=2   # a many-core machine with a GPU

Budget: 2000 steps of batch 32 per run. On a 16-core machine with one H100, 6 runs side by side (--jobs 6, 2 loader
workers each) take 4-5 minutes; on a 2-core CPU a `full` run takes ~40 minutes, `pose_only` ~13.
"""

import argparse
import concurrent.futures
import json
import pathlib
import statistics
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
METRICS = (("top1", "top-1"), ("top5", "top-5"), ("mean_class_accuracy", "mean class acc."), ("macro_f1", "macro-F1"))


def prepare_data(args) -> None:
  """Generates and converts the shared synthetic dataset once, so that parallel runs do not race to make it."""
  sys.path.insert(0, str(REPO))
  from clipmg_jax.training import input_setup  # pylint: disable=import-outside-toplevel
  from configs import synthetic  # pylint: disable=import-outside-toplevel
  config = synthetic.get_config()
  config.data.synthetic.cache_dir = str(pathlib.Path(args.root) / "synthetic_data")
  input_setup.resolve_synthetic_paths(config.data, args.root)
  input_setup.prepare_synthetic(config.data)


def run_one(variant: str, seed: int, args) -> dict:
  workdir = pathlib.Path(args.root) / variant / f"seed{seed}"
  eval_json = workdir / "eval.json"
  if eval_json.is_file():
    result = json.loads(eval_json.read_text())
    if result.get("step") == args.steps:
      print(f"[{variant} seed {seed}] already trained: {eval_json}", flush=True)
      return result
  cmd = [sys.executable, "-m", "clipmg_jax.train", "--config", f"configs/synthetic.py:{variant}",
         "--workdir", str(workdir), f"--config.total_steps={args.steps}", f"--config.seed={seed}",
         f"--config.eval_every_steps={args.eval_every}",
         f"--config.data.synthetic.cache_dir={pathlib.Path(args.root) / 'synthetic_data'}"] + args.extra
  print(f"[{variant} seed {seed}] {' '.join(cmd)}", flush=True)
  start = time.time()
  workdir.mkdir(parents=True, exist_ok=True)
  with open(workdir / "train.log", "a") as log:  # parallel runs would interleave their progress bars
    subprocess.run(cmd, cwd=REPO, check=True, stdout=log, stderr=subprocess.STDOUT)
  result = json.loads(eval_json.read_text())
  result["seconds"] = time.time() - start
  eval_json.write_text(json.dumps(result, indent=1))
  print(f"[{variant} seed {seed}] top-1 {100 * result['top1']:.1f} in {result['seconds']:.0f} s", flush=True)
  return result


def table(results: dict[str, list[dict]], args) -> str:
  lines = ["| variant | " + " | ".join(name for _, name in METRICS) + " | per seed (top-1 / mean class acc.) |",
           "|---|" + "---:|" * len(METRICS) + "---|"]
  for variant, runs in results.items():
    means = [100 * statistics.mean(r[k] for r in runs) for k, _ in METRICS]
    seeds = ", ".join(f"{100 * r['top1']:.1f} / {100 * r['mean_class_accuracy']:.1f}" for r in runs)
    lines.append(f"| {variant} | " + " | ".join(f"{m:.1f}" for m in means) + f" | {seeds} |")
  any_result = next(iter(results.values()))[0]
  lines.append("")
  held_out = (any_result.get("validation") or {}).get("subjects") or []
  lines.append(f"Synthetic cross-subject test split: {any_result['num_examples']} clips, majority-class rate "
               f"{100 * any_result['majority_rate']:.1f} %. {args.steps} steps of batch 32 per run "
               f"(configs/synthetic.py; validation subjects {held_out} held out of training), test split "
               f"evaluated once on the final state; mean over seeds {args.seeds}.")
  return "\n".join(lines)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--variants", default="full+extras,visual_only,pose_only",
                      help="comma-separated config arguments (configs/synthetic.py:<variant>[+extras]); "
                           "full+extras is configs/synthetic.py's default model, full the paper's")
  parser.add_argument("--seeds", default="0,1", help="comma-separated training seeds (the dataset is the same)")
  parser.add_argument("--steps", type=int, default=2000, help="training steps per run (batch 32)")
  parser.add_argument("--eval_every", type=int, default=1000, help="periodic evaluation interval in steps")
  parser.add_argument("--jobs", type=int, default=1, help="runs trained side by side (they share the devices)")
  parser.add_argument("--root", default=str(REPO / "runs" / "ablations"),
                      help="folder of the per-run workdirs and the shared synthetic dataset")
  parser.add_argument("--output", default=str(REPO / "docs" / "results.md"),
                      help="Markdown file the table is written into (between the ablation markers)")
  parser.add_argument("extra", nargs="*", help="more --config.x=y overrides for every run (after --)")
  args = parser.parse_args(argv)
  prepare_data(args)
  variants = args.variants.split(",")
  seeds = [int(s) for s in args.seeds.split(",")]
  jobs = [(v, s) for v in variants for s in seeds]
  with concurrent.futures.ThreadPoolExecutor(max(args.jobs, 1)) as pool:
    done = dict(zip(jobs, pool.map(lambda job: run_one(*job, args), jobs)))
  results = {v: [done[(v, s)] for s in seeds] for v in variants}
  text = table(results, args)
  print(text)
  write_into(pathlib.Path(args.output), text)


def write_into(path: pathlib.Path, text: str) -> None:
  """Replaces the text between the ablation markers of `path` (appends a section when there are none)."""
  begin, end = "<!-- ablations:begin -->", "<!-- ablations:end -->"
  block = f"{begin}\n{text}\n{end}"
  old = path.read_text() if path.is_file() else "# Results\n"
  if begin in old and end in old:
    new = old[:old.index(begin)] + block + old[old.index(end) + len(end):]
  else:
    new = old.rstrip("\n") + "\n\n## Ablations on the synthetic benchmark\n\n" + block + "\n"
  path.write_text(new)
  print(f"wrote {path}")


if __name__ == "__main__":
  main()
