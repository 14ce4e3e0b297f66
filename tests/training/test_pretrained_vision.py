"""`init.vit_checkpoint`: a ported CLIP vision tower replaces params["vit"]; a mismatching one is a clear error."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import parity_worker
from clipmg_jax import weights
from clipmg_jax.models import vit as vit_lib
from clipmg_jax.training import model_setup


def _ported_tower(tmp_path, **field_overrides):
  fields = dict(parity_worker.tiny_model_config("full").vit, proj_dim=8, **field_overrides)
  tower = vit_lib.VisionTransformer(**fields)
  size = fields["image_size"]
  params = tower.init(jax.random.PRNGKey(7), jnp.zeros((1, size, size, 3)))["params"]
  weights.save_ported(str(tmp_path), fields, params)
  return params


def test_ported_tower_is_dropped_in(tmp_path):
  saved = _ported_tower(tmp_path)
  bundle = model_setup.build_model(parity_worker.tiny_model_config("full"))
  params = model_setup.init_params(bundle, jax.random.PRNGKey(0), parity_worker.IMAGE)
  loaded = model_setup.load_pretrained_vision(params, ml_collections.ConfigDict({"vit_checkpoint": str(tmp_path)}))
  assert "proj" not in loaded["vit"]  # CLIP's projection is not used by CLIP-MG
  for (path, got), want in zip(jax.tree_util.tree_leaves_with_path(loaded["vit"]),
                               jax.tree.leaves({k: v for k, v in saved.items() if k != "proj"})):
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want), err_msg=jax.tree_util.keystr(path))
  # Everything outside the tower keeps its fresh initialisation.
  others = [k for k in params if k != "vit"]
  assert others
  for a, b in zip(jax.tree.leaves({k: loaded[k] for k in others}), jax.tree.leaves({k: params[k] for k in others})):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_mismatching_tower_names_the_leaf(tmp_path):
  _ported_tower(tmp_path, width=24, mlp_dim=48)
  bundle = model_setup.build_model(parity_worker.tiny_model_config("full"))
  params = model_setup.init_params(bundle, jax.random.PRNGKey(0), parity_worker.IMAGE)
  with pytest.raises(ValueError, match="has shape"):
    model_setup.load_pretrained_vision(params, ml_collections.ConfigDict({"vit_checkpoint": str(tmp_path)}))
