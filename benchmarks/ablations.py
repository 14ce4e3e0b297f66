r"""Trains the CLIP-MG ablations on the synthetic benchmark with a longer budget and prints a results table.

Each variant is one `python -m clipmg_jax.train --config configs/synthetic.py:<variant>` run in its own workdir
(rerunning this script resumes unfinished runs and reuses finished ones); all share one generated dataset. The
table (Markdown) is printed and written to --output.

  python benchmarks/ablations.py                                   # full, visual_only, pose_only
  python benchmarks/ablations.py --variants full,no_gate,no_guidance,no_cross_attention --steps 600
"""

import argparse
import json
import pathlib
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
METRICS = (("top1", "top-1"), ("top5", "top-5"), ("mean_class_accuracy", "mean class acc."), ("macro_f1", "macro-F1"))


def run_variant(variant: str, args) -> dict:
  workdir = pathlib.Path(args.root) / variant
  eval_json = workdir / "eval.json"
  if eval_json.is_file():
    result = json.loads(eval_json.read_text())
    if result.get("step") == args.steps:
      print(f"[{variant}] already trained: {eval_json}", flush=True)
      return result
  cmd = [sys.executable, "-m", "clipmg_jax.train", "--config", f"configs/synthetic.py:{variant}",
         "--workdir", str(workdir), f"--config.total_steps={args.steps}", f"--config.seed={args.seed}",
         f"--config.eval_every_steps={args.eval_every}",
         f"--config.data.synthetic.cache_dir={pathlib.Path(args.root) / 'synthetic_data'}"] + args.extra
  print(f"[{variant}] {' '.join(cmd)}", flush=True)
  start = time.time()
  subprocess.run(cmd, cwd=REPO, check=True)
  result = json.loads(eval_json.read_text())
  result["seconds"] = time.time() - start
  eval_json.write_text(json.dumps(result, indent=1))
  return result


def table(results: dict[str, dict], args) -> str:
  lines = [f"| variant | " + " | ".join(name for _, name in METRICS) + " |",
           "|---|" + "---:|" * len(METRICS)]
  for variant, r in results.items():
    lines.append(f"| {variant} | " + " | ".join(f"{100 * r[k]:.1f}" for k, _ in METRICS) + " |")
  any_result = next(iter(results.values()))
  lines.append("")
  lines.append(f"Synthetic cross-subject test split: {any_result['num_examples']} clips, majority-class rate "
               f"{100 * any_result['majority_rate']:.1f} %. {args.steps} steps of batch 32 per variant "
               f"(configs/synthetic.py, seed {args.seed}), evaluated after the last step.")
  return "\n".join(lines)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--variants", default="full,visual_only,pose_only",
                      help="comma-separated model variants (configs/synthetic.py:<variant>)")
  parser.add_argument("--steps", type=int, default=600,
                      help="training steps per variant (batch 32); 600 takes ~20 min for the 3 default variants")
  parser.add_argument("--eval_every", type=int, default=200, help="periodic evaluation interval in steps")
  parser.add_argument("--seed", type=int, default=0, help="training seed (the dataset is the same for all)")
  parser.add_argument("--root", default=str(REPO / "runs" / "ablations"),
                      help="folder of the per-variant workdirs and the shared synthetic dataset")
  parser.add_argument("--output", default=str(REPO / "docs" / "results.md"),
                      help="Markdown file the table is written into (between the ablation markers)")
  parser.add_argument("extra", nargs="*", help="more --config.x=y overrides for every run (after --)")
  args = parser.parse_args(argv)
  results = {v: run_variant(v, args) for v in args.variants.split(",")}
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
