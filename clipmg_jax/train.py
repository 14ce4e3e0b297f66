r"""Trains CLIP-MG and evaluates it; rerunning with the same --workdir resumes from its latest checkpoint.

  python -m clipmg_jax.train --config configs/synthetic.py --workdir runs/synthetic
  python -m clipmg_jax.train --config configs/synthetic.py:pose_only --workdir runs/pose_only
  python -m clipmg_jax.train --config configs/imigue.py --workdir runs/imigue \
      --config.data.shards_dir=/data/imigue_shards --config.init.vit_checkpoint=/models/clip_b16_ported

Any config field can be overridden with --config.<path>=<value> (e.g. --config.total_steps=200,
--config.model.variant=visual_only, --config.loss.logit_adjustment_tau=1.0, --config.model.dtype=bfloat16).

Writes to --workdir: checkpoints/ (Orbax: train state + input iterator position; the last K and the best by
validation top-1), metrics.jsonl (one JSON line per logged step and per evaluation), tensorboard/ (when tensorboardX
is installed), config.json, and at the end eval.json (top1, top5, mean_class_accuracy, macro_f1, per_class,
per_subject, confusion) with confusion.png and per_class_accuracy.png.
"""

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from clipmg_jax.training import evaluation
from clipmg_jax.training import input_setup
from clipmg_jax.training import logs
from clipmg_jax.training import sharding
from clipmg_jax.training import trainer

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file with get_config() (e.g. configs/synthetic.py, configs/imigue.py); "
    "`file.py:arg` passes arg to get_config (the model variant in the shipped configs).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder; an existing one is resumed.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logs.quiet_library_logs()
  config = _CONFIG.value
  sharding.maybe_initialize_distributed(config)
  logging.info("config:\n%s", config)
  data = input_setup.make_data_source(config, _WORKDIR.value)
  result = trainer.train_and_evaluate(config, _WORKDIR.value, data)
  if result:
    print(f"final evaluation ({_WORKDIR.value}/eval.json): {evaluation.summary_line(result)}", flush=True)


if __name__ == "__main__":
  app.run(main)
