r"""Trains the CLIP-MG ablations on the synthetic benchmark with a longer budget and prints a results table.

Each (variant, seed) is one `python -m clipmg_jax.train --config configs/synthetic.py:<variant>` run in its own
workdir <root>/<variant>/seed<k>, trained by studies/sweep.py (rerunning this script resumes unfinished runs and
reuses finished ones; each training's wall time goes into the sweep's record in <root>); all share one synthetic
dataset, generated and converted once before the runs start. The table (Markdown: the mean over the seeds, then
each seed's value) is printed and written to --output.

  python -m studies.ablations                                   # full+extras, visual_only, pose_only; 2 seeds
  python -m studies.ablations --variants full,no_gate,no_guidance,no_cross_attention --seeds 0   # paper's architecture
  python -m studies.ablations --jobs 8 -- --config.data.worker_count=2   # a many-core machine with a GPU
  python -m studies.ablations --config configs/synthetic_pretrained.py --root runs/ablations_pretrained \
      --pretrain_workdir runs/pretrain_synthetic --variants full+extras,full,visual_only,pose_only \
      --seeds 0,1,2 --steps 250 --eval_every 125 --marker ablations_pretrained    # the pretrained tower

With --pretrain_workdir the tower is first pretrained there (python -m clipmg_jax.pretrain --config
configs/pretrain_synthetic.py; skipped when its export exists) and every run with a vision tower loads the export
(--config.init.vit_checkpoint). --data_dir points all runs at one synthetic dataset (e.g. the main job's, in
runs/synthetic), generated there only when it is not there yet. full+extras is configs/synthetic.py's default
model, full the paper's.

Budget: 2000 steps of batch 32 per run. On a 16-core machine with one H100, 6 runs side by side (--jobs 6, 2 loader
workers each) take 4-5 minutes; on a 2-core CPU a `full` run takes ~40 minutes, `pose_only` ~13.
"""

import argparse
import concurrent.futures
import pathlib
import statistics
import sys

from clipmg_jax.run.folder import RunFolder
from studies import sweep

METRICS = (("top1", "top-1"), ("top5", "top-5"), ("mean_class_accuracy", "mean class acc."), ("macro_f1", "macro-F1"))


def prepare_data(args) -> None:
  """Generates and converts the shared synthetic dataset once, so that parallel runs do not race to make it."""
  from clipmg_jax.data.synthetic import prepare  # pylint: disable=import-outside-toplevel
  from configs import synthetic  # pylint: disable=import-outside-toplevel
  config = synthetic.get_config()
  config.data.synthetic.cache_dir = args.data_dir
  prepare.make_shards(config.data, args.root)


def pretrain(args) -> str:
  """Pretrains the tower in --pretrain_workdir unless its export exists; returns the export directory."""
  from clipmg_jax.weights import hf_export  # pylint: disable=import-outside-toplevel
  folder = RunFolder(pathlib.Path(args.pretrain_workdir).absolute())
  if (folder.export_dir / hf_export.WEIGHTS_FILE).is_file():
    print(f"[pretrain] already done: {folder.export_dir}", flush=True)
    return str(folder.export_dir)
  folder.path.mkdir(parents=True, exist_ok=True)
  sweep.run_command([sys.executable, "-m", "clipmg_jax.pretrain", "--config", args.pretrain_config, "--workdir",
                     str(folder)], sweep.log_file(folder, "pretrain"))
  return str(folder.export_dir)


def last_validation(folder: RunFolder) -> dict | None:
  """The run's last validation metrics (the final state's), or None."""
  lines = folder.read_metrics("validation")
  return lines[-1] if lines else None


def run_one(runs: sweep.Sweep, variant: str, seed: int, args) -> dict:
  """One run of the sweep, trained unless finished: its results and its last validation metrics."""
  overrides = {"total_steps": args.steps, "seed": seed, "eval_every_steps": args.eval_every,
               "data.synthetic.cache_dir": args.data_dir}
  from clipmg_jax.models import variants  # pylint: disable=import-outside-toplevel
  if args.vit_checkpoint and variants.uses(variants.parse(variant).variant).vision:
    overrides["init.vit_checkpoint"] = args.vit_checkpoint
  folder = runs.folder(variant, seed)
  result = runs.train(folder, f"{args.config}:{variant}", overrides, args.extra)
  return dict(result, final_validation=last_validation(folder))


def table(results: dict[str, list[dict]], args) -> str:
  lines = ["| variant | seeds | " + " | ".join(name for _, name in METRICS)
           + " | top-1 spread | val. top-1 | per seed (top-1 / mean class acc.) |",
           "|---|---:|" + "---:|" * len(METRICS) + "---:|---:|---|"]
  for variant, runs in results.items():
    means = [100 * statistics.mean(r[k] for r in runs) for k, _ in METRICS]
    spread = 100 * (max(r["top1"] for r in runs) - min(r["top1"] for r in runs))
    vals = [r["final_validation"]["top1"] for r in runs if r.get("final_validation")]
    val = f"{100 * statistics.mean(vals):.1f}" if vals else "—"
    seeds = ", ".join(f"{100 * r['top1']:.1f} / {100 * r['mean_class_accuracy']:.1f}" for r in runs)
    lines.append(f"| {variant} | {len(runs)} | " + " | ".join(f"{m:.1f}" for m in means)
                 + f" | {spread:.1f} | {val} | {seeds} |")
  any_result = next(iter(results.values()))[0]
  lines.append("")
  held_out = (any_result.get("validation") or {}).get("subjects") or []
  lines.append(f"Synthetic cross-subject test split: {any_result['num_examples']} clips, majority-class rate "
               f"{100 * any_result['majority_rate']:.1f} %. {args.steps} steps of batch 32 per run "
               f"({args.config}; validation subjects {held_out} held out of training), test split "
               f"evaluated once on the final state; mean over the seeds run of {args.seeds}; top-1 spread = "
               f"max - min over them; val. top-1 = validation split, final state.")
  return "\n".join(lines)


# The paper's top-1 on iMiGUE (CLIP-MG, arXiv 2506.16385, ablation table; docs/results.md "The paper's table").
PAPER_TOP1 = {"full": 61.82, "no_guidance": 45.30, "no_cross_attention": 53.17, "no_gate": 60.08,
              "visual_only": 45.30, "pose_only": 45.30}


def mean_interval(values: list[float]) -> tuple[float, float]:
  """The mean and the half-width of its 95 % t interval over the values (seeds); inf for a single value."""
  from scipy import stats  # pylint: disable=import-outside-toplevel
  mean = statistics.mean(values)
  if len(values) < 2:
    return mean, float("inf")
  return mean, stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / len(values) ** 0.5


def paired_differences(results: dict[str, list[dict]], seeds: list[int], reference: str = "full") -> str:
  """Markdown: each variant's top-1 minus the reference's, seed by seed (same data, same initialisation seed), its
  mean with a 95 % t interval over the seeds, beside the paper's difference on iMiGUE."""
  base = [100 * r["top1"] for r in results[reference]]
  lines = [f"| variant | top-1 − `{reference}` (mean over {len(seeds)} seeds) | 95 % interval | per seed "
           f"({', '.join(map(str, seeds))}) | paper (iMiGUE) | sign reproduced |",
           "|---|---:|---|---|---:|---|"]
  for variant, runs in results.items():
    if variant == reference:
      continue
    diffs = [100 * r["top1"] - b for r, b in zip(runs, base)]
    mean, half = mean_interval(diffs)
    if len(diffs) > 1:
      interval = f"[{mean - half:+.1f}, {mean + half:+.1f}]"
      below, above = mean + half < 0, mean - half > 0
    else:
      interval, below, above = "—", False, False
    paper = None if "+" in variant else PAPER_TOP1.get(variant)  # additions beyond the paper have no paper row
    paper_delta = None if paper is None else paper - PAPER_TOP1[reference.split("+")[0]]
    if paper_delta is None:
      verdict = "—"
    elif below and paper_delta < 0:
      verdict = "yes (interval below 0)"
    elif above and paper_delta < 0:
      verdict = "no: opposite sign (interval above 0)"
    elif abs(paper_delta - mean) > half:
      verdict = "no: the interval holds 0, not the paper's difference"
    else:
      verdict = "not resolved (the interval holds 0 and the paper's difference)"
    lines.append(f"| {variant} | {mean:+.1f} | {interval} | {', '.join(f'{d:+.1f}' for d in diffs)} | "
                 + (f"{paper_delta:+.2f}" if paper_delta is not None else "—") + f" | {verdict} |")
  return "\n".join(lines)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  sweep.add_sweep_flags(parser, root=str(sweep.REPO / "runs" / "ablations"), config="configs/synthetic.py",
                        variants="full+extras,visual_only,pose_only", seeds="0,1", steps=2000, marker="ablations")
  parser.add_argument("--pretrain_workdir", default="",
                      help="pretrain the vision tower here first (once) and load its export in every run with a "
                           "vision tower")
  parser.add_argument("--pretrain_config", default="configs/pretrain_synthetic.py",
                      help="config of the pretraining (with --pretrain_workdir)")
  parser.add_argument("--eval_every", type=int, default=1000, help="periodic evaluation interval in steps")
  parser.add_argument("--jobs", type=int, default=1, help="runs trained side by side (they share the devices)")
  parser.add_argument("extra", nargs="*", help="more --config.x=y overrides for every run (after --)")
  args = sweep.parse(parser, argv)
  prepare_data(args)
  args.vit_checkpoint = pretrain(args) if args.pretrain_workdir else ""
  variants, seeds = args.variant_list, args.seed_list
  runs = sweep.Sweep(args.root)
  jobs = [(v, s) for s in seeds for v in variants]  # seed by seed: an interrupted sweep leaves paired seeds
  with concurrent.futures.ThreadPoolExecutor(max(args.jobs, 1)) as pool:
    done = dict(zip(jobs, pool.map(lambda job: run_one(runs, *job, args), jobs)))
  results = {v: [done[(v, s)] for s in seeds] for v in variants}
  text = table(results, args)
  reference = next((v for v in ("full", "full+extras") if v in results), None)
  if reference and len(results) > 1:
    text += "\n\nPaired differences (each seed's run against the same seed's `" + reference + "`):\n\n"
    text += paired_differences(results, seeds, reference)
  sweep.publish(args, text)


if __name__ == "__main__":
  main()
