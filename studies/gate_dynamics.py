r"""How the gate g = sigmoid(u · LN(s) + a·r + β) behaves, and how much of it is learned rather than built in.

For every finished run with a gate (full, no_guidance, no_cross_attention): its mean over the validation split at
each periodic evaluation (the gate_mean of the run's validation metrics), its mean per class on the test split at
the end (the run's final results),
and, on the test split's windows at the final state, the two terms inside the sigmoid: the learned feature term
u · LN(s) (u starts at 0) against the reliability term a·r (a starts at 4, β at −2, docs/method.md §6) — their
mean absolute size and each one's share of the variance of the logit — and how far a and β moved. Writes a
figure (gate over training; per class at the end), a Markdown table into --output and the figures in --json.

  python -m studies.gate_dynamics --root runs/ablations_pretrained --seeds 0,1,2,3,4
"""

import statistics

import numpy as np

from clipmg_jax.figures import canvas
from clipmg_jax.run.folder import RunFolder
from studies import sweep
from studies import trained_runs


def gate_terms(run) -> dict:
  """The final state's gate, term by term, over the test split's windows."""
  out = trained_runs.capture(run, ("feature",))
  feature = out["feature"][..., 0].astype(np.float64)  # (N, T) u . LN(s)
  a = float(run.params["gate"]["confidence_scale"])
  beta = float(run.params["gate"]["bias"])
  reliability_term = a * out["reliability"].astype(np.float64)
  logit = feature + reliability_term + beta
  var = np.var(logit)
  init = run.config.model.gate
  return {"a": a, "beta": beta, "a_init": float(init.confidence_scale_init), "beta_init": float(init.bias_init),
          "u_norm": float(np.linalg.norm(run.params["gate"]["feature"]["kernel"])),
          "mean_abs_feature_term": float(np.mean(np.abs(feature))),
          "mean_abs_reliability_term": float(np.mean(np.abs(reliability_term))),
          "feature_variance_share": float(np.var(feature) / var) if var > 0 else None,
          "reliability_variance_share": float(np.var(reliability_term) / var) if var > 0 else None,
          "gate_mean": float(np.mean(out["gate_values"])),
          "gate_if_feature_term_removed": float(np.mean(1 / (1 + np.exp(-(reliability_term + beta)))))}


def validation_curve(folder: RunFolder) -> dict[str, float]:
  """{"step": mean gate on the validation split} of the run's periodic evaluations (string keys, as in JSON)."""
  return {str(m["step"]): m["gate_mean"] for m in folder.read_metrics("validation") if "gate_mean" in m}


def per_class(folder: RunFolder) -> dict[str, float]:
  """The final state's mean gate per class on the test split (classes without a window left out)."""
  gate = folder.read_results()["pose_monitoring"]["gate"]
  return {k: v for k, v in gate["per_class"].items() if v is not None}


def measure(args, variant: str, seed: int, folder: RunFolder) -> dict:
  """One finished run's figures: the gate's terms at the final state, its validation curve and its per-class mean."""
  terms = gate_terms(trained_runs.load(args, variant, seed, folder))
  print(f"[{variant}/seed{seed}] {terms}", flush=True)
  return {"terms": terms, "validation_curve": validation_curve(folder), "per_class": per_class(folder)}


def figure(saved: dict, variants: list[str], path: str) -> None:
  plt = canvas.pyplot()
  fig, (ax_curve, ax_class) = plt.subplots(1, 2, figsize=(14, 4.5), gridspec_kw={"width_ratios": [1, 2]})
  for variant in variants:
    curves = [v["validation_curve"] for k, v in saved.items() if k.startswith(variant + "/")]
    if not curves:
      continue
    steps = sorted(set.intersection(*(set(map(int, c)) for c in curves)))  # JSON keys are strings
    ax_curve.plot(steps, [statistics.mean(c[str(s)] for c in curves) for s in steps],
                  marker="o", label=f"{variant} ({len(curves)} seeds)")
  ax_curve.set(xlabel="training step", ylabel="mean gate, validation split", ylim=(0, 1), title="the gate over training")
  ax_curve.legend()
  full = [v["per_class"] for k, v in saved.items() if k.startswith("full/")]
  if full:
    names = sorted(full[0], key=lambda n: statistics.mean(c[n] for c in full if n in c))
    means = [statistics.mean(c[n] for c in full if n in c) for n in names]
    ax_class.bar(range(len(names)), means)
    ax_class.set_xticks(range(len(names)), [n[:22] for n in names], rotation=70, ha="right", fontsize=7)
    ax_class.set(ylabel="mean gate, test split", ylim=(0, 1),
                 title=f"`full`: the gate per class at the end (mean of {len(full)} seeds)")
  fig.tight_layout()
  trained_runs.write_figure(fig, path)


def table(saved: dict, variants: list[str]) -> str:
  lines = ["| variant | seeds | gate, validation: first → last evaluation | gate, test | a (init 4) | β (init −2) "
           "| \\|u·LN(s)\\| | \\|a·r\\| | variance share of u·LN(s) / a·r | gate without u·LN(s) | per class, "
           "lowest → highest |", "|---|---:|---|---:|---:|---:|---:|---:|---|---:|---|"]
  for variant in variants:
    runs = [v for k, v in saved.items() if k.startswith(variant + "/")]
    if not runs:
      continue
    def f(key, fmt="{:.3f}"):
      return fmt.format(statistics.mean(r["terms"][key] for r in runs))
    by_step = [[c[k] for k in sorted(c, key=int)] for c in (r["validation_curve"] for r in runs)]  # "50" < "100"
    first, last = statistics.mean(c[0] for c in by_step), statistics.mean(c[-1] for c in by_step)
    classes = {n: statistics.mean(r["per_class"][n] for r in runs if n in r["per_class"]) for n in runs[0]["per_class"]}
    low, high = min(classes.values()), max(classes.values())
    lines.append(
        f"| {variant} | {len(runs)} | {first:.3f} → {last:.3f} | {f('gate_mean')} | {f('a', '{:.4f}')} | "
        f"{f('beta', '{:.4f}')} | {f('mean_abs_feature_term')} | {f('mean_abs_reliability_term')} | "
        f"{f('feature_variance_share', '{:.2f}')} / {f('reliability_variance_share', '{:.2f}')} | "
        f"{f('gate_if_feature_term_removed')} | {low:.2f} → {high:.2f} |")
  return "\n".join(lines)


NOTE = ("Final state of each run (mean over the seeds); |·| = mean absolute value over the test split's windows; "
        "variance share = the term's variance over the windows / the variance of the whole logit u·LN(s) + a·r + β; "
        "'gate without u·LN(s)' = the mean of sigmoid(a·r + β), the gate the reliability alone would give.")


def main(argv=None):
  parser = sweep.analysis_parser(__doc__, name="gate_dynamics", variants="full,no_guidance,no_cross_attention")
  args = sweep.parse(parser, argv)
  saved = sweep.Saved(args.json)
  sweep.per_run(args, saved, lambda variant, seed, folder: measure(args, variant, seed, folder))
  figure(saved, args.variant_list, args.figure)
  sweep.publish(args, table(saved, args.variant_list) + "\n\n" + NOTE)


if __name__ == "__main__":
  main()
