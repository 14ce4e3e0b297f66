r"""Pose that fails: the test split of every finished ablation run evaluated with its keypoints corrupted at 0, 25,
50, 75 and 100 % (clipmg_jax/data/pose_corruption.py: joints dropped, jitter, confidences scaled down, whole
pose frames lost, all at the same level; seeded per clip, so every variant sees the same corrupted keypoints).

The paper's claim (the gate "falls back on vision when pose is unreliable") holds if `full` degrades towards
`visual_only` and no lower while `no_gate` falls below it. Writes a Markdown table (top-1 mean ± sd over the seeds,
and the mean gate) into --output between the markers, the plot --figure, and every figure in --json (rerunning
reuses what it holds).

  python -m studies.pose_corruption --root runs/ablations_pretrained --seeds 0,1,2,3,4
  python -m studies.pose_corruption --root runs/ablations_pretrained --kinds drop --marker pose_corruption_drop
"""

import statistics

from clipmg_jax.data import pose_corruption
from clipmg_jax.figures import canvas
from clipmg_jax.prediction import inspection
from clipmg_jax.training import evaluation
from studies import sweep
from studies import trained_runs


def evaluate_runs(args, found: dict, conditions: list[tuple[str, float]], results: dict, save) -> None:
  """Fills results["[<split>/]<variant>/seed<k>/<kinds>/<level>"] = {top1, mean_class_accuracy, gate_mean} for
  each (kinds, level) of `conditions` that is missing, loading each run once."""
  for (variant, seed), folder in found.items():
    keys = {(kinds, level): _key(args, variant, seed, kinds, level) for kinds, level in conditions}
    if all(k in results for k in keys.values()):
      continue
    run = trained_runs.load(args, variant, seed, folder)
    batches = list(inspection.split_batches(run, args.split))  # read once, scored under every condition
    for (kinds, level), key in keys.items():
      if key in results:
        continue
      corruption = pose_corruption.default_config()
      corruption.update(dict(level=level, kinds=kinds, jitter_px=args.jitter_px, seed=args.corruption_seed))
      predictions = inspection.predict_split(run, args.split, corruption=corruption, progress=False,
                                             batches=batches)
      result = evaluation.compute_metrics(predictions, run.class_names)
      gate = (result.get("pose_monitoring") or {}).get("gate") or {}
      results[key] = {"top1": result["top1"], "mean_class_accuracy": result["mean_class_accuracy"],
                      "gate_mean": gate.get("mean"), "num_examples": result["num_examples"]}
      print(f"[{variant} seed {seed}] {args.split} {kinds} {100 * level:.0f} %: top-1 {100 * result['top1']:.1f}"
            + (f", gate {gate['mean']:.3f}" if gate.get("mean") is not None else ""), flush=True)
      save()


def _key(args, variant, seed, kinds, level) -> str:
  """The JSON key of one figure; the test split's keys carry no split name."""
  return ("" if args.split == "test" else f"{args.split}/") + f"{variant}/seed{seed}/{kinds}/{level:g}"


def _values(results, variant, seeds, kinds, level, key, args):
  out = [results.get(_key(args, variant, s, kinds, level), {}).get(key) for s in seeds]
  return [100 * v if key != "gate_mean" else v for v in out if v is not None]


def table(results: dict, variants: list[str], seeds: list[int], levels: list[float], args) -> str:
  head = " | ".join(f"{100 * level:.0f} %" for level in levels)
  lines = [f"| variant | {head} |", "|---|" + "---:|" * len(levels)]
  for variant in variants:
    cells = []
    for level in levels:
      top1 = _values(results, variant, seeds, args.kinds, level, "top1", args)
      gate = _values(results, variant, seeds, args.kinds, level, "gate_mean", args)
      cells.append(trained_runs.mean_and_spread(top1) + (f" (g {statistics.mean(gate):.2f})" if gate else ""))
    n = len(_values(results, variant, seeds, args.kinds, levels[0], "top1", args))
    lines.append(f"| {variant} ({n} seeds) | " + " | ".join(cells) + " |")
  lines += ["", f"Top-1 % on the test split (mean ± sd over the seeds), g = mean gate over the windows, for "
            f"keypoints corrupted by `{args.kinds}` at each level (jitter {args.jitter_px:g} px at 100 %, "
            f"corruption seed {args.corruption_seed}); the final state of each run of `studies/ablations.py` "
            f"({args.config}, {args.steps} steps)."]
  return "\n".join(lines)


def plot(results: dict, variants: list[str], seeds: list[int], levels: list[float], args) -> None:
  curves = {v: ([_values(results, v, seeds, args.kinds, level, "top1", args) for level in levels],
                [_values(results, v, seeds, args.kinds, level, "gate_mean", args) for level in levels])
            for v in variants}
  plot_curves(curves, levels, args.kinds, args.split, args.figure)


def plot_curves(curves: dict, levels: list[float], kinds: str, split: str, path: str) -> None:
  """Accuracy (mean, band min-max over seeds) and mean gate against the corruption level; `curves`: {variant:
  (per level the seeds' top-1 %, per level the seeds' mean gates)}; a variant missing a level is left out."""
  plt = canvas.pyplot()
  fig, (ax_acc, ax_gate) = plt.subplots(1, 2, figsize=(10, 4))
  x = [100 * level for level in levels]
  for variant, (per_level, gates) in curves.items():
    if not all(per_level):
      continue
    ax_acc.plot(x, [statistics.mean(v) for v in per_level], marker="o", label=variant)
    ax_acc.fill_between(x, [min(v) for v in per_level], [max(v) for v in per_level], alpha=0.15)
    if all(gates):
      ax_gate.plot(x, [statistics.mean(g) for g in gates], marker="o", label=variant)
  ax_acc.set(xlabel=f"keypoints corrupted ({kinds}), %", ylabel=f"{split} top-1, % (band: min-max over seeds)",
             title="accuracy as pose fails")
  ax_gate.set(xlabel=f"keypoints corrupted ({kinds}), %", ylabel="mean gate g", ylim=(0, 1),
              title="the gate as pose fails")
  ax_acc.legend()
  ax_gate.legend()
  fig.tight_layout()
  trained_runs.write_figure(fig, path)


def main(argv=None):
  parser = sweep.analysis_parser(__doc__, name="pose_corruption", variants="full,no_gate,pose_only,visual_only")
  parser.add_argument("--levels", default="0,0.25,0.5,0.75,1", help="corruption levels, fractions")
  parser.add_argument("--kinds", default=",".join(pose_corruption.KINDS),
                      help=f"comma-separated subset of {pose_corruption.KINDS}, all applied at each level")
  parser.add_argument("--jitter_px", type=float, default=8.0, help="jitter at 100 %%, pixels of the 112-px input")
  parser.add_argument("--corruption_seed", type=int, default=0)
  parser.add_argument("--split", default="test", choices=("test", "validation"),
                      help="the split scored (validation: for choosing settings)")
  args = sweep.parse(parser, argv)
  pose_corruption.parse_kinds(args.kinds)
  levels = [float(v) for v in args.levels.split(",")]
  results = sweep.Saved(args.json)
  found = sweep.finished(args)
  evaluate_runs(args, found, [(args.kinds, level) for level in levels], results, results.save)
  text = table(results, args.variant_list, args.seed_list, levels, args)
  plot(results, args.variant_list, args.seed_list, levels, args)
  sweep.publish(args, text)


if __name__ == "__main__":
  main()
