"""The prefix cache: cached tokens give the live path's logits and gradients; a cache of another tower, depth or data
is refused; off by default."""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from clipmg_jax.data import input_setup
from clipmg_jax.data.loader import pipeline
from clipmg_jax.data.loader import token_cache
from clipmg_jax.data.loader import token_pipeline
from clipmg_jax.data.records import token_record
from clipmg_jax.training import defaults
from clipmg_jax.training import losses
from clipmg_jax.training import model_setup
from clipmg_jax.training import prefix_cache
from clipmg_jax.training import trainer
from configs import synthetic as synthetic_config
from tests.training import test_end_to_end

# test_end_to_end's tiny CLIP-MG over 32 x 32 crops (2 x 2 patches), 1 of its 2 ViT blocks frozen (random: a smoke
# tower), for 2 steps.
TINY = {**test_end_to_end.TINY, "eval_batch_size": 8, "total_steps": 2, "eval_every_steps": 2,
        "optimizer.warmup_steps": 1, "init.allow_random_vit": True}
VIEWS = 2


def tiny_config(data_dir, **extra):
  config = synthetic_config.get_config()
  defaults.override(config, {**TINY, "data.synthetic.cache_dir": str(data_dir), **extra})
  return config


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
  """The synthetic shards (preset "tiny") and two caches of them: float32 with 2 views, bfloat16 with 1."""
  root = tmp_path_factory.mktemp("prefix_cache")
  config = tiny_config(root / "data")
  f32 = root / "f32"
  prefix_cache.build(config, f32, views=VIEWS, seed=3, dtype="float32", batch_size=4, records_per_shard=40,
                     progress=False)
  bf16 = root / "bf16"
  prefix_cache.build(config, bf16, views=1, dtype="bfloat16", progress=False)
  return root, f32, bf16


def _batches(config, workdir, split="test"):
  data = input_setup.make_data_source(config, workdir)
  return next(iter(data.eval_batches() if split == "test" else data.validation_batches()))


def _logits_and_grads(config, params, frames, tokens, keypoints, labels):
  module = model_setup.build_model(config.model).module
  rng = jax.random.PRNGKey(1)

  def loss(p, frames, tokens):
    logits = module.apply({"params": p}, frames, keypoints, train=True, rngs={"dropout": rng},
                          prefix_tokens=tokens)
    return losses.classification_loss(logits, labels, weights=None, logit_offset=None, label_smoothing=0.0), logits

  (_, logits), grads = jax.value_and_grad(loss, has_aux=True)(params, frames, tokens)
  return logits, grads


def test_cached_tokens_give_the_live_logits_and_gradients(caches):
  root, f32, _ = caches
  live_config = tiny_config(root / "data")
  cached_config = tiny_config(root / "data", **{"data.prefix_cache": str(f32)})
  live = _batches(live_config, root)
  cached = _batches(cached_config, root)
  assert "tokens" in cached and "frames" not in cached and "frames" in live
  np.testing.assert_array_equal(live["clip_id"], cached["clip_id"])
  np.testing.assert_allclose(live["keypoints"], cached["keypoints"], atol=1e-6)
  assert cached["tokens"].shape == (8, 8, 1 + 4, 16)  # clips, frames, class token + 2 x 2 patches, width

  params = prefix_cache.initial_params(live_config, 32)
  token_cache.check_tower(cached_config, params)  # the cache's own tower: accepted
  frames = pipeline_frames(live["frames"])
  labels = jnp.asarray(live["label"])
  logits_live, grads_live = _logits_and_grads(live_config, params, frames, None, live["keypoints"], labels)
  logits_cached, grads_cached = _logits_and_grads(cached_config, params, None, jnp.asarray(cached["tokens"]),
                                                  cached["keypoints"], labels)
  assert float(jnp.max(jnp.abs(logits_live - logits_cached))) <= 1e-5
  mask = model_setup.build_model(live_config.model).trainable_mask(params)
  for (path, g_live), g_cached, trainable in zip(jax.tree_util.tree_leaves_with_path(grads_live),
                                                 jax.tree.leaves(grads_cached), jax.tree.leaves(mask)):
    if trainable:  # the frozen prefix's gradients are masked out by the optimizer either way
      np.testing.assert_allclose(np.asarray(g_cached), np.asarray(g_live), atol=1e-5, rtol=1e-4,
                                 err_msg=jax.tree_util.keystr(path))


def pipeline_frames(frames):
  from clipmg_jax.models import vit  # pylint: disable=import-outside-toplevel
  return vit.normalize_images(frames)


def test_augmented_views_are_the_training_augmentation_redrawn(caches):
  """View v of clip c holds the prefix of the training decode with the recorded RNG: the same frames, keypoints."""
  root, f32, _ = caches
  config = tiny_config(root / "data", **{"data.prefix_cache": str(f32)})
  data = input_setup.make_data_source(config, root).data_config
  source = pipeline.make_source(data, "train")
  decoder = pipeline.ClipDecoder(data, source, train=True)
  cache = token_pipeline.make_decoder(data, "train")
  params = prefix_cache.initial_params(config, 32)
  prefix = prefix_cache.prefix_function(config.model)
  for clip in (0, 5):
    example = decoder.decode(source[clip], prefix_cache.view_rng(3, clip, 1))
    record = cache.record(clip * VIEWS + 1)
    assert record.view == 1
    np.testing.assert_allclose(record.keypoints, example["keypoints"], atol=1e-6)
    live = prefix(params["vit"], example["frames"][None])[0]
    assert float(jnp.max(jnp.abs(live - record.tokens))) <= 1e-5
  # Training draws one of the views per clip and epoch: both appear.
  train = token_pipeline.make_map_dataset(data, "train", train=True, seed=0)
  assert len(train) > 0 and train[0]["tokens"].shape == (8, 8, 5, 16)


def test_bfloat16_cache_tolerance(caches):
  root, f32, bf16 = caches
  params = prefix_cache.initial_params(tiny_config(root / "data"), 32)
  out = {}
  for name, folder in (("f32", f32), ("bf16", bf16)):
    config = tiny_config(root / "data", **{"data.prefix_cache": str(folder)})
    batch = _batches(config, root)
    module = model_setup.build_model(config.model).module
    out[name] = module.apply({"params": params}, None, batch["keypoints"], prefix_tokens=jnp.asarray(batch["tokens"]))
    assert batch["tokens"].dtype == np.dtype(token_record.DTYPES[name.replace("f32", "float32").replace(
        "bf16", "bfloat16")])
  scale = float(jnp.max(jnp.abs(out["f32"])))
  err = float(jnp.max(jnp.abs(out["f32"] - out["bf16"])))
  print(f"bfloat16 cache: max |logit difference| {err:.2e} (max |logit| {scale:.2e})")
  assert 0 < err <= 2e-2 * max(scale, 1.0)  # measured ~1e-3 relative: bfloat16's 8-bit mantissa on the tokens


def test_a_cache_of_another_tower_depth_or_data_is_refused(caches):
  root, f32, _ = caches
  # Another tower: the same shapes, other weights (another initialisation seed).
  other = tiny_config(root / "data", seed=1, **{"data.prefix_cache": str(f32)})
  with pytest.raises(token_pipeline.PrefixCacheError, match="another tower"):
    token_cache.check_tower(other, prefix_cache.initial_params(other, 32))
  # Another depth: both blocks trainable.
  deeper = tiny_config(root / "data", **{"data.prefix_cache": str(f32), "model.trainable_blocks": 2})
  with pytest.raises(token_pipeline.PrefixCacheError, match="frozen_blocks"):
    input_setup.make_data_source(deeper, root)
  # Other view settings (the crops the run would draw).
  crops = tiny_config(root / "data", **{"data.prefix_cache": str(f32), "data.crop_scale": (0.3, 1.0)})
  with pytest.raises(token_pipeline.PrefixCacheError, match="crop_scale"):
    input_setup.make_data_source(crops, root)
  with pytest.raises(token_pipeline.PrefixCacheError, match="no manifest.json"):
    input_setup.make_data_source(tiny_config(root / "data", **{"data.prefix_cache": str(root / "nothing")}), root)


@pytest.mark.slow
def test_off_by_default_and_training_from_the_cache(caches, tmp_path):
  root, f32, _ = caches
  assert pipeline.get_data_config().prefix_cache == ""
  batch = _batches(tiny_config(root / "data"), root)
  assert "frames" in batch and "tokens" not in batch
  config = tiny_config(root / "data", **{"data.prefix_cache": str(f32)})
  result = trainer.train_and_evaluate(config, tmp_path, input_setup.make_data_source(config, tmp_path))
  assert result["num_examples"] > 0 and (tmp_path / "eval.json").is_file()


def test_the_accuracy_sweep_runs_every_build_and_training_once_and_tabulates(tmp_path, monkeypatch, capsys):
  """studies/prefix_cache_accuracy.py: the commands it runs (commands stubbed: their results are written as a run
  would), that it reuses finished live runs and skips what exists, and its table with the paired differences."""
  from clipmg_jax.run.folder import RunFolder  # pylint: disable=import-outside-toplevel
  from studies import prefix_cache_accuracy as study  # pylint: disable=import-outside-toplevel
  from studies import sweep  # pylint: disable=import-outside-toplevel
  ran = []

  def write_eval(workdir, top1, step=250):
    workdir.mkdir(parents=True, exist_ok=True)
    RunFolder(workdir).results_file().write_text(
        json.dumps({"top1": top1, "mean_class_accuracy": 0.25, "step": step}))

  def fake_run(command, log=None):
    assert log is None  # one run at a time: its output goes to the sweep's
    ran.append(command)
    out = [a.split("=", 1)[1] for a in command if a.startswith(("--out=", "--workdir="))]
    if "clipmg_jax.cache_prefix" in command:
      pathlib.Path(out[0]).mkdir(parents=True)
      (pathlib.Path(out[0]) / "manifest.json").write_text('{"build": {"seconds": 1.0}}')
    else:
      seed = int(next(a for a in command if a.startswith("--config.seed=")).split("=")[1])
      cached = any(a.startswith("--config.data.prefix_cache=") for a in command)
      write_eval(pathlib.Path(out[0]), 0.5 + seed / 10 - (0.02 if cached else 0))

  monkeypatch.setattr(sweep, "run_command", fake_run)
  live_runs = tmp_path / "sweep"
  write_eval(live_runs / "full" / "seed0", 0.5)  # reused
  write_eval(live_runs / "full" / "seed1", 0.9, step=100)  # another budget: trained again
  args = ["--root", str(tmp_path / "root"), "--variants", "full,visual_only", "--seeds", "0,1",
          "--ks", "1,4", "--live_runs", str(live_runs)]
  result = study.accuracy(study.parse_args(args))
  builds = [c for c in ran if "clipmg_jax.cache_prefix" in c]
  trainings = [c for c in ran if "clipmg_jax.train" in c]
  assert len(builds) == 2 and len(trainings) == 2 * 3 * 2 - 1  # a cache per K; one live run reused
  assert "--views=4" in builds[1] and "--config=configs/synthetic_pretrained.py:full" in builds[1]
  assert all("--config.total_steps=250" in c and "--config.eval_every_steps=50" in c for c in trainings)
  cached = [c for c in trainings if any(a.startswith("--config.data.prefix_cache=") for a in c)]
  assert len(cached) == 2 * 2 * 2
  assert pathlib.Path(result["runs"][0]["workdir"]).resolve() == (live_runs / "full" / "seed0").resolve()
  assert "| `full` | live | 2 | 55.0 ± 7.1 | — | 25.0 ± 0.0 | — |" in result["table"]
  assert "| `full` | K=4 | 2 | 53.0 ± 7.1 | -2.0 [-2.0, -2.0] | 25.0 ± 0.0 | +0.0 [+0.0, +0.0] |" in result["table"]
  # The wall times are the sweep's record, not written into the runs' results; a reused run has none.
  assert all("seconds" not in RunFolder(r["workdir"]).read_results() for r in result["runs"])
  assert result["runs"][0]["seconds"] is None and all(r["seconds"] >= 0 for r in result["runs"][1:])
  ran.clear()
  again = study.accuracy(study.parse_args(args))  # everything exists: nothing runs again
  assert ran == []
  assert again["runs"] == result["runs"]  # the wall times read back from the record


def test_a_killed_rebuild_is_never_read_as_a_cache_and_a_missing_file_is_found_at_set_up(caches, tmp_path,
                                                                                          monkeypatch):
  """A rebuild into an existing cache removes its manifest first: killed half way, the folder is refused, never read
  as the old cache over new shards. A cache file gone is named at data set-up, before step 1."""
  import shutil  # pylint: disable=import-outside-toplevel
  from clipmg_jax.data.records import shard_writer  # pylint: disable=import-outside-toplevel
  root, _, bf16 = caches
  copy = tmp_path / "bf16"
  shutil.copytree(bf16, copy)
  config = tiny_config(root / "data", **{"data.prefix_cache": str(copy)})
  input_setup.make_data_source(config, root)  # the intact copy is accepted

  def killed(*args, **kwargs):
    raise KeyboardInterrupt  # Ctrl-C (or a kill) in the middle of writing the first shard

  monkeypatch.setattr(shard_writer, "write_shard", killed)
  with pytest.raises(KeyboardInterrupt):
    prefix_cache.build(tiny_config(root / "data"), copy, views=1, dtype="bfloat16", progress=False)
  monkeypatch.undo()
  with pytest.raises(token_pipeline.PrefixCacheError, match="manifest.json"):
    input_setup.make_data_source(config, root)

  shutil.rmtree(copy)
  shutil.copytree(bf16, copy)
  document = json.loads((copy / "manifest.json").read_text())
  missing = copy / document["splits"]["test"]["shards"][0]["path"]
  missing.unlink()
  with pytest.raises(token_pipeline.PrefixCacheError, match=f"{missing} is missing"):
    input_setup.make_data_source(config, root)
