"""Contrastive pretraining: the loss against a reference, pretrain -> export -> load on the paper's path, and the
faults a run meets (a locked workdir, SIGTERM in set-up and in the final save)."""

import json
import os
import shutil
import socket

import jax
import ml_collections
import numpy as np
import pytest

import self_signal

from clipmg_jax.data.synthetic import captions
from clipmg_jax.models import contrastive as contrastive_model
from clipmg_jax.pretraining import contrastive
from clipmg_jax.run import preemption
from clipmg_jax.run import workdir_lock
from clipmg_jax.run import session as session_lib
from clipmg_jax.run.folder import RunFolder
from clipmg_jax.training import model_setup
from clipmg_jax.weights import hf_export
from configs import pretrain_synthetic
from configs import synthetic_pretrained


def _reference_loss(image, text, scale, tokens):
  """Symmetric cross-entropy with the target of each row spread over the rows with its caption (loops)."""
  logits = scale * image @ text.T
  n = len(tokens)
  total = 0.0
  for matrix in (logits, logits.T):
    for i in range(n):
      positives = [j for j in range(n) if tuple(tokens[j]) == tuple(tokens[i])]
      log_p = matrix[i] - np.log(np.sum(np.exp(matrix[i])))
      total -= np.mean([log_p[j] for j in positives]) / n
  return total / 2


@pytest.mark.parametrize("duplicates", [False, True])
def test_contrastive_loss_matches_reference(duplicates):
  rng = np.random.default_rng(0)
  image, text = rng.normal(size=(2, 6, 5))
  image /= np.linalg.norm(image, axis=1, keepdims=True)
  text /= np.linalg.norm(text, axis=1, keepdims=True)
  tokens = np.arange(6 * 3).reshape(6, 3)
  if duplicates:
    tokens[3], tokens[5] = tokens[0], tokens[0]  # three frames with one caption
  loss, accuracy = contrastive_model.contrastive_loss(image, text, 3.0, tokens)
  np.testing.assert_allclose(float(loss), _reference_loss(image, text, 3.0, tokens), rtol=1e-5)
  if not duplicates:  # the plain CLIP loss: cross-entropy of the diagonal, both ways
    logits = 3.0 * image @ text.T
    ce = lambda m: -np.mean(np.diag(m) - np.log(np.exp(m).sum(1)))
    np.testing.assert_allclose(float(loss), (ce(logits) + ce(logits.T)) / 2, rtol=1e-5)
  assert 0.0 <= float(accuracy) <= 1.0


def _config(steps, **overrides):
  config = pretrain_synthetic.get_config()
  config.batch_size = 8
  config.total_steps = steps
  config.log_every_steps = 1
  config.checkpoint.every_steps = 2
  config.optimizer.warmup_steps = 1
  config.corpus.update(num_subjects=2, clips_per_subject=1, probe_subjects=0)
  config.update(overrides)
  return config


@pytest.mark.slow
def test_pretrain_resumes_exactly_and_its_export_loads_into_the_pretrained_config(tmp_path):
  straight = contrastive.pretrain(_config(4), tmp_path / "a")
  (tmp_path / "b").mkdir()
  shutil.copy(RunFolder(tmp_path / "a").corpus_file, tmp_path / "b")  # render once
  assert contrastive.pretrain(_config(4, stop_after_step=2), tmp_path / "b") == ""
  resumed = contrastive.pretrain(_config(4), tmp_path / "b")
  with open(f"{straight}/{hf_export.WEIGHTS_FILE}", "rb") as a, open(f"{resumed}/{hf_export.WEIGHTS_FILE}", "rb") as b:
    assert a.read() == b.read(), "resuming from step 2 changed the exported tower"
  metrics = (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()
  assert len([m for m in metrics if '"loss"' in m]) == 4

  # The paper's path: the benchmark config loads the export through init.vit_checkpoint and freezes 2 of 3 blocks.
  config = synthetic_pretrained.get_config("visual_only")
  config.init.vit_checkpoint = straight
  model_setup.check_vision_init(config)
  bundle = model_setup.build_model(config.model)
  # Zeros of the model's parameter shapes (no compilation of the model): the loader replaces the tower's.
  shapes = jax.eval_shape(lambda r: model_setup.init_params(bundle, r, config.data.image_size), jax.random.key(0))
  params = model_setup.load_pretrained_vision(jax.tree.map(lambda x: jax.numpy.zeros(x.shape, x.dtype), shapes),
                                              config.init)
  from clipmg_jax.weights import load_clip_vision  # pylint: disable=import-outside-toplevel
  _, exported = load_clip_vision(straight)
  jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, params["vit"]), exported)
  mask = bundle.trainable_mask(params)["vit"]
  assert not any(jax.tree.leaves(mask["resblocks_0"])) and not any(jax.tree.leaves(mask["resblocks_1"]))
  assert all(jax.tree.leaves(mask["resblocks_2"])) and not any(jax.tree.leaves(mask["conv1"]))


def test_pretraining_takes_the_workdir_lock_and_finishes_its_final_save_and_export_on_sigterm(tmp_path, monkeypatch):
  # Held by a live process of this host: refused before anything is rendered.
  (tmp_path / "held").mkdir()
  RunFolder(tmp_path / "held").lock_file.write_text(json.dumps(
      {"host": socket.gethostname(), "pid": os.getppid(), "started": "earlier", "command": "pretrain"}))
  with pytest.raises(workdir_lock.WorkdirLockedError, match=f"process {os.getppid()}"):
    contrastive.pretrain(_config(2), tmp_path / "held")
  assert not RunFolder(tmp_path / "held").corpus_file.exists()

  with self_signal.sigterm_guard():
    # During set-up (rendering the corpus): stops at once with nothing to save, and the lock is released.
    monkeypatch.setattr(contrastive, "load_corpus", lambda *a, **k: self_signal.sigterm_self())
    with pytest.raises(preemption.Preempted, match="during set-up"):
      contrastive.pretrain(_config(2), tmp_path / "setup")
    assert not RunFolder(tmp_path / "setup").lock_file.exists()
    monkeypatch.undo()

    # During the final checkpoint write: the write and the export complete, and the run returns its export.
    self_signal.sigterm_when_saving(monkeypatch, 2)
    out = contrastive.pretrain(_config(2), tmp_path / "save")  # step 2 is the final save (the loop saves none)
  assert (tmp_path / "save" / "checkpoints" / "2").is_dir()
  assert (RunFolder(tmp_path / "save").export_dir / hf_export.WEIGHTS_FILE).is_file() and out.endswith("hf_vision")
  assert not RunFolder(tmp_path / "save").lock_file.exists()


def test_pretrained_config_needs_its_checkpoint_except_pose_only():
  config = synthetic_pretrained.get_config("full+extras")
  assert config.model.trainable_blocks == 1 and config.init.vit_checkpoint
  config.init.vit_checkpoint = ""
  with pytest.raises(model_setup.RandomVisionTowerError):
    model_setup.check_vision_init(config)
  model_setup.check_vision_init(synthetic_pretrained.get_config("pose_only"))
  # Everything but the tower's initialisation and freezing is the random-init benchmark's.
  base = __import__("configs.synthetic", fromlist=["get_config"]).get_config("full+extras")
  config = synthetic_pretrained.get_config("full+extras")
  config.model.trainable_blocks, config.init = base.model.trainable_blocks, base.init
  assert config.to_dict() == base.to_dict()
  assert isinstance(config, ml_collections.ConfigDict)


def test_balanced_order_draws_each_combination_by_its_count_to_the_minus_power():
  rng = np.random.default_rng(0)
  names = ("right_hand", "left_hand")
  columns = [captions.ATTRIBUTE_NAMES.index(n) for n in names]
  attributes = np.zeros((3000, len(captions.ATTRIBUTE_NAMES)), np.int32)
  # Three (right, left) combinations at 80 %, 15 % and 5 %; the other columns vary and must not matter.
  combos = rng.choice(3, 3000, p=[0.8, 0.15, 0.05])
  attributes[:, columns[0]] = combos
  attributes[:, columns[1]] = combos % 2
  attributes[:, captions.ATTRIBUTE_NAMES.index("backdrop")] = rng.integers(0, 6, 3000)
  assert contrastive.balanced_order(attributes, names, 0.0, seed=0) is None
  counts = np.bincount(combos, minlength=3)
  for power in (0.5, 1.0):
    order = contrastive.balanced_order(attributes, names, power, seed=0)
    assert order.shape == (3000,) and order.min() >= 0 and order.max() < 3000
    np.testing.assert_array_equal(order, contrastive.balanced_order(attributes, names, power, seed=0))
    drawn = np.bincount(combos[order], minlength=3) / 3000
    expected = counts * counts ** -power / np.sum(counts * counts ** -power)  # independent: per-combination mass
    np.testing.assert_allclose(drawn, expected, atol=0.03)
  assert abs(drawn[0] - 1 / 3) < 0.03  # power 1: every combination equally often


def test_colour_jitter_reorders_and_scales_each_images_channels():
  rng = np.random.default_rng(0)
  frames = rng.integers(0, 200, (64, 4, 4, 3)).astype(np.uint8)  # < 200: gains up to 1.25 do not clip
  np.testing.assert_array_equal(np.asarray(contrastive.jitter_colours(frames, jax.random.key(0), 0.0)), frames)
  out = np.asarray(contrastive.jitter_colours(frames, jax.random.key(1), 0.25))
  orders = set()
  for image, jittered in zip(frames.astype(np.float64), out.astype(np.float64)):
    # Each output channel is one input channel times one gain in [0.75, 1.25]; the three sources differ.
    sources = []
    for c in range(3):
      fits = [k for k in range(3) if np.allclose(jittered[..., c], image[..., k] * (jittered[..., c].sum()
                                                 / image[..., k].sum()), atol=1e-3)]
      assert len(fits) == 1
      gain = jittered[..., c].sum() / image[..., fits[0]].sum()
      assert 0.75 - 1e-6 <= gain <= 1.25 + 1e-6
      sources.append(fits[0])
    assert sorted(sources) == [0, 1, 2]
    orders.add(tuple(sources))
  assert len(orders) >= 4  # 64 images: the orders are drawn per image, not once per batch
  np.testing.assert_array_equal(out, np.asarray(contrastive.jitter_colours(frames, jax.random.key(1), 0.25)))


@pytest.mark.slow  # two compilations: 5-20 s on the 2-core CPU
def test_grid_pool_keeps_each_patch_token_in_its_place():
  assert pretrain_synthetic.get_config().model.pool == "grid"
  # A tower small enough to run eagerly in a second: 4 x 4 patches of 8 px.
  vision = dict(width=16, layers=1, heads=2, patch_size=8, image_size=32, mlp_dim=32, proj_dim=None)
  model = contrastive_model.ContrastiveModel(vision=vision, vocab_size=len(captions.VOCABULARY), pool="grid")
  images = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype(np.float32)
  tokens = np.ones((2, 3), np.int32)
  params = jax.jit(model.init)(jax.random.key(0), images, tokens)["params"]
  pool = jax.jit(lambda p, x: model.apply({"params": p}, x, method=lambda m, y: m.pooled(y)))
  pooled = pool(params, images)
  grid = (32 // 8) ** 2
  assert pooled.shape == (2, grid * contrastive_model.GRID_TOKEN_DIM)
  # Each block of GRID_TOKEN_DIM features is one patch token's: changing only the first 8 x 8 pixels (patch 0)
  # moves patch 0's block, which a mean over the tokens would mix into every feature.
  changed = images.copy()
  changed[:, :8, :8] += 3.0
  moved = pool(params, changed)
  delta = np.abs(np.asarray(moved - pooled)).reshape(2, grid, -1).max(axis=(0, 2))
  # (the one attention block spreads some of the change to the other tokens, far less of it)
  assert np.argmax(delta) == 0 and delta[0] > 3 * np.median(delta[1:]), delta
  with pytest.raises(ValueError, match="model.pool='max'"):
    jax.eval_shape(contrastive_model.ContrastiveModel(vision=vision, vocab_size=4, pool="max").init,
                   jax.random.key(0), images[:1], tokens[:1])


def test_pretrain_command_line_reaches_pretraining(tmp_path, monkeypatch):
  import importlib  # pylint: disable=import-outside-toplevel
  import sys  # pylint: disable=import-outside-toplevel
  from absl import flags  # pylint: disable=import-outside-toplevel
  # absl flags are process-wide, and other commands imported by this test process (predict, train) define
  # --config and --workdir too: set theirs aside while pretrain defines its own.
  saved = {name: flags.FLAGS[name] for name in ("config", "workdir") if name in flags.FLAGS}
  for name in saved:
    delattr(flags.FLAGS, name)
  calls = []
  monkeypatch.setattr(contrastive, "pretrain",
                      lambda config, workdir, session: calls.append((config, workdir, session)) or "")
  try:
    pretrain = importlib.reload(sys.modules["clipmg_jax.pretrain"]) if "clipmg_jax.pretrain" in sys.modules else \
        importlib.import_module("clipmg_jax.pretrain")
    flags.FLAGS(["pretrain", "--config=configs/pretrain_synthetic.py", f"--workdir={tmp_path}"])
    # What command.run does once the flags are parsed: the config read, the command's writing session opened.
    config = pretrain._CONFIG.value  # pylint: disable=protected-access
    with session_lib.Session(config, tmp_path, writes=True) as session:
      assert RunFolder(tmp_path).lock_file.is_file()  # the session holds the run folder
      pretrain.main(config, session)
  finally:
    flags.FLAGS.unparse_flags()
    for name in ("config", "workdir"):
      if name in flags.FLAGS:
        delattr(flags.FLAGS, name)
    for name, flag in saved.items():
      flags.FLAGS[name] = flag
  assert len(calls) == 1 and calls[0][0].to_dict() == pretrain_synthetic.get_config().to_dict()
  assert calls[0][1] == tmp_path and calls[0][2] is session


def test_probe_features_keep_regions_and_pixel_blocks():
  from studies import linear_probe as probe  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  tokens = rng.normal(size=(2, 49, 4)).astype(np.float32)
  regions = np.asarray(probe._region_means(tokens, 7)).reshape(2, 9, 4)  # pylint: disable=protected-access
  grid = tokens.reshape(2, 7, 7, 4)
  for cell, (rows, cols) in enumerate((r, c) for r in (range(0, 2), range(2, 5), range(5, 7))
                                      for c in (range(0, 2), range(2, 5), range(5, 7))):
    np.testing.assert_allclose(regions[:, cell], grid[:, rows][:, :, cols].mean(axis=(1, 2)), rtol=1e-5)
  images = rng.integers(0, 256, size=(1, 16, 16, 3), dtype=np.uint8)
  pixels = probe.pixel_features(images, block=8).reshape(2, 2, 3)
  np.testing.assert_allclose(pixels[1, 0], images[0, 8:, :8].reshape(-1, 3).mean(0), rtol=1e-5)
