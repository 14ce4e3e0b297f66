r"""Where the pose-guided query looks: the share of the patch weights w and of the learned cross-attention that falls
on the patches of the body part the gesture moves, against the share those patches have of the frame (uniform).

The synthetic generator knows the part each class moves (clipmg_jax/data/synthetic/moved_parts.py). A frame's
"part patches" are those whose centre lies within --radius patches of one of that part's joints in the frame's pose
window (detected joints only). For every test clip of every finished run: w-share = mean over frames of the weight
on the part patches (each frame's w sums to 1); attention share = the cross-attention mass (mean over heads) on the
part patches of all frames (it sums to 1 over the clip's tokens); uniform = the part patches' share of the patches.
Lift = share / uniform. Also an overlay figure for one correct and one wrong clip of the first run of --figure_variant.

  python -m studies.query_alignment --root runs/ablations_pretrained --seeds 0,1,2,3,4
"""


import numpy as np
import tqdm

from clipmg_jax.data.loader import pipeline
from clipmg_jax.data.synthetic import moved_parts
from clipmg_jax.figures import canvas
from clipmg_jax.figures import clip_views
from clipmg_jax.models import pose_guidance
from clipmg_jax.prediction import inspection
from studies import sweep
from studies import trained_runs


def part_patches(keypoints: np.ndarray, joints: tuple[int, ...], num_frames: int, size: int, patch: int,
                 radius: float) -> np.ndarray:
  """bool (T, P): the patches within `radius` patches of a detected joint of `joints` in each frame's window."""
  centres = np.asarray(pose_guidance.patch_centres((size, size), patch))  # (P, 2)
  windows = keypoints.reshape(num_frames, -1, *keypoints.shape[1:])[:, :, list(joints)]  # (T, k, J', 3)
  out = np.zeros((num_frames, len(centres)), bool)
  for t in range(num_frames):
    points = windows[t][windows[t][..., 2] > 0][:, :2]
    if len(points):
      dist = np.linalg.norm(centres[:, None] - points[None], axis=-1).min(axis=1)
      out[t] = dist <= radius * patch
  return out


def clip_shares(inside: dict, region: np.ndarray) -> dict:
  """w-share, attention share and their uniform baselines of one clip (None where the variant lacks the value)."""
  frames = region.any(axis=1)
  out = {"uniform_w": float(region[frames].mean()) if frames.any() else None,
         "uniform_attention": float(region.mean())}
  if "patch_weights" in inside and frames.any():
    w = inside["patch_weights"].reshape(region.shape)
    out["w"] = float(np.mean(np.sum(w * region, axis=1)[frames]))
  if "attention" in inside:
    a = inside["attention"].mean(axis=0).reshape(region.shape)
    out["attention"] = float(np.sum(a * region))
  return out


def analyse_run(run, args) -> list[dict]:
  data_config = run.config.data
  source = pipeline.make_source(data_config, "test")
  decoder = pipeline.ClipDecoder(data_config, source, train=False)
  rows = []
  for record in tqdm.trange(len(source), desc="clips", leave=False):
    example = decoder.decode(source[record], None)
    example.pop("mask")
    clip = {k: np.asarray(v)[None] for k, v in example.items()}
    inside = inspection.look_inside(run, clip)
    label = int(clip["label"][0])
    keypoints = inside["keypoints"]
    size, t = inside["frames"].shape[1], inside["frames"].shape[0]
    patch = size // inside["grid"][0]
    region = part_patches(keypoints, moved_parts.moved_joints(label, keypoints), t, size, patch, args.radius)
    rows.append(dict(clip_shares(inside, region), record=record, label=label,
                     correct=bool(np.argmax(inside["logits"]) == label)))
  return rows


def summary(rows: list[dict]) -> dict:
  out = {"clips": len(rows)}
  for key, base in (("w", "uniform_w"), ("attention", "uniform_attention")):
    pairs = [(r[key], r[base]) for r in rows if r.get(key) is not None and r.get(base)]
    if pairs:
      share, uniform = (float(np.mean(v)) for v in zip(*pairs))
      out[key] = {"share": share, "uniform": uniform, "lift": share / uniform,
                  "correct": float(np.mean([r[key] for r in rows if r["correct"] and r.get(key) is not None])),
                  "wrong": float(np.mean([r[key] for r in rows if not r["correct"] and r.get(key) is not None]))}
  return out


def overlay(run, rows: list[dict], args) -> None:
  """One correct and one wrong clip: each frame with w (row 1) and the attention (row 2), part patches outlined."""
  plt = canvas.pyplot()
  picks = [next(r for r in rows if r["correct"]), next(r for r in rows if not r["correct"])]
  source = pipeline.make_source(run.config.data, "test")
  decoder = pipeline.ClipDecoder(run.config.data, source, train=False)
  fig, axes = plt.subplots(4, 8, figsize=(16, 8.6), squeeze=False)
  for i, pick in enumerate(picks):
    example = decoder.decode(source[pick["record"]], None)
    example.pop("mask")
    inside = inspection.look_inside(run, {k: np.asarray(v)[None] for k, v in example.items()})
    size, t = inside["frames"].shape[1], inside["frames"].shape[0]
    grid = inside["grid"]
    patch = size // grid[0]
    joints = moved_parts.moved_joints(pick["label"], inside["keypoints"])
    region = part_patches(inside["keypoints"], joints, t, size, patch, args.radius).reshape(t, *grid)
    maps = [("w", inside.get("patch_weights")), ("attention", inside["attention"].mean(axis=0))]
    centre = clip_views.window_centre(t, len(inside["keypoints"]))
    for j, (name, values) in enumerate(maps):
      for k in range(t):
        ax = axes[2 * i + j, k]
        ax.set_xticks([])
        ax.set_yticks([])
        ax.imshow(inside["frames"][k])
        if values is not None:
          ax.imshow(values[k], cmap="magma", alpha=0.6, extent=(-0.5, size - 0.5, size - 0.5, -0.5),
                    interpolation="nearest", vmin=0, vmax=float(values.max()))
        for r, c in zip(*np.nonzero(region[k])):
          ax.add_patch(plt.Rectangle((c * patch - 0.5, r * patch - 0.5), patch, patch, fill=False,
                                     edgecolor="cyan", lw=0.8))
        clip_views.draw_skeleton(ax, inside["keypoints"][centre[k]], size=4, lw=0.6)
        if k == 0:
          ax.set_ylabel(name, fontsize=9)
        if k == 0 and j == 0:
          said = run.class_names[int(np.argmax(inside["logits"]))]
          ax.set_title(f"{run.class_names[pick['label']]}: " + ("correct" if pick["correct"] else f"wrong, said "
                                                                f"{said}"), fontsize=8, loc="left")
  fig.suptitle(f"{args.figure_variant}: patch weights w and cross-attention (mean of heads) over each frame; "
               f"cyan: patches of the moved part ({moved_parts.MOVED_PART[picks[0]['label']]} / "
               f"{moved_parts.MOVED_PART[picks[1]['label']]})", fontsize=10)
  fig.tight_layout()
  trained_runs.write_figure(fig, args.figure)


def table(summaries: dict) -> str:
  lines = ["| variant | seeds | w on the moved part | uniform | lift | attention on the moved part | uniform | lift "
           "| attention, correct / wrong clips |", "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
  for variant, per_seed in summaries.items():
    def cell(key, field, fmt="{:.1f}", scale=100.0):
      values = [s[key][field] for s in per_seed.values() if key in s]
      return trained_runs.mean_and_spread([scale * v for v in values]) if values else "—"
    lines.append(f"| {variant} | {len(per_seed)} | {cell('w', 'share')} | {cell('w', 'uniform')} | "
                 f"{cell('w', 'lift', scale=1)} | {cell('attention', 'share')} | {cell('attention', 'uniform')} | "
                 f"{cell('attention', 'lift', scale=1)} | {cell('attention', 'correct')} / "
                 f"{cell('attention', 'wrong')} |")
  return "\n".join(lines)


def main(argv=None):
  parser = sweep.analysis_parser(__doc__, name="query_alignment", variants="full,no_gate,no_guidance,visual_only")
  parser.add_argument("--radius", type=float, default=1.0, help="part patches: centre within this many patches")
  parser.add_argument("--figure_variant", default="full", help="the variant of the overlay figure (first seed)")
  args = sweep.parse(parser, argv)
  saved = sweep.Saved(args.json)
  summaries, figure_done = {}, False
  for (variant, seed), folder in sweep.finished(args).items():
    key = f"{variant}/seed{seed}/r{args.radius:g}"
    need_figure = variant == args.figure_variant and not figure_done
    if key not in saved or need_figure:
      run = trained_runs.load(args, variant, seed, folder)
      rows = analyse_run(run, args)
      saved.put(key, summary(rows))
      print(f"[{variant} seed {seed}] {saved[key]}", flush=True)
      if need_figure:
        overlay(run, rows, args)
        figure_done = True
    summaries.setdefault(variant, {})[seed] = saved[key]
  text = table(summaries) + (
      f"\n\nTest split, final state of each run; shares in % (mean ± sd over the seeds); part patches within "
      f"{args.radius:g} patch of a joint the class moves (moved_parts.py); lift = share / uniform.")
  sweep.publish(args, text)


if __name__ == "__main__":
  main()
