"""The notebooks in notebooks/ run headless, top to bottom, on a tiny synthetic dataset (a cell that raises fails
the test), show their figures, and are committed with their outputs stripped.

One tiny dataset is generated for all of them; 02 trains the short run it needs when it finds no checkpoint, and 03
reuses it (or trains it itself when run alone).
"""

import json
import os
import pathlib

import pytest

from clipmg_jax.data import input_setup
from clipmg_jax.training import runs

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO_ROOT / "notebooks"
NAMES = ("01_data_tour", "02_model_inspection", "03_error_analysis")

# The synthetic config shrunk to seconds per step (as in tests/training/test_end_to_end.py): 32 x 32 crops, a
# 2-block ViT of width 16, 8 x 8 heatmaps, the "tiny" dataset preset.
TINY = {
    "batch_size": 8, "eval_batch_size": 16, "total_steps": 4, "log_every_steps": 2, "eval_every_steps": 4,
    "checkpoint.every_steps": 4, "optimizer.warmup_steps": 2,
    "model.vit.width": 16, "model.vit.layers": 2, "model.vit.heads": 2, "model.vit.mlp_dim": 32,
    "model.vit.image_size": 32, "model.trainable_blocks": 2,  # all blocks: nothing frozen at random init
    "model.heatmap.resolution": 8, "model.heatmap.sigma": 32.0,
    "model.skeleton.features": (4, 8, 8), "model.skeleton.num_groups": 4, "model.skeleton.embed_dim": 16,
    "model.skeleton.strides": ((2, 2, 2), (2, 2, 2), (1, 1, 1)), "model.head.hidden_dim": 16,
    "data.image_size": 32, "data.worker_count": 0, "data.synthetic.preset": "tiny",
    "data.validation.num_subjects": 1,
}

# Imports configs/ from the repository root: pytest's pythonpath has it when the fixture below loads this file, and
# the notebook kernels (and what they start) get it in PYTHONPATH.
CONFIG_FILE = """from clipmg_jax.training import defaults
from configs import synthetic

def get_config(arg="full+extras"):  # the run folder's name: 02's ablation section loads it as that ablation
  return defaults.override(synthetic.get_config(arg), {overrides!r})
"""


@pytest.fixture(scope="module")
def environment(tmp_path_factory) -> dict[str, str]:
  """A tiny config file, its dataset (generated and converted once, here), and the run folder the notebooks use:
  named like an ablation run (<root>/full+extras) so that 02's ablation section finds and loads it too."""
  root = tmp_path_factory.mktemp("notebooks")
  config_file = root / "tiny_synthetic.py"
  config_file.write_text(CONFIG_FILE.format(overrides={
      **TINY, "data.synthetic.cache_dir": str(root / "synthetic_data")}))
  run = root / "runs" / "full+extras"
  input_setup.make_data_source(runs.load_config(config_file), run)
  return {"CLIPMG_NOTEBOOK_SMALL": "1", "CLIPMG_CONFIG": str(config_file), "CLIPMG_RUN": str(run),
          "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}


def execute(name: str, environment: dict[str, str]):
  """Runs notebooks/<name>.ipynb in a fresh kernel (working directory notebooks/, as in Jupyter); raises
  nbclient's CellExecutionError, naming the cell, when a cell raises."""
  notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
  client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                   resources={"metadata": {"path": str(NOTEBOOKS)}})
  client.execute(env=dict(os.environ, **environment, MPLBACKEND="module://matplotlib_inline.backend_inline"))
  return notebook


def images(notebook) -> int:
  return sum("image/png" in out.get("data", {}) for cell in notebook.cells if cell.cell_type == "code"
             for out in cell.get("outputs", []))


def text(notebook) -> str:
  return "".join(out.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                 for out in cell.get("outputs", []))


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_committed_stripped_and_starts_with_what_it_shows(name):
  notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
  nbformat.validate(notebook)
  assert notebook.cells[0].cell_type == "markdown" and notebook.cells[0].source.startswith("# ")
  for cell in notebook.cells:
    if cell.cell_type == "code":
      assert cell.outputs == [] and cell.execution_count is None, f"{name}: outputs not stripped"


@pytest.mark.slow
def test_01_data_tour_runs(environment):
  notebook = execute("01_data_tour", environment)
  out = text(notebook)
  assert "OpenPose:" in out and "validation (held out of training)" in out
  shared = (REPO_ROOT.parent / "shared" / "imigue" / "skeleton_sample" / "298").is_dir()
  assert ("video 298, frames" in out) == shared and ("skipped: the real iMiGUE" in out) == (not shared)
  # raw clip (2), class counts, stored frames, 3 augmentation views, heatmaps; + 2 for the real sample.
  assert images(notebook) >= 8 + 2 * shared


@pytest.mark.slow
def test_02_model_inspection_runs(environment):
  notebook = execute("02_model_inspection", environment)
  out = text(notebook)
  assert "checkpoint step 4" in out and "test top-1:" in out and "without keypoints: top-1" in out
  assert "no ablation runs" not in out  # the run itself is found as the full+extras ablation
  # top-5, skeleton, patch weights, gate, gate vs reliability, attention, heads, ablations, top-5 without keypoints
  assert images(notebook) >= 9


@pytest.mark.slow
def test_03_error_analysis_runs(environment):
  notebook = execute("03_error_analysis", environment)
  out = text(notebook)
  assert "checkpoint step 4" in out and "test clips misclassified" in out
  # the eval.json of the short training holds the same top-1 as the notebook's own predictions
  recorded = json.loads((pathlib.Path(environment["CLIPMG_RUN"]) / "eval.json").read_text())
  assert f"top1 {recorded['top1']:.4f}" in out
  assert images(notebook) >= 3
