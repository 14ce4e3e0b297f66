r"""Pretrains the vision tower contrastively on captioned synthetic frames and exports it as a CLIP checkpoint.

  python -m clipmg_jax.pretrain --config configs/pretrain_synthetic.py --workdir runs/pretrain_synthetic

Writes to --workdir: corpus.npz (the rendered, captioned corpus; reused when its settings match), checkpoints/
(Orbax: train state + iterator position; rerunning resumes), metrics.jsonl, config.json, and at the end
hf_vision/ (config.json + model.safetensors in the Hugging Face CLIPVisionModel layout), which
--config.init.vit_checkpoint, clipmg_jax.weights.load_clip_vision and data_prep/port_clip.py read.
Any config field can be overridden with --config.<path>=<value> (e.g. --config.total_steps=300).
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from clipmg_jax.pretraining import contrastive
from clipmg_jax.training import logs
from clipmg_jax.training import distributed

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file with get_config() (configs/pretrain_synthetic.py).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder; an existing one is resumed.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logs.quiet_library_logs()
  config = _CONFIG.value
  distributed.initialize(config)
  out = contrastive.pretrain(config, _WORKDIR.value)
  if out:
    print(f"pretrained vision tower: {out}", flush=True)


if __name__ == "__main__":
  app.run(main)
