r"""The synthetic benchmark on the paper's path: a pretrained CLIP-shaped tower, loaded from a checkpoint and mostly
frozen, under the CLIP-MG model.

configs/synthetic.py trains its small tower from random initialisation. Here the same tower is first pretrained
contrastively on captioned synthetic frames of 384 other people (configs/pretrain_synthetic.py), exported as a
Hugging Face CLIPVisionModel checkpoint, then loaded through init.vit_checkpoint — the path real CLIP weights take —
and frozen except its last block and ln_post, as configs/imigue.py freezes 10 of ViT-B/16's 12 blocks. Everything
else (data, validation split, schedule, loss, extras) is configs/synthetic.py's. By default it loads
assets/synthetic_tower, that config's export (pretraining takes hours on a 2-core CPU, 72 s on a GPU), so this
runs on a fresh clone like the main job:

  python -m clipmg_jax.train --config configs/synthetic_pretrained.py --workdir runs/synthetic_pretrained
  python -m clipmg_jax.train --config configs/synthetic_pretrained.py:visual_only --workdir runs/sp_visual
  python -m clipmg_jax.pretrain --config configs/pretrain_synthetic.py --workdir runs/pretrain_synthetic  # your own
  python -m clipmg_jax.train --config configs/synthetic_pretrained.py --workdir runs/sp_own \
      --config.init.vit_checkpoint=runs/pretrain_synthetic/hf_vision

The argument after ":" is configs/synthetic.py's `<variant>[+extras][+robust]` (default full+extras+robust; the
studies name theirs explicitly). pose_only has no vision tower and loads nothing.
"""

import pathlib

import ml_collections

from configs import synthetic

# The export of configs/pretrain_synthetic.py shipped with the project (its README says how it was made); an
# absolute path, so the config works from any working directory.
DEFAULT_CHECKPOINT = str(pathlib.Path(__file__).resolve().parents[1] / "assets" / "synthetic_tower")
TRAINABLE_BLOCKS = 1  # of 3: the last block and ln_post are fine-tuned, the stem and the first 2 blocks frozen


def get_config(arg: str = synthetic.DEFAULT_ARG) -> ml_collections.ConfigDict:
  config = synthetic.get_config(arg)
  config.model.trainable_blocks = TRAINABLE_BLOCKS
  config.init.vit_checkpoint = "" if config.model.variant == "pose_only" else DEFAULT_CHECKPOINT
  return config
