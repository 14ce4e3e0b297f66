r"""Evaluates a trained CLIP-MG checkpoint on the evaluation split (the cross-subject test split by default).

  python -m clipmg_jax.evaluate --config configs/synthetic.py --workdir runs/synthetic
  python -m clipmg_jax.evaluate --config configs/imigue.py --workdir runs/imigue --checkpoint=best

Use the same --config (and overrides) as for training. Reads <workdir>/checkpoints and writes <workdir>/eval.json
(top1, top5, mean_class_accuracy, macro_f1, num_examples, majority_rate, per_class, per_subject, confusion,
class_names, step) plus confusion.png and per_class_accuracy.png, with the class names of the dataset's manifest.
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from clipmg_jax import cli_errors
from clipmg_jax.data.records import manifest as manifest_lib
from clipmg_jax.training import checkpointing
from clipmg_jax.training import distributed
from clipmg_jax.training import input_setup
from clipmg_jax.training import logs
from clipmg_jax.training import trainer

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "The training config file (e.g. configs/synthetic.py); `file.py:arg` as for training.",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "The training run's folder (holds checkpoints/).")
_CHECKPOINT = flags.DEFINE_string("checkpoint", "latest",
                                  "Which checkpoint: 'latest', 'best' (highest validation top-1) or a step number.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logs.quiet_library_logs()
  config = cli_errors.config_or_exit(_CONFIG)
  distributed.initialize(config)
  try:
    data = input_setup.make_data_source(config, _WORKDIR.value)
    trainer.evaluate_checkpoint(config, _WORKDIR.value, data, _CHECKPOINT.value)
  except (OSError, checkpointing.CheckpointCorruptError, manifest_lib.DataSetupError) as e:
    raise SystemExit(f"{type(e).__name__}: {e}") from None
  distributed.shutdown()
  print(f"results written to {_WORKDIR.value}/eval.json", flush=True)


if __name__ == "__main__":
  app.run(main, flags_parser=cli_errors.parse_flags)
