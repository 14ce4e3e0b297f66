"""Contrastive pretraining of the vision tower on the captioned synthetic corpus, on the project's training machinery.

The pieces are the classifier's: trainer.Setup (mesh, trainable mask, AdamW, state shardings, the step-0 state),
the trainer's loop (logging, NaN checks, Orbax checkpoints with the Grain iterator position, resume), the metric
writer. What differs is the task: a model (clipmg_jax/models/contrastive.py) and a jitted step with the symmetric
contrastive loss, and an in-memory Grain source over the corpus. At the end the tower is exported as a Hugging Face
CLIPVisionModel checkpoint (<workdir>/hf_vision), the form in which real CLIP weights arrive.

The corpus's last `corpus.probe_subjects` people are held out of pretraining, for the linear probe
(studies/linear_probe.py) to test on people the tower never saw.
"""

import logging
import os
import pathlib
from typing import Any, Callable

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from clipmg_jax.data.data_source import DataSource
from clipmg_jax.data.synthetic import captions
from clipmg_jax.models import contrastive as contrastive_model
from clipmg_jax.models import flops
from clipmg_jax.run import distributed
from clipmg_jax.run import preemption
from clipmg_jax.run import session as session_lib
from clipmg_jax.run.folder import RunFolder
from clipmg_jax.training import model_setup
from clipmg_jax.training import sharding as sharding_lib
from clipmg_jax.training import trainer
from clipmg_jax.training import writers
from clipmg_jax.training.train_state import TrainState
from clipmg_jax.weights import hf_export



def build_model(config: ml_collections.ConfigDict) -> model_setup.ModelBundle:
  """The contrastive model of `config.model` (vit fields, embed_dim, text_width, pool); every parameter is
  trained."""
  module = contrastive_model.ContrastiveModel(vision=dict(config.model.vit), vocab_size=len(captions.VOCABULARY),
                                              embed_dim=int(config.model.embed_dim),
                                              text_width=int(config.model.text_width),
                                              pool=str(config.model.get("pool", "mean")))
  num_tokens = len(config.corpus.caption_attributes)
  return model_setup.ModelBundle(
      module=module, trainable_mask=lambda params: jax.tree.map(lambda _: True, params), num_frames=1,
      num_pose_frames=0, num_classes=0,
      example_inputs=lambda size: (jnp.zeros((1, size, size, 3), jnp.float32), jnp.zeros((1, num_tokens), jnp.int32)))


# The 6 orders of the RGB channels, for jitter_colours.
_CHANNEL_ORDERS = np.array([[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]], np.int32)


def jitter_colours(frames: jax.Array, key: jax.Array, strength: float) -> jax.Array:
  """uint8 (B, H, W, 3) -> float32 (B, H, W, 3) in [0, 255]: each image's channels in a random order, each channel
  scaled by a random gain in [1 - strength, 1 + strength]; strength 0 returns the frames unchanged (as floats).

  Why: a synthetic person's shirt, skin, hair and backdrop colours are the same in all of their frames, so with few
  people the tower can match a frame to its caption by who is in it; with colours shuffled per image, what stays
  constant across a person's frames is shape and position, which is what the captions name."""
  x = frames.astype(jnp.float32)
  if strength == 0:
    return x
  order_key, gain_key = jax.random.split(key)
  orders = jnp.asarray(_CHANNEL_ORDERS)[jax.random.randint(order_key, (x.shape[0],), 0, len(_CHANNEL_ORDERS))]
  x = jnp.take_along_axis(x, orders[:, None, None, :], axis=-1)
  gains = 1.0 + strength * jax.random.uniform(gain_key, (x.shape[0], 1, 1, 3), minval=-1.0, maxval=1.0)
  return jnp.clip(x * gains, 0.0, 255.0)


def make_train_step(model, tx: optax.GradientTransformation, schedule: optax.Schedule, *, mesh: jax.sharding.Mesh,
                    state_sharding: Any, normalize: Callable[[jax.Array], jax.Array], colour_jitter: float = 0.0,
                    seed: int = 0):
  """step(state, batch) -> (state, metrics), jitted over the mesh like step.make_train_step; state is donated.

  batch: frames uint8 (B, H, W, 3), tokens int32 (B, L). normalize: uint8 frames -> the tower's input
  (ModelBundle.normalize). metrics: loss, accuracy (image-to-caption top-1 in the
  batch), grad_norm, learning_rate, logit_scale. colour_jitter > 0 recolours each frame (jitter_colours) with a key
  folded from `seed` and the step number, so a resumed run draws the same colours."""

  def step(state: TrainState, batch):
    frames = jitter_colours(batch["frames"], jax.random.fold_in(jax.random.key(seed), state.step), colour_jitter)

    def loss_fn(params):
      image, text, scale = model.apply({"params": params}, normalize(frames), batch["tokens"], train=True)
      loss, accuracy = contrastive_model.contrastive_loss(image, text, scale, batch["tokens"])
      return loss, (accuracy, scale)

    (loss, (accuracy, scale)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    metrics = dict(loss=loss, accuracy=accuracy, grad_norm=optax.tree.norm(grads),
                   learning_rate=jnp.asarray(schedule(state.step), jnp.float32), logit_scale=scale)
    new_state = state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                              opt_state=opt_state)
    return new_state, metrics

  return jax.jit(step, in_shardings=(state_sharding, sharding_lib.batch_sharding(mesh)),
                 out_shardings=(state_sharding, sharding_lib.replicated(mesh)), donate_argnums=(0,))


class _CorpusSource:
  """Random access to (image, caption tokens) pairs of a Corpus, for grain.MapDataset.source."""

  def __init__(self, corpus: captions.Corpus, names, order: np.ndarray | None = None):
    self.images, self.tokens = corpus.images, corpus.caption_tokens(names)
    if order is not None:  # a resampled order of the examples (balanced_order)
      self.images, self.tokens = self.images[order], self.tokens[order]

  def __len__(self) -> int:
    return len(self.images)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    return {"frames": self.images[index], "tokens": self.tokens[index]}


def balanced_order(attributes: np.ndarray, names, power: float, seed: int) -> np.ndarray | None:
  """Indices (N,) of a resample of the N examples, each drawn with weight count(its values of `names`)^-power;
  None when power is 0 (every example once).

  Most frames show the hands resting (54 % of right-hand regions): batches drawn uniformly repeat a few captions,
  which the contrastive loss cannot tell apart, and the rare positions are seen a few times per epoch. power=1
  draws every combination equally often, 0.5 halfway (in log-frequency) between that and the corpus."""
  if power == 0:
    return None
  columns = attributes[:, [captions.ATTRIBUTE_NAMES.index(n) for n in names]]
  _, inverse, counts = np.unique(columns, axis=0, return_inverse=True, return_counts=True)
  weights = counts[inverse.reshape(-1)].astype(np.float64) ** -float(power)
  return np.random.default_rng(seed).choice(len(attributes), len(attributes), replace=True, p=weights / weights.sum())


def make_data_source(corpus: captions.Corpus, config: ml_collections.ConfigDict) -> DataSource:
  """Shuffled, repeated batches of the corpus (a checkpointable Grain iterator); no evaluation split. The captions
  name the attributes config.corpus.caption_attributes; with config.data.balance_power > 0 the examples are first
  resampled by balanced_order over config.data.balance_attributes."""
  local_batch = int(config.batch_size) // jax.process_count()
  order = balanced_order(corpus.attributes, tuple(config.data.get("balance_attributes", ())),
                         float(config.data.get("balance_power", 0.0)), int(config.data.shuffle_seed))
  source = _CorpusSource(corpus, tuple(config.corpus.caption_attributes), order)
  ds = grain.MapDataset.source(source).seed(int(config.data.shuffle_seed)).shuffle().repeat()
  ds = ds[jax.process_index()::jax.process_count()].batch(local_batch, drop_remainder=True)
  return DataSource(train_iterator=lambda: iter(ds.to_iter_dataset()), eval_batches=lambda: [], class_names=[],
                    train_class_counts=None, image_size=int(corpus.images.shape[1]), eval_batch_size=local_batch,
                    info=dict(corpus_images=len(corpus), corpus_subjects=sorted(set(corpus.subjects.tolist()))))


def load_corpus(corpus_config: ml_collections.ConfigDict, image_size: int, path: str | pathlib.Path,
                progress: bool = True) -> captions.Corpus:
  """The corpus of `corpus_config`, rendered once (in corpus_config.workers processes; 0 = the CPU count, at most 8)
  and cached at `path` (an .npz that records its settings)."""
  path = pathlib.Path(path)
  settings = dict(seed=int(corpus_config.seed), num_subjects=int(corpus_config.num_subjects),
                  clips_per_subject=int(corpus_config.clips_per_subject),
                  frames_per_clip=int(corpus_config.frames_per_clip),
                  idle_frames_per_clip=int(corpus_config.idle_frames_per_clip), image_size=int(image_size))
  key = np.asarray(sorted(settings.items()), dtype=object).astype(str)
  if path.is_file():
    with np.load(path) as cached:
      if np.array_equal(cached["settings"], key):
        return captions.Corpus(images=cached["images"], tokens=cached["tokens"], attributes=cached["attributes"],
                               subjects=cached["subjects"])
    logging.warning("%s was made with other settings; rendering the corpus again", path)
  workers = int(corpus_config.get("workers", 0)) or min(os.cpu_count() or 1, 8)
  corpus = captions.make_corpus(**settings, progress=progress, workers=workers)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_suffix(".tmp.npz")
  np.savez(tmp, settings=key, images=corpus.images, tokens=corpus.tokens, attributes=corpus.attributes,
           subjects=corpus.subjects)
  tmp.replace(path)
  return corpus


def split_people(corpus: captions.Corpus, probe_subjects: int) -> tuple[captions.Corpus, captions.Corpus]:
  """(pretraining part, held-out part): the last `probe_subjects` people (by id) are held out."""
  people = sorted(set(corpus.subjects.tolist()))
  if not 0 <= probe_subjects < len(people):
    raise ValueError(f"corpus.probe_subjects={probe_subjects} must be in [0, {len(people)}) (people in the corpus)")
  held = np.isin(corpus.subjects, people[len(people) - probe_subjects:])
  return corpus.select(~held), corpus.select(held)


def pretrain(config: ml_collections.ConfigDict, workdir: str | pathlib.Path, *,
             session: session_lib.Session | None = None) -> str:
  """Pretrains (resuming from <workdir>/checkpoints), exports the tower; returns the export directory, or "" when
  stopped early by config.stop_after_step.

  As the classifier's training, inside the command's writing session (or one of its own, run/session.py): the
  workdir is locked (a second pretraining on it stops with WorkdirLockedError), a SIGTERM during set-up stops with
  nothing to save, one during the loop saves a checkpoint and raises preemption.Preempted. One during the final save
  or the export (a second or so) lets them finish, so that a stop never leaves a half-written export.
  """
  with session_lib.writing(config, workdir, session) as session:
    return _pretrain(config, session.folder, session.watch)


def _pretrain(config: ml_collections.ConfigDict, folder: RunFolder, watch: preemption.Watch) -> str:
  with watch.stops_at_once(preemption.SETUP):
    corpus = load_corpus(config.corpus, config.data.image_size, folder.corpus_file)
    train_part, _ = split_people(corpus, int(config.corpus.probe_subjects))
    data = make_data_source(train_part, config)
    setup = trainer.Setup(config, data, build_model(config))
    logging.info("contrastive pretraining: %d images of %d people; %.2fM parameters", len(train_part),
                 len(data.info["corpus_subjects"]), flops.count_params(setup.abstract_state.params) / 1e6)
    if jax.process_index() == 0:
      folder.config_file.write_text(config.to_json_best_effort(indent=1))
    ckpt = setup.checkpointer(folder)
    try:
      train_iter = data.train_iterator()
      if ckpt.latest_step() is not None:
        state = ckpt.restore(setup.abstract_state, train_iter)
        logging.info("resuming from step %d (%s)", int(state.step), ckpt.directory)
      else:
        state = setup.fresh_state()
      train_step = distributed.compiled_together(make_train_step(
          setup.model.module, setup.tx, setup.schedule, mesh=setup.mesh, state_sharding=setup.state_sharding,
          normalize=setup.model.normalize, colour_jitter=float(config.data.get("colour_jitter", 0.0)),
          seed=int(config.seed)), "pretrain_step")
    except BaseException:
      ckpt.close()
      raise
  writer = writers.MetricWriter(folder, enabled=jax.process_index() == 0)
  bar = trainer.progress_bar(setup, int(state.step), "pretrain")
  out = folder.export_dir
  try:
    # The classifier's loop: it calls only train_step, the checkpointer and the writer (no validation split here).
    with watch.deferred():  # a preemption signal saves a checkpoint, as in the classifier's training
      state, stopped = trainer.train_loop(setup, state, train_step, trainer.LoopIO(
          train_iter=train_iter, ckpt=ckpt, writer=writer, bar=bar, watch=watch))
      if stopped:
        return ""
      if ckpt.latest_step() != int(state.step):
        ckpt.save(int(state.step), state, train_iter)
      if jax.process_index() == 0:
        hf_export.save_hf_vision(out, dict(config.model.vit), jax.device_get(state.params["vit"]))
        logging.info("exported the vision tower (Hugging Face CLIPVisionModel layout) to %s", out)
  finally:
    bar.close()
    writer.close()
    ckpt.close()
  if watch.signalled:
    logging.warning("preempted (SIGTERM) after the last step: the final checkpoint and the export were completed")
  return str(out)
