"""Small stand-ins for the model and the data used by the training tests (fast on CPU).

TinyClipLike has ClipMG's call signature and a params tree with a "vit" subtree of "resblocks_<i>" blocks, so
freezing, sharding and checkpointing see the same kind of tree as with the real model.
"""

import flax.linen as nn
import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from clipmg_jax.data.data_source import DataSource
from clipmg_jax.training.model_setup import ModelBundle

NUM_CLASSES = 4
IMAGE_SIZE = 16
NUM_FRAMES = 2
NUM_POSE_FRAMES = 4


class TinyVit(nn.Module):
  width: int = 16
  layers: int = 2

  @nn.compact
  def __call__(self, x):
    x = nn.Dense(self.width, name="embed")(x)
    for i in range(self.layers):
      x = x + nn.Dense(self.width, name=f"resblocks_{i}")(nn.tanh(x))
    return x


class TinyClipLike(nn.Module):
  """frames float (B,T,H,W,3), keypoints (B,Tp,18,3) -> logits (B, NUM_CLASSES)."""
  num_classes: int = NUM_CLASSES

  @nn.compact
  def __call__(self, frames, keypoints, *, train: bool = False):
    b = frames.shape[0]
    pooled = frames.reshape(b, frames.shape[1], 4, frames.shape[2] // 4, 4, frames.shape[3] // 4, 3).mean((3, 5))
    visual = TinyVit(name="vit")(pooled.reshape(b, -1)) 
    pose = nn.Dense(16, name="pose")(keypoints.reshape(b, -1) / 16.0)
    x = jnp.concatenate([visual, pose], -1)
    x = nn.Dropout(0.1, deterministic=not train)(x)
    return nn.Dense(self.num_classes, name="head")(nn.gelu(x))


def tiny_trainable_mask(params):
  """Everything trainable except the vision tower's embedding and first block (like 'last blocks trainable')."""
  def is_trainable(path, _):
    keys = [getattr(k, "key", None) for k in path]
    return not (keys[0] == "vit" and keys[1] in ("embed", "resblocks_0"))
  return jax.tree_util.tree_map_with_path(is_trainable, params)


def tiny_model() -> ModelBundle:
  return ModelBundle(module=TinyClipLike(), trainable_mask=tiny_trainable_mask, num_frames=NUM_FRAMES,
                     num_pose_frames=NUM_POSE_FRAMES, num_classes=NUM_CLASSES)


def make_examples(n: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
  """Learnable toy clips: the class sets the mean brightness of the frames and shifts the keypoints."""
  rng = np.random.default_rng(seed)
  labels = rng.choice(NUM_CLASSES, size=n, p=[0.55, 0.25, 0.15, 0.05])
  out = []
  for i, y in enumerate(labels):
    frames = rng.integers(0, 60, (NUM_FRAMES, IMAGE_SIZE, IMAGE_SIZE, 3)) + 45 * y
    kp = rng.uniform(0, IMAGE_SIZE, (NUM_POSE_FRAMES, 18, 3)).astype(np.float32)
    kp[..., 0] += 2.0 * y
    kp[..., 2] = 1.0
    out.append(dict(frames=frames.astype(np.uint8), keypoints=kp, label=np.int32(y), subject=np.int32(i % 3),
                    clip_id=np.int32(i)))
  return out


def _stack(batch_list):
  return {k: np.stack([e[k] for e in batch_list]) for k in batch_list[0]}


def tiny_data(batch_size: int = 8, n_train: int = 64, n_eval: int = 20, eval_batch_size: int = 8,
              seed: int = 0, poison_step: int | None = None, n_val: int = 12) -> DataSource:
  """In-memory DataSource over Grain datasets (so the train iterator is checkpointable like the real one).

  Training clips have subjects 0-2 and clip ids from 0, test clips ids from 1000, validation clips (n_val; 0 = no
  validation split) subjects 10-11 and ids from 2000.
  poison_step: 1-based train step whose batch gets NaN keypoints (to test the non-finite-loss stop)."""
  train = make_examples(n_train, seed)
  evals = [dict(e, clip_id=np.int32(1000 + i)) for i, e in enumerate(make_examples(n_eval, seed + 1))]
  vals = [dict(e, clip_id=np.int32(2000 + i), subject=np.int32(10 + i % 2))
          for i, e in enumerate(make_examples(n_val, seed + 2))]
  counts = np.bincount([e["label"] for e in train], minlength=NUM_CLASSES)

  def train_iterator():
    ds = grain.MapDataset.source(train).shuffle(seed=seed).repeat(None).batch(batch_size, batch_fn=_stack)
    if poison_step is not None:
      def poison(i, batch):
        if i == poison_step - 1:
          batch = dict(batch, keypoints=np.full_like(batch["keypoints"], np.nan))
        return batch
      ds = ds.map_with_index(poison)
    return iter(ds.to_iter_dataset())

  def batches_of(examples):
    return lambda: [_stack(examples[i:i + eval_batch_size]) for i in range(0, len(examples), eval_batch_size)]

  info = {"validation": {"subjects": [10, 11] if n_val else [], "rule": "stand-in"}}
  return DataSource(train_iterator=train_iterator, eval_batches=batches_of(evals),
                    class_names=[f"c{i}" for i in range(NUM_CLASSES)], train_class_counts=counts,
                    image_size=IMAGE_SIZE, eval_batch_size=eval_batch_size, info=info,
                    validation_batches=batches_of(vals) if n_val else None)


def tiny_config(**overrides) -> ml_collections.ConfigDict:
  """A trainer config for the stand-ins (the same fields as configs/synthetic.py uses)."""
  from clipmg_jax.training import defaults  # pylint: disable=import-outside-toplevel
  config = defaults.base_config()
  config.batch_size = 8
  config.total_steps = 6
  config.log_every_steps = 1
  config.eval_every_steps = 3
  config.checkpoint.every_steps = 2
  config.optimizer.learning_rate = 3e-2
  config.optimizer.warmup_steps = 2
  config.loss.class_weighting = "sqrt_inverse"
  defaults.override(config, overrides)
  return config
