"""The real pieces together: synthetic dataset -> shards -> Grain pipeline -> CLIP-MG (tiny) -> checkpoints -> eval.

Exact resume with the real pipeline, and the command-line entry points as a user runs them.
"""

import json
import os
import shutil
import pathlib
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from clipmg_jax.data import input_setup
from clipmg_jax.data.records import manifest as manifest_lib
from clipmg_jax.run.folder import RunFolder
from clipmg_jax.training import checkpointing
from clipmg_jax.training import defaults
from clipmg_jax.training import runs
from clipmg_jax.training import trainer
from configs import synthetic as synthetic_config

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]

# A tiny CLIP-MG over 32 x 32 crops (2 x 2 patches), 8 x 8 heatmaps: seconds per step on a CPU.
TINY = {
    "batch_size": 8, "eval_batch_size": 16, "total_steps": 6, "log_every_steps": 1, "eval_every_steps": 3,
    "checkpoint.every_steps": 2, "optimizer.warmup_steps": 2,
    "model.vit.width": 16, "model.vit.layers": 2, "model.vit.heads": 2, "model.vit.mlp_dim": 32,
    "model.vit.image_size": 32, "model.trainable_blocks": 1, "model.heatmap.resolution": 8,
    "model.skeleton.features": (4, 8, 8), "model.skeleton.num_groups": 4, "model.skeleton.embed_dim": 16,
    "model.skeleton.strides": ((2, 2, 2), (2, 2, 2), (1, 1, 1)), "model.head.hidden_dim": 16,
    "data.image_size": 32, "data.worker_count": 0, "data.synthetic.preset": "tiny",
    # The tiny preset has 2 training subjects: 1 is held out for validation.
    "data.validation.num_subjects": 1,
    # One of the 2 blocks is frozen and no CLIP weights exist here: a smoke test.
    "init.allow_random_vit": True,
}


def tiny_config(**extra):
  config = synthetic_config.get_config()
  defaults.override(config, {**TINY, **extra})
  return config


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> pathlib.Path:
  """Generates (preset "tiny") and converts the synthetic dataset once, through the trainer's own data setup."""
  cache = tmp_path_factory.mktemp("synthetic_cache")
  config = tiny_config(**{"data.synthetic.cache_dir": str(cache)})
  input_setup.make_data_source(config, cache / "unused_workdir")
  assert (cache / "shards" / "manifest.json").is_file()
  return cache


def _params(workdir: pathlib.Path):
  ckpt = checkpointing.Checkpointer(workdir / "checkpoints")
  step = ckpt.latest_step()
  ckpt.close()
  return step, ocp.StandardCheckpointer().restore(workdir / "checkpoints" / str(step) / "state")["params"]


@pytest.mark.slow
def test_resume_with_the_real_pipeline_is_exact(cache_dir, tmp_path):
  def run(workdir, **extra):
    config = tiny_config(**{"data.synthetic.cache_dir": str(cache_dir)}, **extra)
    return trainer.train_and_evaluate(config, workdir, input_setup.make_data_source(config, workdir))

  full = run(tmp_path / "full")
  assert run(tmp_path / "resumed", stop_after_step=5) == {}  # "preempted" after step 5; last checkpoint: 4
  resumed = run(tmp_path / "resumed")
  step_a, params_a = _params(tmp_path / "full")
  step_b, params_b = _params(tmp_path / "resumed")
  assert step_a == step_b == 6
  diffs = [float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
           for a, b in zip(jax.tree.leaves(params_a), jax.tree.leaves(params_b))]
  assert max(diffs) <= 1e-6
  assert resumed["top1"] == pytest.approx(full["top1"])
  manifest = json.loads((cache_dir / "shards" / "manifest.json").read_text())
  assert full["num_examples"] == manifest["splits"]["test"]["num_clips"]  # padding removed, nothing dropped
  assert full["class_names"] == manifest["classes"]


@pytest.mark.slow
def test_another_dataset_is_refused_on_resume_and_evaluation_unless_asked(cache_dir, tmp_path_factory):
  """A run knows its data: resuming or evaluating it on another dataset (here the same preset drawn with another
  seed) is a named error naming both, and rewrites nothing; with config.new_dataset it resumes on the new data."""
  other = tmp_path_factory.mktemp("other_dataset")
  workdir = tmp_path_factory.mktemp("run")
  ours = tiny_config(**{"data.synthetic.cache_dir": str(cache_dir), "total_steps": 4, "eval_every_steps": 0})
  trainer.train_and_evaluate(ours, workdir, input_setup.make_data_source(ours, workdir))
  run = RunFolder(workdir)
  results, metrics, ours_digest = run.read_results(), run.read_metrics(), run.read_config()["data"]["dataset_digest"]

  def theirs(**extra):
    return tiny_config(**{"data.synthetic.cache_dir": str(other), "data.synthetic.seed": 1, "total_steps": 6,
                          "eval_every_steps": 0, **extra})

  data = input_setup.make_data_source(theirs(), workdir)
  assert data.data_config.dataset_digest != ours_digest
  with pytest.raises(manifest_lib.DataSetupError, match=rf"trained on the dataset in {cache_dir}.*would read {other}"):
    trainer.train_and_evaluate(theirs(), workdir, data)
  with pytest.raises(manifest_lib.DataSetupError, match="--config.new_dataset=True"):
    runs.evaluate_checkpoint(theirs(), workdir)
  assert run.read_results() == results and run.read_metrics() == metrics  # nothing rewritten
  asked = theirs(new_dataset=True)
  trainer.train_and_evaluate(asked, workdir, input_setup.make_data_source(asked, workdir))
  assert run.read_results()["step"] == 6
  assert run.read_config()["data"]["dataset_digest"] == data.data_config.dataset_digest


@pytest.mark.slow
def test_command_line_train_then_evaluate(cache_dir, tmp_path):
  # Tuple-valued fields are not command-line overridable: the skeleton CNN keeps the config's (16 x 16 heatmaps).
  overrides = [f"--config.{k}={v}" for k, v in TINY.items() if not isinstance(v, tuple) and "heatmap" not in k]
  overrides += [f"--config.data.synthetic.cache_dir={cache_dir}", "--config.total_steps=4"]
  # Two compile-bound processes: XLA's backend optimisation passes off roughly halve their compile time.
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
             XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0")
  base = ["--config", str(REPO_ROOT / "configs" / "synthetic.py"), "--workdir", str(tmp_path)]
  train = subprocess.run([sys.executable, "-m", "clipmg_jax.train", *base, *overrides], cwd=REPO_ROOT, env=env,
                         capture_output=True, text=True, timeout=900, check=False)
  assert train.returncode == 0, train.stderr[-4000:]
  assert "final evaluation" in train.stdout
  result = json.loads((tmp_path / "eval.json").read_text())
  for key in ("top1", "top5", "mean_class_accuracy", "macro_f1", "num_examples", "per_class", "per_subject",
              "confusion"):
    assert key in result
  assert result["step"] == 4
  assert (tmp_path / "confusion.png").is_file() and (tmp_path / "per_class_accuracy.png").is_file()
  lines = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [l["step"] for l in lines if l["split"] == "train"] == [1, 2, 3, 4]
  assert [l["step"] for l in lines if l["split"] == "validation"] == [3, 4]
  assert [l["step"] for l in lines if l["split"] == "test"] == [4]
  assert all(0 < l["gate_mean"] < 1 for l in lines if l["split"] != "train")  # the mean gate is logged
  assert result["split"] == "test" and result["checkpoint"] == "final"
  assert len(result["validation"]["subjects"]) == 1 and result["pose_monitoring"]["gate"]["per_class"]
  assert (tmp_path / "gate_histogram.png").is_file()
  assert list((tmp_path / "tensorboard").iterdir())  # tensorboardX is a test dependency
  trained = (tmp_path / "eval.json").read_text()
  evaluate = subprocess.run([sys.executable, "-m", "clipmg_jax.evaluate", *base, *overrides, "--checkpoint=best"],
                            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)
  assert evaluate.returncode == 0, evaluate.stderr[-4000:]
  evals = {l["step"]: l["top1"] for l in lines if l["split"] == "validation"}  # both evaluated states were saved
  best_step = max((top1, step) for step, top1 in evals.items())[1]
  again = json.loads((tmp_path / f"eval_best_{best_step}.json").read_text())  # beside the run's own eval.json
  assert again["step"] == best_step and again["split"] == "test"  # chosen on validation, measured on test
  assert "highest validation top-1" in again["selection"]
  assert (tmp_path / "eval.json").read_text() == trained
  assert (tmp_path / f"confusion_best_{best_step}.png").is_file()


@pytest.mark.slow
def test_evaluate_beside_a_writing_trainer_and_paths_with_spaces_and_unicode(cache_dir, tmp_path):
  """`evaluate` run while `train` writes the same run folder reads only complete checkpoints: each result equals the
  same step evaluated after training; the trainer finishes as if alone. Every path has spaces and non-ASCII letters."""
  root = tmp_path / "données d'essai 数据"
  data_dir = root / "jeu de données"
  shutil.copytree(cache_dir, data_dir)
  workdir = root / "exécution n°1"
  overrides = [f"--config.{k}={v}" for k, v in TINY.items() if not isinstance(v, tuple) and "heatmap" not in k]
  overrides += [f"--config.data.synthetic.cache_dir={data_dir}", "--config.total_steps=24",
                "--config.checkpoint.every_steps=3", "--config.checkpoint.keep_last=100", "--config.eval_every_steps=0"]
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
             XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0")
  train = subprocess.Popen([sys.executable, "-m", "clipmg_jax.train", "--config",
                            str(REPO_ROOT / "configs" / "synthetic.py"), "--workdir", str(workdir), *overrides],
                           cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  # What `python -m clipmg_jax.evaluate` with the same flags would use (the command line cannot set tuples).
  config = defaults.override(synthetic_config.get_config(), {
      **{k: v for k, v in TINY.items() if not isinstance(v, tuple) and "heatmap" not in k},
      "data.synthetic.cache_dir": str(data_dir), "total_steps": 24, "checkpoint.every_steps": 3,
      "checkpoint.keep_last": 100, "eval_every_steps": 0})
  during = {}
  try:
    while train.poll() is None and len(during) < 3:
      if RunFolder(workdir).config_file.is_file() and RunFolder(workdir).checkpoint_steps():
        result = runs.evaluate_checkpoint(config, workdir, "latest")
        during[result["step"]] = result["top1"]
      time.sleep(0.5)
    out, err = train.communicate(timeout=900)
  finally:
    train.kill()
  assert train.returncode == 0, err[-4000:]
  assert len(during) >= 2, (during, out[-2000:])  # evaluated at least twice while training ran
  assert json.loads((workdir / "eval.json").read_text())["step"] == 24
  for step, top1 in during.items():
    assert runs.evaluate_checkpoint(config, workdir, str(step))["top1"] == top1, step
