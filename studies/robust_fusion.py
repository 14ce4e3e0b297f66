r"""Robust fusion measured: accuracy as pose fails for `full`, `full+robust`, `visual_only` and `no_gate`, with
differences paired by seed against `full` and against `visual_only` (docs/results.md "Robust fusion").

The conditions: all four corruptions at 0, 25, 50, 75 and 100 % (clipmg_jax/data/pose_corruption.py), and each
kind alone at 100 % ("drop" alone at 100 % = nobody detected). Every figure is one run's test split (or, with
--split validation, its validation split: what the settings of `+robust` were chosen on), kept in --json under the
keys studies/pose_corruption.py uses; a rerun computes only what is missing there.

`visual_only` reads no keypoints, so it is scored with clean keypoints only, and that figure stands for every
condition (the table says so).

  python -m studies.ablations --config configs/synthetic_pretrained.py --root runs/ablations_pretrained \
      --variants full+robust,full,no_gate,visual_only --seeds 0,1,2,3,4 --steps 250 --eval_every 50 --marker robust_runs
  python -m studies.robust_fusion --root runs/ablations_pretrained
"""

import statistics

from clipmg_jax.data import pose_corruption
from studies import ablations
from studies import pose_corruption as corruption_study
from studies import sweep
from studies import trained_runs

ALL = ",".join(pose_corruption.KINDS)
LEVELS = (0.0, 0.25, 0.5, 0.75, 1.0)
CONDITIONS = [(ALL, level) for level in LEVELS] + [(kind, 1.0) for kind in pose_corruption.KINDS]
ROBUST, FULL, VISION = "full+robust", "full", "visual_only"


def label(kinds: str, level: float) -> str:
  return f"{100 * level:.0f} %" if kinds == ALL else f"{kinds} 100 %"


def figures(results: dict, args, variant: str, kinds: str, level: float, key: str = "top1") -> list[float | None]:
  """Per seed (args.seed_list order), the figure `key` of a condition (None where missing); visual_only's clean figure
  stands for every corruption when its corrupted one was not computed (it reads no keypoints)."""
  out = []
  for seed in args.seed_list:
    entry = results.get(corruption_study._key(args, variant, seed, kinds, level))  # pylint: disable=protected-access
    if entry is None and variant == VISION:
      entry = results.get(corruption_study._key(args, variant, seed, ALL, 0.0))  # pylint: disable=protected-access
    value = None if entry is None else entry.get(key)
    out.append(None if value is None else (100 * value if key == "top1" else value))
  return out


def evaluate(args, results: sweep.Saved) -> None:
  """Scores every finished run under every condition; visual_only only with clean keypoints (it reads none)."""
  found = sweep.finished(args)
  vision = {k: v for k, v in found.items() if k[0] == VISION}
  corruption_study.evaluate_runs(args, vision, [(ALL, 0.0)], results, results.save)
  corruption_study.evaluate_runs(args, {k: v for k, v in found.items() if k[0] != VISION}, CONDITIONS, results,
                                 results.save)


def accuracy_table(results: dict, args) -> str:
  head = " | ".join(label(k, l) for k, l in CONDITIONS)
  lines = [f"| variant | {head} |", "|---|" + "---:|" * len(CONDITIONS)]
  for variant in args.variant_list:
    cells = []
    for kinds, level in CONDITIONS:
      top1 = [v for v in figures(results, args, variant, kinds, level) if v is not None]
      gate = [v for v in figures(results, args, variant, kinds, level, "gate_mean") if v is not None]
      cells.append(trained_runs.mean_and_spread(top1) + (f" (g {statistics.mean(gate):.2f})" if gate else ""))
    lines.append(f"| {variant} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def paired(results: dict, args, a: str, b: str, kinds: str, level: float) -> tuple[float, float, int] | None:
  """(mean, 95 % half-width, seeds) of a − b over the seeds both have; None when fewer than one."""
  pairs = [(x, y) for x, y in zip(figures(results, args, a, kinds, level), figures(results, args, b, kinds, level))
           if x is not None and y is not None]
  if not pairs:
    return None
  mean, half = ablations.mean_interval([x - y for x, y in pairs])
  return mean, half, len(pairs)


def _interval(d) -> str:
  if d is None:
    return "—"
  mean, half, n = d
  if n < 2:
    return f"{mean:+.1f} (1 seed)"
  return f"{mean:+.1f} [{mean - half:+.1f}, {mean + half:+.1f}]" + ("" if n == 5 else f" ({n} seeds)")


def difference_table(results: dict, args) -> str:
  lines = [f"| condition | `{ROBUST}` − `{FULL}` | `{ROBUST}` − `{VISION}` | `no_gate` − `{VISION}` | target | met |",
           "|---|---:|---:|---:|---|---|"]
  for kinds, level in CONDITIONS:
    vs_full = paired(results, args, ROBUST, FULL, kinds, level)
    vs_vision = paired(results, args, ROBUST, VISION, kinds, level)
    target, met = targets(results, args, kinds, level, vs_full, vs_vision)
    lines.append(f"| {label(kinds, level)} | {_interval(vs_full)} | {_interval(vs_vision)} | "
                 f"{_interval(paired(results, args, 'no_gate', VISION, kinds, level))} | {target} | {met} |")
  return "\n".join(lines)


def targets(results, args, kinds, level, vs_full, vs_vision) -> tuple[str, str]:
  """The acceptance target of a condition (issue: robust fusion) and whether the means meet it."""
  # Means over the seeds every one of the three has, so that the bar and the robust figure are paired.
  have = [all(v is not None for v in seeds) for seeds in zip(
      *(figures(results, args, v, kinds, level) for v in (ROBUST, FULL, VISION)))]
  mean = lambda v: statistics.mean(x for x, ok in zip(figures(results, args, v, kinds, level), have) if ok)
  try:
    if kinds == ALL and level == 0.0:
      return "− full ≥ −1", _yes(vs_full and vs_full[0] >= -1)
    if (kinds == ALL and level == 1.0) or kinds == "drop":
      return "− visual_only ≥ 0", _yes(vs_vision and vs_vision[0] >= 0)
    if kinds == ALL:
      bar = max(mean(FULL), mean(VISION)) - 1
      return f"≥ max(full, visual_only) − 1 = {bar:.1f}", _yes(mean(ROBUST) >= bar)
  except statistics.StatisticsError:
    return "—", "—"
  return "—", "—"


def _yes(ok) -> str:
  return "yes" if ok else "**no**"


def plot(results: dict, args) -> None:
  present = lambda values: [v for v in values if v is not None]
  curves = {v: ([present(figures(results, args, v, ALL, level)) for level in LEVELS],
                [present(figures(results, args, v, ALL, level, "gate_mean")) for level in LEVELS])
            for v in args.variant_list}
  corruption_study.plot_curves(curves, list(LEVELS), "all four kinds", args.split, args.figure)


def main(argv=None):
  parser = sweep.analysis_parser(__doc__, name="robust_fusion", variants=f"{FULL},{ROBUST},{VISION},no_gate")
  parser.add_argument("--split", default="test", choices=("test", "validation"),
                      help="the split scored (validation: what the settings were chosen on)")
  parser.add_argument("--jitter_px", type=float, default=8.0, help="jitter at 100 %%, pixels of the 112-px input")
  parser.add_argument("--corruption_seed", type=int, default=0)
  args = sweep.parse(parser, argv)
  results = sweep.Saved(args.json)
  evaluate(args, results)
  text = (accuracy_table(results, args)
          + f"\n\n{args.split.capitalize()} top-1 % (mean ± sd over seeds {args.seeds}; g = mean gate over the "
          f"windows). Columns: all four corruptions at each level (jitter {args.jitter_px:g} px at 100 %, corruption "
          f"seed {args.corruption_seed}), then each kind alone at 100 % (`drop` 100 % = nobody detected). "
          f"`{VISION}` reads no keypoints: it is scored with clean keypoints, and that figure stands for every "
          f"column.\n\nPaired differences (top-1 points, mean over the seeds [95 % t interval]):\n\n"
          + difference_table(results, args))
  plot(results, args)
  sweep.publish(args, text)


if __name__ == "__main__":
  main()
