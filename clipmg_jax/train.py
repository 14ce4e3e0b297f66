r"""Trains CLIP-MG and evaluates it; rerunning with the same --workdir resumes from its latest checkpoint.

  python -m clipmg_jax.train --config configs/synthetic.py --workdir runs/synthetic
  python -m clipmg_jax.train --config configs/synthetic.py:pose_only --workdir runs/pose_only
  python -m clipmg_jax.train --config configs/imigue.py --workdir runs/imigue \
      --config.data.shards_dir=/data/imigue_shards --config.init.vit_checkpoint=/models/clip_b16_ported

Any config field can be overridden with --config.<path>=<value> (e.g. --config.total_steps=200,
--config.model.variant=visual_only, --config.loss.logit_adjustment_tau=1.0, --config.model.dtype=bfloat16).

Periodic evaluation (every eval_every_steps) runs on the validation split — whole training subjects held out of
training (config.data.validation) — and ranks the checkpoints; the test split is evaluated once, after the last step.

Writes to --workdir: checkpoints/ (Orbax: train state + input iterator position; the last K and the best by
validation top-1), metrics.jsonl (one JSON line per logged step and per evaluation, with its split), tensorboard/
(when tensorboardX is installed), config.json (with the validation subjects chosen), and at the end eval.json (test
split of the final state: top1, top5, mean_class_accuracy, macro_f1, per_class, per_subject, confusion,
pose_monitoring, split, checkpoint and selection) with confusion.png, per_class_accuracy.png and gate_histogram.png.

SIGTERM (preemption) saves a checkpoint at the next step and exits with status 143; run the same command to resume.
During set-up it stops at once, and during the final evaluation too (the final state is saved before it begins).
One run per --workdir: a second one stops at once, naming the host and pid of the run holding <workdir>/train.lock.
Errors with a known cause (non-finite loss, unreadable checkpoints, missing shards) print one message naming what
to change; docs/training.md "When things go wrong" lists them.

A config that freezes ViT blocks without init.vit_checkpoint stops at once (RandomVisionTowerError);
--config.init.allow_random_vit=True lets a smoke test through.
"""

from absl import logging
import jax

from clipmg_jax import command
from clipmg_jax.data import input_setup
from clipmg_jax.figures import results as result_figures
from clipmg_jax.run import preemption
from clipmg_jax.training import evaluation
from clipmg_jax.training import model_setup
from clipmg_jax.training import setup as setup_lib
from clipmg_jax.training import trainer

_CONFIG = command.config_flag(
    "Config file with get_config() (e.g. configs/synthetic.py, configs/imigue.py); `file.py:arg` passes arg to "
    "get_config (the model variant in the shipped configs).")
_WORKDIR = command.workdir_flag("Output folder; an existing one is resumed.")


def _check(config) -> None:
  """Before the session takes the folder or any data work: a misconfigured run stops at once and leaves nothing."""
  setup_lib.check_config(config)
  model_setup.check_vision_init(config)


def main(config, session):
  logging.info("config:\n%s", config)
  # The session's lock and preemption watch cover the data set-up too (it may generate the synthetic dataset).
  with session.stops_at_once(preemption.SETUP):
    data = input_setup.make_data_source(config, session.workdir)
  result = trainer.train_and_evaluate(config, session.workdir, data, session=session,
                                      plots=result_figures.write_evaluation_plots)
  if result and jax.process_index() == 0:
    print(f"final evaluation ({session.folder.results_file()}): {evaluation.summary_line(result)}", flush=True)


if __name__ == "__main__":
  command.run(main, config=_CONFIG, writes=True, processes=True, check=_check)
