"""python -m clipmg_jax.export: the exported program gives the live model's outputs (batch 1 and an odd batch; ONNX
Runtime too, where the `onnx` extra is installed), its loader runs with the training packages unimportable, a
damaged file is an error naming it, and predict on the export gives the checkpoint's top-5 on a real clip."""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from clipmg_jax.exported import artifact
from clipmg_jax.exported import build
from clipmg_jax.exported import onnx_file
from clipmg_jax.exported import predictor as exported_predictor
from clipmg_jax.prediction import predictor as predictor_lib
from clipmg_jax.prediction import recognize
from clipmg_jax.training import evaluation
# test_predict's tiny run (a synthetic dataset and a checkpoint of random parameters) and its command line.
from tests.test_predict import NOT_ROBUST
from tests.test_predict import TINY_OVERRIDES
from tests.test_predict import _fake_pose_python
from tests.test_predict import _predict_command
from tests.test_predict import run  # noqa: F401  pylint: disable=unused-import
from tests.test_predict import tiny_config

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
REAL_VIDEOS = REPO_ROOT.parent / "shared" / "videos"
# What the loader must do without (artifact.py's promise).
TRAINING_PACKAGES = ("flax", "optax", "orbax", "grain", "ml_collections", "tensorflow_datasets", "absl")


def _env() -> dict:
  return dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory):
  """The tiny run exported by the command (with model.onnx where the `onnx` extra is installed); its stdout."""
  _, workdir, _ = run
  out = tmp_path_factory.mktemp("export")
  config = f"{REPO_ROOT / 'configs' / 'synthetic.py'}:{NOT_ROBUST}"  # the tiny run's model
  cmd = [sys.executable, "-m", "clipmg_jax.export", f"--config={config}",
         f"--workdir={workdir}", f"--config.data.synthetic.cache_dir={workdir / 'synthetic_data'}", *TINY_OVERRIDES,
         f"--out={out}"]
  done = subprocess.run(cmd, cwd=REPO_ROOT, env=_env(), capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
  return out, done.stdout


@pytest.fixture(scope="module")
def predictor(run):
  _, workdir, _ = run
  return predictor_lib.Predictor(tiny_config(workdir / "synthetic_data"), workdir)


def _live(predictor, batch: dict) -> dict:
  """The eval step's outputs (through evaluation.predict, as evaluation computes them) of a batch's rows."""
  out = evaluation.predict(predictor.params, predictor.setup.eval_step, [batch], predictor.setup.mesh,
                           predictor.batch_size, progress=False)
  return {k: out[k] for k in ("logits", "gate", "reliability", "patch_entropy")}


@pytest.mark.slow
def test_the_export_describes_itself(exported, predictor):
  folder, stdout = exported
  info = artifact.read_info(folder)
  assert info["class_names"] == predictor.class_names and info["model"]["variant"] == "full+extras"
  assert info["model"]["image_size"] == 32 and info["checkpoint"]["step"] == predictor.step
  # The digest is the restored parameters', and weights.npz holds exactly them.
  assert info["checkpoint"]["params_sha256"] == artifact.weights_digest(build.named_weights(predictor.params))
  with np.load(folder / artifact.WEIGHTS) as saved:
    assert artifact.weights_digest((n, saved[n]) for n in info["weights"]["names"]) == \
        info["checkpoint"]["params_sha256"]
  assert info["inputs"]["frames"] == {"shape": ["batch", 8, 32, 32, 3], "dtype": "uint8"}
  assert info["inputs"]["keypoints"] == {"shape": ["batch", 32, 18, 3], "dtype": "float32"}
  assert info["outputs"]["logits"] == {"shape": ["batch", len(predictor.class_names)], "dtype": "float32"}
  assert info["outputs"]["gate"] == {"shape": ["batch", 8], "dtype": "float32"}
  assert info["program"]["platforms"] == ["cpu", "cuda", "tpu"]
  for name, entry in info["files"].items():
    assert f"{name:16s} {entry['bytes']:>12,} bytes" in stdout


@pytest.mark.slow
def test_the_program_gives_the_live_models_outputs(run, exported, predictor):
  _, _, data = run
  model = artifact.ExportedModel(exported[0])
  batch = next(iter(data.eval_batches()))  # real clips of the test split, as evaluation batches them
  for n in (1, 3):
    rows = {k: v[:n] for k, v in batch.items()}
    live = _live(predictor, rows)
    out = model(rows["frames"], rows["keypoints"])
    assert set(out) == set(live)
    for key, value in live.items():
      np.testing.assert_allclose(out[key], value, rtol=0, atol=1e-5, err_msg=f"batch {n}: {key}")
  assert np.ptp(live["logits"], axis=0).max() > 1e-3 and np.ptp(live["gate"]) > 1e-4  # not vacuous
  with pytest.raises(ValueError, match=r"frames must be uint8 \('batch', 8, 32, 32, 3\)"):
    model(batch["frames"][:2].astype(np.float32), batch["keypoints"][:2])


@pytest.mark.slow
def test_onnx_runtime_gives_the_live_models_outputs(run, exported, predictor):
  pytest.importorskip("onnxruntime", reason=f"the `onnx` extra is not installed ({onnx_file.INSTALL})")
  info = artifact.read_info(exported[0])
  if not info["onnx"]["written"]:
    pytest.skip(f"no model.onnx in the export: {info['onnx']['reason']}")
  _, _, data = run
  model = onnx_file.OnnxModel.from_folder(exported[0])
  batch = next(iter(data.eval_batches()))
  for n in (1, 3):
    rows = {k: v[:n] for k, v in batch.items()}
    live, out = _live(predictor, rows), model(rows["frames"], rows["keypoints"])
    assert set(out) == set(live)
    for key, value in live.items():
      np.testing.assert_allclose(out[key], value, rtol=0, atol=1e-4, err_msg=f"batch {n}: {key}")


@pytest.mark.slow
def test_online_windows_on_the_export_are_the_checkpoints(run, exported, predictor):
  config, _, _ = run
  raw = pathlib.Path(config.data.synthetic.raw_dir)
  video_id = sorted(p.stem for p in (raw / "videos").glob("*.mp4"))[0]
  args = (raw / "videos" / f"{video_id}.mp4", raw / "skeleton", video_id)
  starts, live, _, _ = recognize.window_probabilities(predictor, *args, length=16, stride=8, progress=False)
  on_export = exported_predictor.ExportedPredictor(exported[0])
  starts_e, probs, _, _ = recognize.window_probabilities(on_export, *args, length=16, stride=8, progress=False)
  assert len(starts) % on_export.batch_size != 0  # a short last batch, padded
  np.testing.assert_array_equal(starts_e, starts)
  np.testing.assert_allclose(probs, live, rtol=0, atol=1e-6)


_BLOCKED_LOADER = """
import importlib.abc, json, sys
import numpy as np
BLOCKED = {blocked!r}
ALLOWED = ("clipmg_jax", "clipmg_jax.exported", "clipmg_jax.exported.artifact")

class Block(importlib.abc.MetaPathFinder):
  def find_spec(self, name, path, target=None):
    if name.split(".")[0] in BLOCKED or (name.startswith("clipmg_jax") and name not in ALLOWED):
      raise ImportError(f"{{name}} is blocked")

sys.meta_path.insert(0, Block())
try:
  import flax
  raise SystemExit("the blocker let flax through")
except ImportError:
  pass
from clipmg_jax.exported import artifact
model = artifact.ExportedModel(sys.argv[1])
inputs = np.load(sys.argv[2])
np.savez(sys.argv[3], **model(inputs["frames"], inputs["keypoints"]))
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED or m.startswith("clipmg_jax"))))
"""


def test_the_loader_runs_without_the_training_packages(exported, tmp_path):
  folder = exported[0]
  spec = artifact.read_info(folder)["inputs"]
  frames, keypoints = onnx_file.probe_inputs(spec["frames"]["shape"][1:], spec["keypoints"]["shape"][1:], 3)
  np.savez(tmp_path / "inputs.npz", frames=frames, keypoints=keypoints)
  done = subprocess.run([sys.executable, "-c", _BLOCKED_LOADER.format(blocked=TRAINING_PACKAGES), str(folder),
                         str(tmp_path / "inputs.npz"), str(tmp_path / "outputs.npz")],
                        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
  assert json.loads(done.stdout.strip().splitlines()[-1]) == ["clipmg_jax", "clipmg_jax.exported",
                                                             "clipmg_jax.exported.artifact"]
  expected = artifact.ExportedModel(folder)(frames, keypoints)
  with np.load(tmp_path / "outputs.npz") as out:
    assert sorted(out.files) == sorted(expected)
    for key, value in expected.items():
      np.testing.assert_array_equal(out[key], value)


def _damaged(folder: pathlib.Path, into: pathlib.Path, name: str, how: str) -> pathlib.Path:
  """A copy of the export folder with file `name` flipped (one byte), truncated, deleted or replaced by text."""
  shutil.copytree(folder, into)
  path = into / name
  data = bytearray(path.read_bytes())
  if how == "flipped":
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
  elif how == "truncated":
    path.write_bytes(bytes(data[:len(data) // 2]))
  elif how == "deleted":
    path.unlink()
  else:
    path.write_text("not json {")
  return into


@pytest.mark.slow
def test_a_damaged_export_file_is_a_named_error(run, exported, tmp_path):
  folder = exported[0]
  cases = {(artifact.PROGRAM, "flipped"): "its sha256 differs from export.json's",
           (artifact.PROGRAM, "truncated"): "bytes where export.json records",
           (artifact.WEIGHTS, "flipped"): "its sha256 differs from export.json's",
           (artifact.WEIGHTS, "truncated"): "bytes where export.json records",
           (artifact.WEIGHTS, "deleted"): "missing",
           (artifact.INFO, "replaced"): "not valid JSON"}
  for (name, how), message in cases.items():
    broken = _damaged(folder, tmp_path / f"{name}_{how}", name, how)
    with pytest.raises(artifact.ExportedArtifactError, match=message) as caught:
      artifact.ExportedModel(broken)
    assert str(broken / name) in str(caught.value), (name, how)
  if artifact.read_info(folder)["onnx"]["written"]:
    broken = _damaged(folder, tmp_path / "onnx_flipped", artifact.ONNX, "flipped")
    with pytest.raises(artifact.ExportedArtifactError, match=f"{broken / artifact.ONNX}: its sha256 differs"):
      onnx_file.OnnxModel.from_folder(broken)
  # The command: one line naming the file, no traceback.
  config, _, _ = run
  raw = pathlib.Path(config.data.synthetic.raw_dir)
  video = sorted((raw / "videos").glob("*.mp4"))[0]
  broken = tmp_path / f"{artifact.PROGRAM}_flipped"
  done = subprocess.run([sys.executable, "-m", "clipmg_jax.predict", f"--exported={broken}", f"--video={video}",
                         f"--skeleton_dir={raw / 'skeleton'}", f"--out={tmp_path / 'out'}"],
                        cwd=REPO_ROOT, env=_env(), capture_output=True, text=True, timeout=300)
  assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
  assert done.stderr.strip().splitlines()[-1] == (
      f"ExportedArtifactError: {broken / artifact.PROGRAM}: its sha256 differs from export.json's (the file was "
      "altered after export); export again")


@pytest.mark.slow
def test_predict_on_the_export_gives_the_checkpoints_top5_on_a_real_clip(run, exported, tmp_path):
  videos = sorted(REAL_VIDEOS.glob("*.mp4"))
  if not videos:
    pytest.skip(f"no real clips in {REAL_VIDEOS} (shared material, not in a clone)")
  _, workdir, _ = run
  video, pose_python = videos[0], _fake_pose_python(tmp_path)  # the stand-in tracker: the same skeletons twice
  both = {"exported": [sys.executable, "-m", "clipmg_jax.predict", f"--exported={exported[0]}"],
          "workdir": _predict_command(workdir)}
  running = {name: subprocess.Popen([*cmd, f"--video={video}", "--extract_pose", f"--pose_python={pose_python}",
                                     f"--out={tmp_path / name}"], cwd=REPO_ROOT, env=_env(), stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
             for name, cmd in both.items()}
  results = {}
  for name, proc in running.items():
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, (name, out[-2000:], err[-4000:])
    results[name] = json.loads((tmp_path / name / f"{video.stem}.json").read_text())
  on_export, on_checkpoint = results["exported"], results["workdir"]
  assert [t["class"] for t in on_export["top"]] == [t["class"] for t in on_checkpoint["top"]]
  assert len(on_export["top"]) == 5 and on_export["checkpoint_step"] == on_checkpoint["checkpoint_step"]
  np.testing.assert_allclose(on_export["probabilities"], on_checkpoint["probabilities"], rtol=0, atol=1e-5)
  assert np.ptp(on_export["probabilities"]) > 1e-3  # the top-5 is an order, not a tie


def test_help_explains_the_export():
  done = subprocess.run([sys.executable, "-m", "clipmg_jax.export", "--help"], cwd=REPO_ROOT, env=_env(),
                        capture_output=True, text=True, timeout=300)
  text = done.stdout + done.stderr  # absl's --help exits with status 1: the text is what counts
  for needed in ("model.jaxexport", "weights.npz", "model.onnx", "export.json", "--out", "--checkpoint", "--noonnx",
                 "predict --exported", "6 months"):
    assert needed in text, needed
