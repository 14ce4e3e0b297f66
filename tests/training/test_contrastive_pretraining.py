"""Contrastive pretraining: the loss against a reference, and pretrain -> export -> load on the paper's path."""

import shutil

import jax
import ml_collections
import numpy as np
import pytest

from clipmg_jax.models import contrastive as contrastive_model
from clipmg_jax.training import contrastive
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
  shutil.copy(tmp_path / "a" / contrastive.CORPUS_FILE, tmp_path / "b")  # render once
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
