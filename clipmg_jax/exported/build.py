"""A trained run written as an export folder (artifact.py describes it and reads it back with jax and numpy alone).

The program is the evaluation step's own function (training/step.py eval_outputs: CLIP normalisation of the uint8
frames, heatmaps rendered from the keypoints inside the model; logits and the per-window gate, reliability and patch
entropy out), exported with jax.export for every platform of PLATFORMS and a symbolic batch dimension, so one file
serves a CPU, a CUDA GPU or a TPU at any batch size.

The weights travel beside the program (weights.npz), as its first argument, not baked into it as constants: the
program stays small (kilobytes to a few MB, whatever the model's size), the weights stay plain named arrays that
numpy reads and that are hashed on their own (their digest is the checkpoint's), and the paper-size model's 350 MB
never pass through the StableHLO serializer and the compiler's constant handling, which would hold several copies of
them while the program loads. ONNX (onnx_file.py) keeps them inside model.onnx, as ONNX initializers do.
"""

import dataclasses
import pathlib
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from clipmg_jax.exported import artifact
from clipmg_jax.exported import onnx_file
from clipmg_jax.models import variants
from clipmg_jax.prediction import predictor as predictor_lib
from clipmg_jax.training import model_setup
from clipmg_jax.training import step as step_lib

PLATFORMS = ("cpu", "cuda", "tpu")  # jax.export lowers for each; the loader's device picks one at run time
BATCH = "batch"  # the name of the symbolic batch dimension in the program and in export.json


def named_weights(params: Any) -> list[tuple[str, np.ndarray]]:
  """(path "vit/conv1/kernel", numpy array) of every parameter, in the tree's leaf order (the program's)."""
  leaves = jax.tree_util.tree_flatten_with_path(jax.device_get(params))[0]
  return [(jax.tree_util.keystr(path, simple=True, separator="/"), np.asarray(leaf)) for path, leaf in leaves]


def inference_function(predictor: predictor_lib.Predictor) -> Callable[..., dict[str, jax.Array]]:
  """(weights: the parameters' leaves in tree order, frames uint8 (B,T,S,S,3), keypoints float32 (B,Tp,18,3)) ->
  the eval step's outputs for the run's model."""
  bundle, treedef = predictor.setup.model, jax.tree.structure(predictor.params)

  def infer(weights, frames, keypoints):
    params = jax.tree.unflatten(treedef, weights)
    return step_lib.eval_outputs(bundle.module, bundle.normalize, params, {"frames": frames, "keypoints": keypoints})

  return infer


def input_specs(predictor: predictor_lib.Predictor, batch: Any) -> tuple[jax.ShapeDtypeStruct, jax.ShapeDtypeStruct]:
  """(frames, keypoints) of `batch` clips (an int or a symbolic dimension) as the pipeline batches them."""
  frames, keypoints = model_setup.input_shapes(predictor.setup.model, predictor.setup.data.image_size, batch)
  return jax.ShapeDtypeStruct(frames, jnp.uint8), jax.ShapeDtypeStruct(keypoints, jnp.float32)


def export_program(predictor: predictor_lib.Predictor) -> tuple[jax.export.Exported, list[tuple[str, np.ndarray]]]:
  """The run's inference function exported for PLATFORMS with a symbolic batch, and its named weights."""
  weights = named_weights(predictor.params)
  (batch,) = jax.export.symbolic_shape(BATCH)
  specs = ([jax.ShapeDtypeStruct(w.shape, w.dtype) for _, w in weights], *input_specs(predictor, batch))
  return jax.export.export(jax.jit(inference_function(predictor)), platforms=PLATFORMS)(*specs), weights


def _described(avals: dict) -> dict:
  return {name: {"shape": [d if isinstance(d, int) else str(d) for d in a.shape], "dtype": str(a.dtype)}
          for name, a in avals.items()}


def write_export(predictor: predictor_lib.Predictor, out: str | pathlib.Path, *, onnx: bool = True,
                 log: Callable[[str], None] = print) -> dict:
  """Writes the export folder `out` (artifact.py's files; model.onnx when `onnx` and the model converts) and
  returns what export.json holds. A file of an earlier export in `out` that this one does not write is removed, and
  export.json is written last: a folder whose export stopped half-way has none."""
  out = pathlib.Path(out)
  out.mkdir(parents=True, exist_ok=True)
  for name in (artifact.INFO, artifact.PROGRAM, artifact.WEIGHTS, artifact.ONNX):
    (out / name).unlink(missing_ok=True)
  exported, weights = export_program(predictor)
  (out / artifact.PROGRAM).write_bytes(exported.serialize())
  np.savez(out / artifact.WEIGHTS, **dict(weights))
  files = [artifact.PROGRAM, artifact.WEIGHTS]
  (_, *inputs), _ = jax.tree.unflatten(exported.in_tree, exported.in_avals)  # ((weights, frames, keypoints), {})
  outputs = jax.tree.unflatten(exported.out_tree, exported.out_avals)
  if onnx:
    converted = onnx_file.convert(inference_function(predictor), weights, input_specs(predictor, 1),
                                  out / artifact.ONNX, check=exported)
  else:
    converted = {"written": False, "reason": "not asked for (--noonnx)"}
  if converted["written"]:
    files.append(artifact.ONNX)
  log(f"ONNX: {converted.get('reason') or 'model.onnx written'}")
  config, run = predictor.config, predictor.run
  info = {
      "format": artifact.FORMAT,
      "files": {name: artifact.file_entry(out / name) for name in files},
      "class_names": predictor.class_names,
      "inputs": {**_described(dict(zip(("frames", "keypoints"), inputs))),
                 "layout": "frames: RGB uint8 in [0, 255], T frames of S x S pixels; keypoints: x, y in pixels of "
                           "those frames and a confidence in [0, 1] (0 = missing), COCO-18 joint order; the batch "
                           "is any size >= 1"},
      "outputs": _described(outputs),
      "program": {"file": artifact.PROGRAM, "platforms": list(exported.platforms), "batch": BATCH,
                  "calling_convention_version": exported.calling_convention_version,
                  "arguments": "(weights: weights.npz's arrays in weights.names order, frames, keypoints)"},
      "weights": {"file": artifact.WEIGHTS, "names": [name for name, _ in weights],
                  "parameters": int(sum(w.size for _, w in weights))},
      "onnx": converted,
      "model": {"variant": variants.name(config.model), "image_size": int(predictor.setup.data.image_size),
                "num_classes": len(predictor.class_names),
                "classifies_without_pose": predictor.classifies_without_pose,
                "reliability_floor": predictor.reliability_floor},
      "checkpoint": {"workdir": str(predictor.workdir), "step": run.step, "rule": run.rule,
                     "params_sha256": artifact.weights_digest(weights)},
      "preparation": {"convert_options": dataclasses.asdict(predictor.convert_options()),
                      "data": config.data.to_dict(), "batch_size": int(predictor.batch_size)},
      "jax_version": jax.__version__,
  }
  artifact.write_info(out, info)
  return info
