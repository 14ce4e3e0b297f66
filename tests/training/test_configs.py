"""The shipped configs: configs/imigue.py is exactly the paper's setup (table-driven), the extras are an explicit
option, every variant builds, a frozen random vision tower stops the run at once, and derived data fields follow
command-line style overrides."""

import copy
import dataclasses
import os
import pathlib
import subprocess
import sys
import time

import jax
import pytest

from clipmg_jax.models import clipmg
from clipmg_jax.models import flops
from clipmg_jax.models import variants
from clipmg_jax.training import defaults
from clipmg_jax.training import model_setup
from clipmg_jax.training import setup as setup_lib
from configs import imigue as imigue_config
from configs import synthetic as synthetic_config

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]

# Every setting of the paper (CLIP-MG, arXiv 2506.16385) as docs/method.md describes it, by config path. A change to
# configs/imigue.py, to clipmg.get_model_config's defaults or to the pipeline's that moves any of them fails here.
PAPER = {
    # inputs
    "model.vit": "B/16",  # CLIP ViT-B/16, patch 16
    "data.image_size": 224,
    "model.num_frames": 8, "data.num_frames": 8,  # RGB frames per clip
    "model.num_pose_frames": 32, "data.num_pose_frames": 32,  # OpenPose frames per clip
    "model.num_joints": 18,  # COCO-18
    "model.num_classes": 32,
    # skeleton branch
    "model.heatmap.resolution": 256,
    "model.heatmap.sigma": 2.5,
    "model.skeleton.features": (64, 128, 256),  # 3D-CNN widths
    "model.skeleton.embed_dim": 512,
    # fine-tuning: the last 2 CLIP blocks, the rest frozen
    "model.trainable_blocks": 2,
    "train_all_params": False,
    # head: the pooled vector alone; no auxiliary pose head
    "model.head.pose_context": False,
    "model.head.pose_aux_weight": 0.0,
    # loss: plain cross-entropy
    "loss.class_weighting": "none",
    "loss.logit_adjustment_tau": 0.0,
    "loss.label_smoothing": 0.0,
}


def _get(config, path):
  for key in path.split("."):
    config = config[key]
  return config


def _set(config, path, value):
  *parents, leaf = path.split(".")
  for key in parents:
    config = config[key]
  config[leaf] = value


def _plain(value):
  return tuple(_plain(v) for v in value) if isinstance(value, (list, tuple)) else value


def paper_mismatches(config) -> dict:
  """{path: (found, paper value)} for every PAPER setting that `config` does not have."""
  return {path: (_plain(_get(config, path)), want) for path, want in PAPER.items()
          if _plain(_get(config, path)) != want}


def _changed(value):
  """Some other value of the same kind."""
  if isinstance(value, bool):
    return not value
  if isinstance(value, (int, float)):
    return value + 1
  if isinstance(value, tuple):
    return tuple(v * 2 for v in value)
  return {"B/16": "L/14", "none": "sqrt_inverse"}.get(value, value + "_changed")


@pytest.mark.parametrize("variant", clipmg.VARIANTS)
def test_imigue_every_variant_is_the_paper_setup(variant):
  config = imigue_config.get_config(variant)
  assert config.model.variant == variant
  assert paper_mismatches(config) == {}


@pytest.mark.parametrize("path", sorted(PAPER))
def test_changing_any_paper_setting_is_caught(path):
  """The table check is live for every entry: a config with that one setting changed fails it, naming it."""
  config = copy.deepcopy(imigue_config.get_config())
  _set(config, path, _changed(PAPER[path]))
  assert path in paper_mismatches(config)


def test_extras_are_a_named_option():
  extras = imigue_config.get_config("no_gate+extras")
  assert extras.model.variant == "no_gate"
  assert paper_mismatches(extras) == {"model.head.pose_context": (True, False),
                                      "model.head.pose_aux_weight": (1.0, 0.0)}
  # configs/synthetic.py keeps what works best there (its docstring says so); `:full` is the paper's model on it.
  assert synthetic_config.get_config().model.head.pose_aux_weight == variants.EXTRAS["head.pose_aux_weight"]
  plain = synthetic_config.get_config("full").model.head
  assert plain.pose_context is False and plain.pose_aux_weight == 0.0
  with pytest.raises(ValueError, match="extras"):
    imigue_config.get_config("full_plus")


def test_imigue_tower_is_clip_b16_with_two_trainable_blocks():
  config = imigue_config.get_config()
  bundle = model_setup.build_model(config.model)
  params = jax.eval_shape(lambda r: model_setup.init_params(bundle, r, 224), jax.random.PRNGKey(0))
  mask = bundle.trainable_mask(params)
  vit_total = flops.count_params(params["vit"])
  vit_trainable = flops.count_params(params["vit"], mask["vit"])
  assert 85e6 < vit_total < 87e6  # CLIP ViT-B/16 vision tower without the projection
  assert 14e6 < vit_trainable < 15e6  # the last 2 of 12 blocks (+ ln_post)
  assert "pose_aux_head" not in params and "context" not in params["head"]


def test_frozen_random_tower_is_refused_unless_allowed():
  config = imigue_config.get_config()
  with pytest.raises(model_setup.RandomVisionTowerError, match=r"init\.vit_checkpoint.*data_prep/port_clip\.py"):
    model_setup.check_vision_init(config)
  model_setup.check_vision_init(imigue_config.get_config("pose_only"))  # no vision tower
  for override in ({"init.allow_random_vit": True}, {"init.vit_checkpoint": "/models/clip_b16"},
                   {"train_all_params": True}):
    allowed = copy.deepcopy(config)
    for path, value in override.items():
      _set(allowed, path, value)
    model_setup.check_vision_init(allowed)
  model_setup.check_vision_init(synthetic_config.get_config())  # every block trainable


def test_command_line_without_checkpoint_exits_at_once(tmp_path):
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
  start = time.time()
  run = subprocess.run([sys.executable, "-m", "clipmg_jax.train", "--config", "configs/imigue.py",
                        "--workdir", str(tmp_path / "x")], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                       timeout=300, check=False)
  assert run.returncode != 0
  assert "RandomVisionTowerError" in run.stderr and "--config.init.allow_random_vit=True" in run.stderr
  assert not (tmp_path / "x").exists()  # nothing was built or written
  print(f"exited after {time.time() - start:.1f} s")


@pytest.mark.parametrize("override, message", [
    ({"total_steps": -5}, r"config.total_steps=-5: expected at least 1"),
    ({"batch_size": 0}, r"config.batch_size=0: expected at least 1"),
    ({"optimizer.learning_rate": -1e-3}, r"config.optimizer.learning_rate=-0.001: expected a positive rate"),
    ({"data.image_size": 100}, r"config.data.image_size=100 is not a multiple of the ViT's patch size 16"),
    ({"checkpoint.every_steps": -1}, r"config.checkpoint.every_steps=-1: expected at least 0"),
])
def test_meaningless_values_are_refused_naming_the_field(override, message):
  config = synthetic_config.get_config()
  defaults.override(config, override)
  with pytest.raises(setup_lib.ConfigError, match=message):
    setup_lib.check_config(config)
  setup_lib.check_config(synthetic_config.get_config())  # the shipped values pass


def test_a_negative_step_count_stops_the_command_before_any_work(tmp_path):
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
  run = subprocess.run([sys.executable, "-m", "clipmg_jax.train", "--config", "configs/synthetic.py",
                        "--workdir", str(tmp_path / "x"), "--config.total_steps=-5"], cwd=REPO_ROOT, env=env,
                       capture_output=True, text=True, timeout=300, check=False)
  assert run.returncode == 1 and "config.total_steps=-5: expected at least 1" in run.stderr, run.stderr
  assert "Traceback" not in run.stderr and not (tmp_path / "x").exists()


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


def test_data_fields_follow_overrides():
  config = synthetic_config.get_config()
  config.batch_size = 8
  config.model.num_frames = 4
  assert config.data.batch_size == 8 and config.data.num_frames == 4


def test_every_synthetic_size_knob_is_a_command_line_flag(monkeypatch):
  from absl import flags  # pylint: disable=import-outside-toplevel
  from ml_collections import config_flags  # pylint: disable=import-outside-toplevel
  from clipmg_jax.data import synthetic  # pylint: disable=import-outside-toplevel

  def parse(*overrides):
    argv = ["train", f"--config={REPO_ROOT / 'configs' / 'synthetic.py'}", *overrides]
    monkeypatch.setattr(sys, "argv", argv)  # config_flags reads the overrides from sys.argv
    values = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, flag_values=values)
    values(argv)
    return values.config

  size = parse("--config.data.synthetic.size.num_subjects=30", "--config.data.synthetic.size.tail_power=0.25",
               "--config.data.synthetic.size.clip_frames=(8,16,24)").data.synthetic.size
  assert set(size.keys()) == {f.name for f in dataclasses.fields(synthetic.SizeConfig)}
  assert synthetic.size_overrides(size) == {"num_subjects": 30, "tail_power": 0.25, "clip_frames": (8, 16, 24)}
  assert synthetic.size_overrides(synthetic_config.get_config().data.synthetic.size) == {}  # the preset's sizes
  with pytest.raises(flags.IllegalFlagValueError):
    parse("--config.data.synthetic.size.num_subjects=thirty")
