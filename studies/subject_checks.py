r"""Per subject: how evenly each variant does across the test subjects, and how much of the subject's identity the
pooled clip feature carries.

Spread: each run's per-subject top-1 on the test split (per_subject of the run's final results), its standard
deviation and range over the subjects, averaged over the seeds. Identity probe (for --probe_variants, default `full`
against `visual_only`): the pooled clip feature the head classifies (the cross-attention output) of every test clip;
each subject's clips are split alternately into a fitting half and a held-out half, a softmax regression predicts
the subject, and its held-out accuracy is compared with chance (1 / subjects). A feature that knows less of who it is
looking at is the hope of pose guidance in cross-subject recognition. Writes a figure (per-subject top-1 by
variant), a Markdown table into --output and the figures in --json.

  python -m studies.subject_checks --root runs/ablations_pretrained --seeds 0,1,2,3,4
"""

import statistics

import numpy as np

from clipmg_jax.figures import canvas
from clipmg_jax.run.folder import RunFolder
from studies import linear_probe
from studies import sweep
from studies import trained_runs


def per_subject(folder: RunFolder) -> dict[str, float]:
  """{subject: test top-1} of the run's final state."""
  return {str(k): v["accuracy"] for k, v in folder.read_results()["per_subject"].items()}


def identity_probe(run) -> dict:
  out = trained_runs.capture(run, ("cross_attention",))
  features, subjects = out["cross_attention"].astype(np.float32), out["subject"]
  _, index = np.unique(subjects, return_inverse=True)
  fit = np.zeros(len(index), bool)
  for s in np.unique(index):
    rows = np.flatnonzero(index == s)
    fit[rows[::2]] = True  # alternate clips of each subject: both halves see every subject
  result = linear_probe.probe(features[fit], index[fit], features[~fit], index[~fit])
  return dict(result, subjects=int(index.max() + 1), chance=1.0 / (index.max() + 1))


def figure(saved: dict, variants: list[str], path: str) -> None:
  plt = canvas.pyplot()
  fig, ax = plt.subplots(figsize=(10, 4))
  for i, variant in enumerate(variants):
    runs = [v["per_subject"] for k, v in saved.items() if k.startswith(variant + "/")]
    if not runs:
      continue
    subjects = sorted(runs[0], key=int)
    means = [100 * statistics.mean(r[s] for r in runs) for s in subjects]
    ax.plot(range(len(subjects)), means, marker="o", label=f"{variant} ({len(runs)} seeds)")
    ax.set_xticks(range(len(subjects)), [f"subject {s}" for s in subjects], rotation=45, ha="right", fontsize=8)
  ax.set(ylabel="test top-1, % (mean over seeds)", title="per-subject accuracy on the cross-subject test split")
  ax.legend(fontsize=8, ncol=2)
  fig.tight_layout()
  trained_runs.write_figure(fig, path)


def table(saved: dict, variants: list[str]) -> str:
  lines = ["| variant | seeds | top-1 over subjects: sd | range (min - max) | identity probe: held-out accuracy | "
           "chance |", "|---|---:|---:|---|---:|---:|"]
  for variant in variants:
    runs = [v for k, v in saved.items() if k.startswith(variant + "/")]
    if not runs:
      continue
    sds = [100 * statistics.pstdev(r["per_subject"].values()) for r in runs]
    lows = [100 * min(r["per_subject"].values()) for r in runs]
    highs = [100 * max(r["per_subject"].values()) for r in runs]
    probes = [100 * r["probe"]["accuracy"] for r in runs if r.get("probe")]
    chance = next((100 * r["probe"]["chance"] for r in runs if r.get("probe")), None)
    lines.append(f"| {variant} | {len(runs)} | {statistics.mean(sds):.1f} | {statistics.mean(lows):.1f} - "
                 f"{statistics.mean(highs):.1f} | " + (trained_runs.mean_and_spread(probes) if probes else "—")
                 + " | " + (f"{chance:.1f}" if chance else "—") + " |")
  return "\n".join(lines)


NOTE = ("Test split (12 subjects), final state of each run, mean over the seeds. Identity probe: softmax regression "
        "on the pooled clip feature (the cross-attention output), fitted on alternate clips of each test subject and "
        "scored on the others.")


def main(argv=None):
  parser = sweep.analysis_parser(
      __doc__, name="subject_checks", figure="per_subject",
      variants="full,visual_only,pose_only,no_guidance,no_cross_attention,no_gate")
  parser.add_argument("--probe_variants", default="full,visual_only", help="variants given the identity probe")
  args = sweep.parse(parser, argv)
  probe_variants = set(args.probe_variants.split(","))
  saved = sweep.Saved(args.json)
  for (variant, seed), folder in sweep.finished(args).items():
    key = f"{variant}/seed{seed}"
    entry = saved.setdefault(key, {"per_subject": per_subject(folder)})
    if variant in probe_variants and "probe" not in entry:
      entry["probe"] = identity_probe(trained_runs.load(args, variant, seed, folder))
      print(f"[{key}] identity probe: {entry['probe']}", flush=True)
    saved.save()
  figure(saved, args.variant_list, args.figure)
  sweep.publish(args, table(saved, args.variant_list) + "\n\n" + NOTE)


if __name__ == "__main__":
  main()
