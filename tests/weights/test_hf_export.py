"""Export of a Flax tower as a Hugging Face CLIPVisionModel checkpoint, checked with transformers itself."""

import importlib.util
import os
import pathlib

import jax
import numpy as np
import pytest

from clipmg_jax import weights
from clipmg_jax.models import vit
from clipmg_jax.weights import hf_export

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

SYNTHETIC_TOWER = dict(width=96, layers=3, heads=4, patch_size=16, image_size=112, mlp_dim=384, proj_dim=None)


def _random_tower(config, seed=0):
  model = vit.make_vit(config)
  params = model.init(jax.random.key(seed), np.zeros((1, config["image_size"], config["image_size"], 3), np.float32))
  # Noise on every leaf, so LayerNorm scales and zero biases are not trivially 1 or 0 in the comparison.
  leaves, tree = jax.tree.flatten(params["params"])
  keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
  return model, jax.tree.unflatten(tree, [x + 0.05 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])


# The synthetic benchmark's tower with fewer blocks and pixels (the keys per block and the layout are the same; the
# full-size export is read back in tests/training/test_contrastive_pretraining.py), with and without a projection.
@pytest.mark.slow
@pytest.mark.parametrize("config", [dict(SYNTHETIC_TOWER, layers=2, image_size=48),
                                    dict(SYNTHETIC_TOWER, layers=1, image_size=32, proj_dim=8)])
def test_exported_tower_is_read_by_transformers_and_load_clip_vision(tmp_path, config):
  model, params = _random_tower(config)
  out = hf_export.save_hf_vision(tmp_path / "hf", config, params)
  umask = os.umask(0)
  os.umask(umask)
  # Shared like any file this user writes (the writer alone would leave it 0600).
  assert (pathlib.Path(out) / hf_export.WEIGHTS_FILE).stat().st_mode & 0o777 == 0o666 & ~umask

  # The project's reader gets every leaf back exactly, with the same ViT config.
  loaded_model, loaded = weights.load_clip_vision(out)
  assert {k: getattr(loaded_model, k) for k in config} == config
  jax.tree.map(np.testing.assert_array_equal, loaded, jax.tree.map(np.asarray, params))

  # transformers reads the directory as a checkpoint of its own, with no missing or unexpected key...
  cls = transformers.CLIPVisionModelWithProjection if config["proj_dim"] else transformers.CLIPVisionModel
  hf_model, info = cls.from_pretrained(out, output_loading_info=True)
  assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
  # ...and computes what the Flax tower computes.
  images = np.random.default_rng(0).normal(size=(2, config["image_size"], config["image_size"], 3)).astype(np.float32)
  ours = model.apply({"params": params}, images)
  with torch.no_grad():
    theirs = hf_model.eval()(pixel_values=torch.from_numpy(images.transpose(0, 3, 1, 2)))
  np.testing.assert_allclose(theirs.last_hidden_state.numpy(), np.asarray(ours["last_hidden_state"]), atol=1e-4)
  if config["proj_dim"]:
    np.testing.assert_allclose(theirs.image_embeds.numpy(), np.asarray(ours["embedding"]), atol=1e-4)
  else:
    np.testing.assert_allclose(theirs.pooler_output.numpy(), np.asarray(ours["pooled"]), atol=1e-4)


def test_port_clip_script_reads_the_export(tmp_path):
  _, params = _random_tower(SYNTHETIC_TOWER)
  out = hf_export.save_hf_vision(tmp_path / "hf", SYNTHETIC_TOWER, params)
  # The script users run on a downloaded CLIP, in process (a subprocess would import jax and torch again).
  spec = importlib.util.spec_from_file_location(
      "port_clip", pathlib.Path(__file__).resolve().parents[2] / "data_prep" / "port_clip.py")
  port_clip = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(port_clip)
  port_clip.main([f"--checkpoint={out}", f"--out={tmp_path / 'ported'}"])
  _, ported = weights.load_clip_vision(str(tmp_path / "ported"))
  jax.tree.map(np.testing.assert_array_equal, ported, jax.tree.map(np.asarray, params))


ASSETS = pathlib.Path(__file__).resolve().parents[2] / "assets" / "synthetic_tower"


@pytest.mark.slow  # transformers reads the checkpoint: ~5-20 s
def test_shipped_tower_is_a_transformers_checkpoint_that_fits_the_pretrained_config():
  from configs import synthetic, synthetic_pretrained  # pylint: disable=import-outside-toplevel
  assert pathlib.Path(synthetic_pretrained.get_config().init.vit_checkpoint) == ASSETS
  model, params = weights.load_clip_vision(ASSETS)
  # The benchmark's tower: the same ViT fields as configs/synthetic.py, so init.vit_checkpoint can load it.
  assert {k: getattr(model, k) for k in SYNTHETIC_TOWER} == dict(synthetic.get_config().model.vit)
  hf_model, info = transformers.CLIPVisionModel.from_pretrained(ASSETS, output_loading_info=True)
  assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
  images = np.random.default_rng(0).normal(size=(2, 112, 112, 3)).astype(np.float32)
  with torch.no_grad():
    theirs = hf_model.eval()(pixel_values=torch.from_numpy(images.transpose(0, 3, 1, 2)))
  ours = model.apply({"params": params}, images)
  np.testing.assert_allclose(theirs.last_hidden_state.numpy(), np.asarray(ours["last_hidden_state"]), atol=1e-4)
