r"""Writes the figures of one clip as a trained CLIP-MG model sees it, as PNGs (no Jupyter needed).

  python -m clipmg_jax.inspect_clip --config configs/synthetic.py --workdir runs/synthetic --clip_id 100002 --out /tmp/x
  python -m clipmg_jax.inspect_clip --config configs/synthetic.py --workdir runs/synthetic --list   # the clip ids

Use the same --config (and overrides) as for training. Reads <workdir>/checkpoints (nothing is written there) and
the clip from the config's shards, prepared as for evaluation (segment centres, centre crop). Writes to --out:
  skeleton.png          the 8 RGB frames with the COCO-18 skeleton, joints coloured by confidence
  joint_confidence.png  every joint's confidence over the 32 pose frames
  heatmaps.png          the joint heatmaps the skeleton tower renders (max over joints per frame; one frame by joint)
  patch_weights.png     the pose-guided patch weights over each frame (variants with guidance)
  gate.png              the gate per frame against pose reliability (variants with both towers)
  attention.png         the cross-attention weights over the T x P tokens, averaged over heads (variants with it)
  prediction.png        the top-5 classes with the true class marked
  inspect.json          clip, label, top-5 with probabilities, gate, reliability and each frame's attention share
The values are those of the model's forward pass (its "intermediates" collection, clipmg_jax/models/clipmg.py).
"""

import json
import pathlib

from absl import app
from absl import flags

from clipmg_jax import command
from clipmg_jax.data import input_setup
from clipmg_jax.figures import canvas
from clipmg_jax.figures import clip_views
from clipmg_jax.prediction import inspection
from clipmg_jax.run import output_paths
from clipmg_jax.training import metrics
from clipmg_jax.training import runs

_CONFIG = command.config_flag(
    "The training config file (e.g. configs/synthetic.py); `file.py:arg` as for training.")
_WORKDIR = command.workdir_flag("The training run's folder (holds checkpoints/).")
_CLIP_ID = flags.DEFINE_integer("clip_id", None, "The clip's id (video_id * 100000 + label_id); see --list.")
_SPLIT = flags.DEFINE_string("split", "test", "'test', 'validation' (held-out training subjects) or a shard split.")
_CHECKPOINT = flags.DEFINE_string("checkpoint", "latest",
                                  "Which checkpoint: 'latest', 'best' (highest validation top-1) or a step number.")
_OUT = flags.DEFINE_string("out", None, "Folder for the PNGs and inspect.json (created).")
_LIST = flags.DEFINE_bool("list", False, "Print the split's clip ids with label and subject, then stop.")


def write_figures(inside: dict, class_names: list[str], label: int, out: pathlib.Path) -> list[pathlib.Path]:
  """Saves the figures of `inspection.look_inside` output into `out`; returns the paths written."""
  canvas.files_only()
  frames, keypoints = inside["frames"], inside["keypoints"]
  figures = {
      "skeleton": clip_views.skeleton_overlay(frames, keypoints),
      "joint_confidence": clip_views.joint_confidence(keypoints),
      "heatmaps": clip_views.heatmaps(frames, inside["heatmaps"]),
      "prediction": clip_views.top_classes(inside["probabilities"], class_names, label=label),
  }
  if "patch_weights" in inside:
    figures["patch_weights"] = clip_views.patch_weights(frames, inside["patch_weights"], keypoints)
  if "reliability" in inside:
    figures["gate"] = clip_views.gate(inside.get("gate"), inside["reliability"])
  if "attention" in inside:
    figures["attention"] = clip_views.attention(frames, inside["attention"])
  return canvas.save_all(figures, out, dpi=110)


def summary(inside: dict, class_names: list[str], clip: dict, step: int) -> dict:
  """The numbers behind the figures, JSON-ready."""
  label = int(clip["label"][0])
  out = {"clip_id": int(clip["clip_id"][0]), "subject": int(clip["subject"][0]), "label": label,
         "label_name": class_names[label], "checkpoint_step": step,
         "top5": metrics.top_classes(inside["probabilities"], class_names, 5)}
  for key in ("gate", "reliability"):
    if key in inside:
      out[key] = inside[key].round(4).tolist()
  if "attention" in inside:
    out["attention_share_by_frame"] = inside["attention"].mean(axis=0).sum(axis=(1, 2)).round(4).tolist()
  return out


def main(config, session):
  if _LIST.value:
    data = input_setup.make_data_source(config, session.workdir)  # resolves (for the synthetic config, makes) the data
    table = inspection.clip_table(data.data_config, _SPLIT.value)
    print("clip_id label subject")
    for row in zip(table["clip_id"], table["label"], table["subject"]):
      print(*row)
    return
  if _CLIP_ID.value is None or _OUT.value is None:
    raise app.UsageError("--clip_id and --out are required (or --list to see the clip ids)")
  output_paths.check_folder(_OUT.value, flag="out", inputs={"workdir": session.workdir})
  run = runs.load_run(config, session.workdir, _CHECKPOINT.value)
  try:
    clip = inspection.read_clip(run.config.data, _SPLIT.value, _CLIP_ID.value)
  except KeyError as e:  # an unknown clip id: its message names the split; --list gives the ids
    raise app.UsageError(f"{e.args[0]}; --list prints the clip ids of --split={_SPLIT.value}") from None
  inside = inspection.look_inside(run, clip)
  out = pathlib.Path(_OUT.value)
  paths = write_figures(inside, run.class_names, int(clip["label"][0]), out)
  info = summary(inside, run.class_names, clip, run.step)
  (out / "inspect.json").write_text(json.dumps(info, indent=1))
  top = info["top5"][0]
  print(f"clip {info['clip_id']} ({info['label_name']}): predicted {top['name']} ({top['probability']:.3f}); "
        f"wrote {len(paths)} figures and inspect.json to {out}", flush=True)


if __name__ == "__main__":
  command.run(main, config=_CONFIG, output_flag="out", rerun="it runs again")
