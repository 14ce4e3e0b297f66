"""notebooks/explore_results.ipynb is a valid notebook whose code runs on an eval.json written by the trainer."""

import json
import pathlib

import matplotlib
import numpy as np

from clipmg_jax.training import evaluation
from clipmg_jax.training import metrics

NOTEBOOK = pathlib.Path(__file__).resolve().parents[2] / "notebooks" / "explore_results.ipynb"


def test_notebook_runs_on_an_eval_json(tmp_path, monkeypatch):
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 5, 40)
  result = metrics.classification_metrics(rng.normal(size=(40, 5)), labels, rng.integers(0, 3, 40),
                                          [f"class {i}" for i in range(5)])
  evaluation.write_results(result, tmp_path)
  notebook = json.loads(NOTEBOOK.read_text())
  assert notebook["nbformat"] == 4
  code = [("".join(c["source"])) for c in notebook["cells"] if c["cell_type"] == "code"]
  assert code
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  monkeypatch.setattr(plt, "show", lambda: plt.close("all"))
  namespace = {}
  for source in code:
    source = source.replace('pathlib.Path("../runs/synthetic")', f"pathlib.Path({str(tmp_path)!r})")
    exec(compile(source, str(NOTEBOOK), "exec"), namespace)  # pylint: disable=exec-used
  assert namespace["result"]["num_examples"] == 40
