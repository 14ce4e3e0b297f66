r"""Evaluates a trained CLIP-MG checkpoint on the evaluation split (the cross-subject test split by default).

  python -m clipmg_jax.evaluate --config configs/synthetic.py --workdir runs/synthetic
  python -m clipmg_jax.evaluate --config configs/imigue.py --workdir runs/imigue --checkpoint=best

Use the same --config (and overrides) as for training. Reads <workdir>/checkpoints and writes, beside the training
run's own eval.json (never over it), <workdir>/eval_<rule>_<step>.json: eval_latest_6.json, eval_best_4.json or
eval_step_4.json for --checkpoint=latest, best or 4, with the step the rule chose (top1, top5, mean_class_accuracy,
macro_f1, num_examples, majority_rate, per_class, per_subject, confusion, class_names, step, checkpoint, selection),
plus confusion_<rule>_<step>.png and per_class_accuracy_<rule>_<step>.png, with the class names of the dataset's
manifest.

  --config.eval_corruption.level=0.5   keypoints corrupted at evaluation (dropped joints, jitter, lower
                                       confidences, lost pose frames; docs/training.md "Pose that fails"):
                                       eval_<rule>_<step>_pose50.json
"""

from absl import flags

from clipmg_jax import command
from clipmg_jax.figures import results as result_figures
from clipmg_jax.training import runs

_CONFIG = command.config_flag(
    "The training config file (e.g. configs/synthetic.py); `file.py:arg` as for training.")
_WORKDIR = command.workdir_flag("The training run's folder (holds checkpoints/).")
_CHECKPOINT = flags.DEFINE_string("checkpoint", "latest",
                                  "Which checkpoint: 'latest', 'best' (highest validation top-1) or a step number.")


def main(config, session):
  runs.evaluate_checkpoint(config, session.workdir, _CHECKPOINT.value, plots=result_figures.write_evaluation_plots)


if __name__ == "__main__":
  command.run(main, config=_CONFIG, processes=True)
