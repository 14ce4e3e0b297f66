r"""Contrastive pretraining of the synthetic benchmark's small CLIP-shaped tower on captioned synthetic frames.

The corpus (clipmg_jax/data/synthetic/captions.py) is rendered by the synthetic generator with its own seed, so its
people and videos are not the benchmark's; each frame's caption names what was drawn (hand positions and what they
touch, a held pen, interlaced fingers, face state, shoulders, torso; the corpus also records clothes, hair and
backdrop, which the captions leave out). The tower is trained against a phrase-embedding text side with CLIP's
symmetric contrastive loss, each frame's colours shuffled, then exported as a Hugging Face CLIPVisionModel
checkpoint to <workdir>/hf_vision. assets/synthetic_tower is this config's export (made on one H200 in 72 s of
training; docs/results.md), which configs/synthetic_pretrained.py loads by default.

  python -m clipmg_jax.pretrain --config configs/pretrain_synthetic.py --workdir runs/pretrain_synthetic
  python -m clipmg_jax.pretrain --config configs/pretrain_synthetic.py --workdir runs/x --config.total_steps=50

Cost: rendering the 42,032-frame corpus takes ~1 s per person and process (once; cached in the workdir as a 1.6 GB
.npz); the 4,000 steps of 256 take 72 s on an H200 and, at the ~1.1 s per step of 128 measured on the 2-core
development CPU, an estimated 2-3 hours there.
"""

import ml_collections

from clipmg_jax.data.synthetic import captions
from clipmg_jax.training import defaults
from configs import synthetic


def get_config() -> ml_collections.ConfigDict:
  config = defaults.base_config()
  config.seed = 0
  config.batch_size = 256  # contrastive: a larger batch gives each image more negatives
  config.total_steps = 4000  # ~26 epochs of the 39,144 pretraining frames
  config.log_every_steps = 200
  config.eval_every_steps = 0
  config.checkpoint.every_steps = 1000
  config.train_all_params = True  # from random initialisation: every parameter, the tower's stem included
  config.optimizer.learning_rate = 2e-3
  config.optimizer.warmup_steps = 200
  config.optimizer.weight_decay = 0.05
  config.optimizer.grad_clip_norm = 1.0

  config.model = ml_collections.ConfigDict(dict(
      vit=synthetic.get_config().model.vit.to_dict(),  # the benchmark's tower, so its checkpoint fits
      embed_dim=64, text_width=128,
      # The image embedding keeps every patch token in its place (contrastive.POOLS): the captioned attributes are
      # mostly positions (where each hand is), which the mean over the patch tokens erases; with it the loss stayed
      # at its uniform value (docs/results.md).
      pool="grid"))
  # Batches drawn with weight (frequency of the frame's right- and left-hand regions)^-0.5: more distinct captions
  # per batch, the rare hand positions seen more often (contrastive.balanced_order).
  # colour_jitter: each frame's RGB channels shuffled and scaled by gains in [1 - x, 1 + x] on the device
  # (contrastive.jitter_colours), so that clothes, skin and backdrop colours do not identify a person; 0 = off.
  # It is what makes the features carry to new people: the probe's hand-region reading went 29 % -> 59 % with it
  # (docs/results.md).
  config.data = ml_collections.ConfigDict(dict(image_size=synthetic.IMAGE_SIZE, shuffle_seed=0, balance_power=0.5,
                                               balance_attributes=("right_hand", "left_hand"), colour_jitter=0.4))
  # 408 people, 10,508 clips (24 per person on average: the plan gives 2-67 per video, median 21, of 2-26 classes)
  # x (3 frames in the clip + 1 between clips): 42,032 frames; the last 24 people (2,888
  # frames) are held out of pretraining for the linear probe, 39,144 frames of 384 people remain. With 40 people
  # the tower learnt the pretraining people's frames (in-batch accuracy 0.90) and nothing that carried to others.
  # The captions name what the body does (captions.GESTURE_ATTRIBUTES), not the person's clothes, hair or backdrop:
  # with those named, the tower learnt to match a batch by appearance and carried no hand positions (the first
  # pretraining, docs/results.md). The corpus keeps every attribute, for the linear probe.
  config.corpus = ml_collections.ConfigDict(dict(
      seed=1000, num_subjects=408, clips_per_subject=24, frames_per_clip=3, idle_frames_per_clip=1,
      probe_subjects=24,
      caption_attributes=captions.GESTURE_ATTRIBUTES,
      workers=0))  # rendering processes (0 = the CPU count, at most 8); the corpus does not depend on it
  return config
