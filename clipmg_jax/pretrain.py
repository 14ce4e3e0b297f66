r"""Pretrains the vision tower contrastively on captioned synthetic frames and exports it as a CLIP checkpoint.

  python -m clipmg_jax.pretrain --config configs/pretrain_synthetic.py --workdir runs/pretrain_synthetic

Writes to --workdir: corpus.npz (the rendered, captioned corpus; reused when its settings match), checkpoints/
(Orbax: train state + iterator position; rerunning resumes), metrics.jsonl, config.json, and at the end
hf_vision/ (config.json + model.safetensors in the Hugging Face CLIPVisionModel layout), which
--config.init.vit_checkpoint, clipmg_jax.weights.load_clip_vision and data_prep/port_clip.py read.
Any config field can be overridden with --config.<path>=<value> (e.g. --config.total_steps=300).
"""

from clipmg_jax import command
from clipmg_jax.pretraining import contrastive

_CONFIG = command.config_flag("Config file with get_config() (configs/pretrain_synthetic.py).")
_WORKDIR = command.workdir_flag("Output folder; an existing one is resumed.")


def main(config, session):
  out = contrastive.pretrain(config, session.workdir, session=session)
  if out:
    print(f"pretrained vision tower: {out}", flush=True)


if __name__ == "__main__":
  command.run(main, config=_CONFIG, writes=True, processes=True)
