"""The shipped configs build every model variant, and derived data fields follow command-line style overrides."""

import pathlib
import sys

import jax
import pytest

from clipmg_jax.models import clipmg
from clipmg_jax.training import model_setup
from clipmg_jax.training import optimizer as optimizer_lib

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
from configs import imigue as imigue_config  # noqa: E402  pylint: disable=wrong-import-position
from configs import synthetic as synthetic_config  # noqa: E402  pylint: disable=wrong-import-position


@pytest.mark.parametrize("variant", clipmg.VARIANTS)
def test_synthetic_variants_build(variant):
  config = synthetic_config.get_config(variant)
  assert config.model.variant == variant
  bundle = model_setup.build_model(config.model)
  params = jax.eval_shape(lambda r: model_setup.init_params(bundle, r, config.data.image_size),
                          jax.random.PRNGKey(0))
  mask = bundle.trainable_mask(params)
  # All blocks are trainable; only the ViT stem (patch/position embeddings, ln_pre) is frozen by the model's mask
  # unless config.train_all_params is set.
  frozen = {jax.tree_util.keystr(k[:2]) for k, m in jax.tree_util.tree_leaves_with_path(mask) if not m}
  stem = {"['vit']['conv1']", "['vit']['class_embedding']", "['vit']['positional_embedding']", "['vit']['ln_pre']"}
  assert frozen <= stem
  assert ("vit" in params) == (variant != "pose_only")
  assert ("skeleton_encoder" in params) == (variant != "visual_only")


def test_imigue_is_the_paper_setup():
  config = imigue_config.get_config()
  assert (config.model.vit, config.model.num_frames, config.model.num_pose_frames) == ("B/16", 8, 32)
  assert config.model.trainable_blocks == 2 and config.data.image_size == 224
  bundle = model_setup.build_model(config.model)
  params = jax.eval_shape(lambda r: model_setup.init_params(bundle, r, 224), jax.random.PRNGKey(0))
  mask = bundle.trainable_mask(params)
  vit_total = optimizer_lib.count_params(params["vit"])
  vit_trainable = optimizer_lib.count_params(params["vit"], mask["vit"])
  assert 85e6 < vit_total < 87e6  # CLIP ViT-B/16 vision tower without the projection
  assert 14e6 < vit_trainable < 15e6  # the last 2 of 12 blocks (+ ln_post)


def test_data_fields_follow_overrides():
  config = synthetic_config.get_config()
  config.batch_size = 8
  config.model.num_frames = 4
  assert config.data.batch_size == 8 and config.data.num_frames == 4
