"""What a trained model sees and does on one clip: read a clip, and collect the values the forward pass used (the
"intermediates" ClipMG sows) next to the heatmaps its skeleton tower renders; the run itself comes from
runs.load_run.

Used by `python -m clipmg_jax.inspect_clip` and by the notebooks in notebooks/. Nothing here runs a second copy of
the model: `look_inside` calls the model once with the "intermediates" collection mutable and reads back what it
sowed.
"""

import copy
import functools
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from clipmg_jax.data import input_setup
from clipmg_jax.data import pose_corruption
from clipmg_jax.data.loader import pipeline
from clipmg_jax.data.records import example_codec
from clipmg_jax.data.records import manifest as manifest_lib
from clipmg_jax.models import clipmg_config
from clipmg_jax.models import skeleton as skeleton_lib
from clipmg_jax.models import variants
from clipmg_jax.models import vit
from clipmg_jax.run.folder import RunFolder
from clipmg_jax.training import evaluation
from clipmg_jax.training import metrics
from clipmg_jax.training import runs
from clipmg_jax.training import trainer


def ensure_trained(config: ml_collections.ConfigDict, workdir: str | pathlib.Path, steps: int) -> bool:
  """Trains a short run of `steps` steps into <workdir> when it holds no checkpoint (a stand-in for the main job's
  run, so that the notebooks have a model to look at). Returns whether it trained."""
  if RunFolder.of(workdir).checkpoint_steps():
    return False
  short = copy.deepcopy(config)
  short.total_steps = min(int(steps), int(config.total_steps))
  short.eval_every_steps = short.checkpoint.every_steps = short.total_steps
  import matplotlib  # pylint: disable=import-outside-toplevel
  backend = matplotlib.get_backend()
  try:
    trainer.train_and_evaluate(short, workdir, input_setup.make_data_source(short, workdir))
  finally:
    # Writing eval.json's plots selects the Agg backend; a notebook's inline figures need theirs back.
    matplotlib.use(backend)
  return True


def _split_records(data_config: ml_collections.ConfigDict, split: str) -> tuple[str, np.ndarray | None]:
  """(shard split, record indexes or None = all) of a split name: a shard split, or "validation" (the held-out
  subjects' records of the train split)."""
  if split != "validation":
    return split, None
  manifest = manifest_lib.read(data_config.shards_dir)
  _, _, val_records, _ = input_setup.split_validation(data_config, manifest)
  if val_records is None:
    raise ValueError("no validation split: config.data.validation selects no subjects")
  return data_config.train_split, val_records


def clip_table(data_config: ml_collections.ConfigDict, split: str) -> dict[str, np.ndarray]:
  """clip_id, label and subject (int64 (N,)) of every record of `split`, in record order, plus "record" (index)."""
  shard_split, records = _split_records(data_config, split)
  source = pipeline.make_source(data_config, shard_split)
  records = np.arange(len(source)) if records is None else records
  rows = [example_codec.decode_metadata(example_codec.parse(source[int(i)])) for i in records]
  return {"record": np.asarray(records, np.int64),
          **{k: np.asarray([r[k] for r in rows], np.int64) for k in ("clip_id", "label", "subject")}}


def read_clip(data_config: ml_collections.ConfigDict, split: str, clip_id: int | None = None, *,
              record: int | None = None, rng: np.random.Generator | None = None) -> dict[str, np.ndarray]:
  """One clip of `split` as the model gets it (the evaluation transform, or training's with `rng`), with a batch
  axis of 1: frames uint8 (1, T, S, S, 3), keypoints (1, T_p, 18, 3), label, subject, clip_id (1,).

  Pass clip_id (a record's clip_id, video_id * 100000 + label_id) or record (its index in the shard split).
  """
  shard_split, _ = _split_records(data_config, split)
  source = pipeline.make_source(data_config, shard_split)
  if record is None:
    if clip_id is None:
      raise ValueError("read_clip needs a clip_id or a record index")
    table = clip_table(data_config, split)
    found = np.flatnonzero(table["clip_id"] == clip_id)
    if not len(found):
      raise KeyError(f"clip_id {clip_id} is not in split {split!r} of {data_config.shards_dir} "
                     f"(it has {len(table['clip_id'])} clips, e.g. {table['clip_id'][:5].tolist()})")
    record = int(table["record"][found[0]])
  example = pipeline.ClipDecoder(data_config, source, train=rng is not None).decode(source[int(record)], rng)
  example.pop("mask")
  return {k: np.asarray(v)[None] for k, v in example.items()}


def render_heatmaps(model_config: ml_collections.ConfigDict, keypoints: Any, frame_size: tuple[int, int]) -> np.ndarray:
  """The joint heatmaps the skeleton tower convolves, with the model's resolution, sigma and confidence threshold:
  keypoints (..., 18, 3) -> float32 (..., R, R, 18). (The default "separable" stem computes its convolution from
  these heatmaps' row and column factors without building them; tests/models/test_skeleton_formulations.py.)"""
  return np.asarray(skeleton_lib.render_heatmaps(
      jnp.asarray(keypoints, jnp.float32), frame_size, resolution=model_config.heatmap.resolution,
      sigma=model_config.heatmap.sigma, confidence_threshold=model_config.confidence_threshold))


def drop_keypoints(clip: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """The clip with every joint missing (confidence 0, at (0, 0)): what the model does without a pose estimate."""
  return dict(clip, keypoints=np.zeros_like(clip["keypoints"]))


def _apply_with_intermediates(module, params, frames, keypoints):
  logits, state = module.apply({"params": params}, vit.normalize_images(frames), keypoints, train=False,
                               mutable=["intermediates"])
  return logits, state.get("intermediates", {})


def look_inside(run: runs.Run, clip: dict[str, np.ndarray]) -> dict[str, Any]:
  """Applies the model once to a clip of `read_clip` (batch of 1) and returns numpy values, without the batch axis:

    logits, probabilities (C,); frames uint8 (T, S, S, 3); keypoints (T_p, 18, 3); heatmaps (T_p, R, R, 18);
    grid (rows, cols) of the ViT's patches; and what the forward pass used, where the variant has it:
    reliability (T,), gate (T,), patch_weights (T, rows, cols), attention (H, T, rows, cols) = each head's
    cross-attention weight on each frame's patch tokens (sums to 1 per head).
  """
  frames = jnp.asarray(clip["frames"])
  keypoints = jnp.asarray(clip["keypoints"], jnp.float32)
  if run.apply is None:  # compiled once per run and input shape
    run.apply = jax.jit(functools.partial(_apply_with_intermediates, run.model))
  logits, sown = run.apply(run.params, frames, keypoints)
  cfg = run.config.model
  t, size = frames.shape[1], frames.shape[2]
  out = {"logits": np.asarray(logits[0]), "probabilities": metrics.softmax(logits[0]),
         "frames": np.asarray(clip["frames"][0]), "keypoints": np.asarray(clip["keypoints"][0]),
         "heatmaps": render_heatmaps(cfg, keypoints[0], (size, size))}
  if variants.uses(cfg.variant).vision:
    patch = clipmg_config.vit_fields(cfg)["patch_size"]
    out["grid"] = (size // patch, size // patch)
  first = lambda key: np.asarray(sown[key][0][0])
  if "reliability" in sown:
    out["reliability"] = first("reliability")
  if "gate_values" in sown:
    out["gate"] = first("gate_values")
  if "patch_weights" in sown:
    out["patch_weights"] = first("patch_weights").reshape(t, *out["grid"])
  if "cross_attention" in sown:
    weights = np.asarray(sown["cross_attention"]["attention_weights"][0][0])  # (H, T * P)
    out["attention"] = weights.reshape(weights.shape[0], t, *out["grid"])
  return out


def split_batches(run: runs.Run, split: str = "test"):
  """The evaluation batches of `split` ("test", "validation" or a shard split) for `run`, read lazily."""
  data_config = run.config.data
  shard_split, records = _split_records(data_config, split)
  return pipeline.make_dataset(data_config, shard_split, train=False, records=records)


def predict_split(run: runs.Run, split: str = "test", *, without_keypoints: bool = False,
                  corruption: ml_collections.ConfigDict | None = None, progress: bool = True,
                  batches=None) -> dict[str, np.ndarray]:
  """logits (N, C), label, subject, clip_id (N,) and the per-window pose values (N, T) of every clip of `split`
  ("test", "validation" or a shard split), by the trainer's eval step; with `without_keypoints`, every joint of
  every clip is dropped first (drop_keypoints); with `corruption` (a config.eval_corruption), the keypoints are
  corrupted first (pose_corruption.py). `batches`: the split's batches already read (split_batches, kept in a list
  by a caller that scores the split several times), instead of reading them."""
  if batches is None:
    batches = split_batches(run, split)
  if without_keypoints:
    batches = map(drop_keypoints, batches)
  batches = pose_corruption.corrupted(batches, corruption)
  return evaluation.predict(run.params, run.setup.eval_step, batches, run.setup.mesh,
                            run.setup.data.eval_batch_size, progress=progress)
