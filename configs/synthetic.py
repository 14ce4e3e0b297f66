r"""The default: a small CLIP-shaped CLIP-MG trained from random initialisation on the synthetic iMiGUE-like dataset.

Runs end to end on a laptop CPU: when <workdir>/synthetic_data/shards is absent it generates the synthetic dataset
(preset "demo") and converts it to shards first. No pretrained weights exist here, so every ViT block is trainable
and the tower is tiny; what this shows is that the whole pipeline works and the model learns the synthetic classes,
not accuracy on iMiGUE (configs/imigue.py is the paper setup).

What works best here, not the paper's setup: by default (no argument) the model is `full+extras+robust` — the
paper's model plus the head's gated pose context and the auxiliary pose-only loss (docs/method.md section 8; with
them the full model beats pose_only here, docs/results.md), and robust fusion (a vision classifier that answers when
the clip has no usable pose, at no cost on clean keypoints: docs/method.md "Robust fusion") — trained with
square-root inverse-frequency class weights and label smoothing 0.1. `configs/synthetic.py:full+extras` is the
previous default (the main job's row before robust fusion), `configs/synthetic.py:full` the paper's architecture
on this data, trained with this same loss (every variant here is): the paper's plain cross-entropy is
configs/imigue.py's.

  python -m clipmg_jax.train --config configs/synthetic.py --workdir runs/synthetic
  python -m clipmg_jax.train --config configs/synthetic.py:visual_only --workdir runs/visual_only   # an ablation
  python -m clipmg_jax.train --config configs/synthetic.py --workdir runs/x --config.total_steps=50

The optional argument after ":" is `<variant>[+extras][+robust]` (clipmg_jax/models/variants.py): full,
visual_only, pose_only, no_guidance, no_cross_attention, no_gate, each optionally with "+extras" and "+robust" (robust
fusion: the model keeps classifying from vision when pose fails; docs/method.md "Robust fusion"). Periodic evaluation and the
best checkpoint use 2 of the 12 training subjects as validation; the test split is evaluated after the last step.
"""

import ml_collections

from clipmg_jax.data.loader import pipeline
from clipmg_jax.data.synthetic import plan
from clipmg_jax.models import clipmg
from clipmg_jax.models import variants
from clipmg_jax.training import defaults

IMAGE_SIZE = 112  # frames are cropped to 112 x 112 (7 x 7 patches of 16 px): 4x fewer tokens than 224


DEFAULT_ARG = "full+extras+robust"


def get_config(arg: str = DEFAULT_ARG) -> ml_collections.ConfigDict:
  config = defaults.base_config()
  config.seed = 0
  config.batch_size = 32
  config.eval_batch_size = 64
  config.total_steps = 250
  config.log_every_steps = 10
  config.eval_every_steps = 125
  config.checkpoint.every_steps = 50

  config.optimizer.learning_rate = 1e-3
  config.optimizer.warmup_steps = 40
  config.optimizer.weight_decay = 0.05
  config.optimizer.grad_clip_norm = 1.0
  # Long-tailed classes: square-root inverse-frequency weights (mean class accuracy is a target metric).
  config.loss.class_weighting = "sqrt_inverse"
  config.loss.logit_adjustment_tau = 0.0
  config.loss.label_smoothing = 0.1

  vit = dict(width=96, layers=3, heads=4, patch_size=16, image_size=IMAGE_SIZE, mlp_dim=384, proj_dim=None)
  config.model = clipmg.get_model_config(
      vit, **variants.model_overrides(arg, DEFAULT_ARG),
      trainable_blocks=vit["layers"],  # random init: nothing is worth freezing
      # 16 x 16 heatmaps (7 px cells at 112 px) with sigma = 1 cell (sigma is in cells of a 256 heatmap): XLA's
      # CPU 3D convolutions (their weight gradients above all) dominate the step time at larger sizes.
      heatmap=dict(resolution=16, sigma=16.0),
      skeleton=dict(features=(16, 32, 64), kernels=((3, 3, 3), (3, 3, 3), (3, 3, 3)),
                    strides=((2, 2, 2), (2, 2, 2), (1, 2, 2)), depths=(1, 1, 1), embed_dim=128, num_groups=8),
      head=dict(hidden_dim=128, dropout=0.1))

  config.data = pipeline.get_data_config()
  config.data.shards_dir = ""  # default: <cache_dir>/shards, made on first use
  config.data.batch_size = config.get_ref("batch_size")
  config.data.eval_batch_size = config.get_ref("eval_batch_size")
  config.data.num_frames = config.model.get_ref("num_frames")
  config.data.num_pose_frames = config.model.get_ref("num_pose_frames")
  config.data.image_size = IMAGE_SIZE
  config.data.crop_scale = (0.6, 1.0)
  config.data.worker_count = 0  # decoding is ~5% of a step here; worker processes would compete for the cores
  # 2 of the 12 training subjects (~1/6 of the training clips) for periodic evaluation and checkpoint selection.
  config.data.validation.num_subjects = 2
  config.data.validation.seed = 0
  config.data.synthetic = ml_collections.ConfigDict(dict(
      preset="demo", seed=0,
      cache_dir="",  # "" = <workdir>/synthetic_data; share one between runs to generate once
      raw_dir="",  # "" = <cache_dir>/raw
      size=plan.size_overrides_config(),  # each SizeConfig field, None = the preset's (e.g. size.num_clips=900)
      convert_options=ml_collections.ConfigDict(dict(short_side=128, max_stored_frames=16)),
      convert_workers=2,
  ))
  return config
