"""The exported function as an ONNX model (jax2onnx, the `onnx` extra) and run with ONNX Runtime.

The weights are inside model.onnx, as ONNX initializers. `convert` never ships a model that computes something
else: jax2onnx converts every operation or raises (naming the one it has no rule for), and what it wrote is run by
ONNX Runtime on a probe batch of an odd size and compared with the jax program; a failure of either leaves no
model.onnx and export.json says why ("onnx": {"written": false, "reason": ...}).
"""

import contextlib
import logging
import pathlib
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from clipmg_jax.exported import artifact

TOLERANCE = 1e-4  # the largest |ONNX Runtime - jax program| accepted on the probe batch, float32 outputs
PROBE_BATCH = 3  # odd: a batch size the program was not traced at
# How to install the `onnx` extra without moving orbax-checkpoint back (docs/deployment.md "ONNX").
INSTALL = "pip install onnx onnx-ir onnxruntime && pip install --no-deps jax2onnx==0.17.1"


def probe_inputs(frames_shape: Sequence[int], keypoints_shape: Sequence[int], batch: int,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """`batch` random clips: frames uint8 (batch, *frames_shape) and keypoints float32 (batch, *keypoints_shape)
  inside the S x S frames, confidences in [0, 1], about one joint in five missing (confidence 0)."""
  rng = np.random.default_rng(seed)
  frames = rng.integers(0, 256, (batch, *frames_shape), dtype=np.uint8)
  keypoints = rng.uniform(0, frames_shape[1], (batch, *keypoints_shape)).astype(np.float32)
  keypoints[..., 2] = rng.uniform(0, 1, keypoints.shape[:-1]) * (rng.random(keypoints.shape[:-1]) > 0.2)
  return frames, keypoints


def convert(infer: Callable[..., dict], weights: list[tuple[str, np.ndarray]], specs: Sequence[jax.ShapeDtypeStruct],
            path: pathlib.Path, *, check: jax.export.Exported) -> dict:
  """Writes model.onnx at `path`: infer(weights, frames, keypoints) with the weights as constants and the batch
  dimension symbolic, checked against the exported program `check` (TOLERANCE on a PROBE_BATCH batch). Returns
  export.json's "onnx" entry: {"written": True, "file", "opset", "jax2onnx", "probe_max_abs_diff"} or
  {"written": False, "reason"}; nothing is left at `path` unless written."""
  try:
    import jax2onnx  # pylint: disable=import-outside-toplevel
    import onnx  # pylint: disable=import-outside-toplevel
    import onnxruntime  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import  (the check below)
  except ImportError as e:
    return {"written": False, "reason": f"{e.name} is not installed (the `onnx` extra: {INSTALL})"}
  values = [jnp.asarray(w) for _, w in weights]
  (batch,) = jax.export.symbolic_shape("batch")
  symbolic = [jax.ShapeDtypeStruct((batch, *s.shape[1:]), s.dtype) for s in specs]
  names = list(jax.tree.unflatten(check.out_tree, check.out_avals))  # the program's output dict's keys, in leaf order
  try:
    with _quiet("jax2onnx", "onnx_ir"):
      model = jax2onnx.to_onnx(lambda frames, keypoints: infer(values, frames, keypoints), symbolic,
                               model_name="clipmg", input_names=["frames", "keypoints"], output_names=names)
  except Exception as e:  # pylint: disable=broad-except  (jax2onnx's errors name the operation; shipped as the reason)
    return {"written": False, "reason": f"jax2onnx cannot convert the model: {type(e).__name__}: "
                                        f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}"}
  onnx.save(model, str(path))
  probe = probe_inputs(specs[0].shape[1:], specs[1].shape[1:], PROBE_BATCH)
  expected = {k: np.asarray(v) for k, v in check.call([w for _, w in weights], *probe).items()}
  try:
    got = OnnxModel(path)(*probe)
    diff = max(float(np.max(np.abs(got[k] - v))) for k, v in expected.items())
  except Exception as e:  # pylint: disable=broad-except
    path.unlink(missing_ok=True)
    return {"written": False, "reason": f"ONNX Runtime cannot run the converted model: {type(e).__name__}: {e}"}
  if not diff <= TOLERANCE:
    path.unlink(missing_ok=True)
    return {"written": False, "reason": f"the converted model's outputs differ from the program's by {diff:.3g} > "
                                        f"{TOLERANCE} on a probe batch: not shipped"}
  return {"written": True, "file": path.name, "opset": int(model.opset_import[0].version),
          "jax2onnx": _version("jax2onnx"), "probe_max_abs_diff": diff}


@contextlib.contextmanager
def _quiet(*loggers: str):
  """Only errors from these loggers inside: jax2onnx logs a traceback for each of its example plugins whose library
  (equinox, dm-pix, MaxText) is not installed, and onnx_ir a warning per shape constant it writes without a type."""
  saved = {name: logging.getLogger(name).level for name in loggers}
  for name in loggers:
    logging.getLogger(name).setLevel(logging.ERROR)
  try:
    yield
  finally:
    for name, level in saved.items():
      logging.getLogger(name).setLevel(level)


def _version(package: str) -> str:
  from importlib import metadata  # pylint: disable=import-outside-toplevel
  return metadata.version(package)


class OnnxModel:
  """model.onnx in an ONNX Runtime CPU session, called as artifact.ExportedModel is (numpy in, dict out)."""

  def __init__(self, path: str | pathlib.Path):
    import onnxruntime  # pylint: disable=import-outside-toplevel
    self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    self.output_names = [o.name for o in self.session.get_outputs()]

  @classmethod
  def from_folder(cls, folder: str | pathlib.Path) -> "OnnxModel":
    """The export folder's model.onnx, checked against its export.json first."""
    return cls(artifact.verified(folder, artifact.ONNX, artifact.read_info(folder)))

  def __call__(self, frames: np.ndarray, keypoints: np.ndarray) -> dict[str, np.ndarray]:
    out = self.session.run(None, {"frames": np.asarray(frames), "keypoints": np.asarray(keypoints)})
    return dict(zip(self.output_names, out))
