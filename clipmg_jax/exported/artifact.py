"""An export folder (`python -m clipmg_jax.export`) read back and run with jax and numpy alone.

This module imports only the standard library, numpy and jax (whose jax.export serialization needs the small
`flatbuffers` package): no flax, optax, orbax, grain or ml_collections, and nothing else of this project, so it can
be copied beside an export folder and used where the training code is not installed:

  model = ExportedModel("exported/")                      # checks every file against export.json first
  out = model(frames, keypoints)   # uint8 (B, 8, S, S, 3) RGB, float32 (B, 32, 18, 3) (x, y pixels, confidence)
  out["logits"]                    # float32 (B, C); also "gate", "reliability", "patch_entropy" (B, 8) where the
  model.class_names                # variant has them

The folder:
  model.jaxexport  the serialized jax.export.Exported of (weights, frames, keypoints) -> outputs: CLIP normalisation
                   of the frames and the heatmaps rendered from the keypoints are inside it; any batch size
  weights.npz      its weights, one float array per parameter, named by its path ("vit/conv1/kernel")
  export.json      what each file is (size and sha256, checked before a byte of it is used), the classes, inputs,
                   outputs, the checkpoint (step, parameter digest) and how clips are prepared (build.py writes it)
  model.onnx       (when the model converted) the same function with the weights inside, for ONNX Runtime
"""

import hashlib
import json
import pathlib
from typing import Iterable, Mapping

import jax
import numpy as np

INFO = "export.json"
PROGRAM = "model.jaxexport"
WEIGHTS = "weights.npz"
ONNX = "model.onnx"
FORMAT = 1  # of export.json; a reader refuses another


class ExportedArtifactError(ValueError):
  """A file of an export folder that is missing, truncated, altered or not of this format (named in the message)."""


def sha256_file(path: pathlib.Path) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      digest.update(chunk)
  return digest.hexdigest()


def file_entry(path: pathlib.Path) -> dict:
  """export.json's record of one file: {"bytes", "sha256"}."""
  return {"bytes": path.stat().st_size, "sha256": sha256_file(path)}


def weights_digest(named: Iterable[tuple[str, np.ndarray]]) -> str:
  """sha256 over the parameters in order: each one's name, dtype, shape and bytes. The same for the restored
  checkpoint (build.py records it) and for weights.npz read back."""
  digest = hashlib.sha256()
  for name, value in named:
    value = np.ascontiguousarray(value)
    digest.update(f"{name}|{value.dtype.str}|{value.shape}\n".encode())
    digest.update(value.tobytes())
  return digest.hexdigest()


def write_info(folder: str | pathlib.Path, info: Mapping) -> pathlib.Path:
  """Writes export.json (last, so that a folder whose export stopped half-way has none)."""
  path = pathlib.Path(folder) / INFO
  path.write_text(json.dumps(info, indent=1) + "\n")
  return path


def read_info(folder: str | pathlib.Path) -> dict:
  """export.json of an export folder, checked to be of this format."""
  path = pathlib.Path(folder) / INFO
  if not path.is_file():
    raise ExportedArtifactError(f"{path}: not found: {folder} is not an export folder (python -m clipmg_jax.export "
                                "writes one)")
  try:
    info = json.loads(path.read_text())
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    raise ExportedArtifactError(f"{path}: not valid JSON ({e}); export again") from None
  if not isinstance(info, dict) or info.get("format") != FORMAT or not isinstance(info.get("files"), dict):
    raise ExportedArtifactError(f"{path}: not an export.json of format {FORMAT} (has format "
                                f"{info.get('format') if isinstance(info, dict) else None!r})")
  return info


def verified(folder: str | pathlib.Path, name: str, info: Mapping) -> pathlib.Path:
  """The path of file `name` of the folder after checking its size and sha256 against export.json."""
  path = pathlib.Path(folder) / name
  expected = info["files"].get(name)
  if expected is None:
    raise ExportedArtifactError(f"{pathlib.Path(folder) / INFO} lists no {name}")
  if not path.is_file():
    raise ExportedArtifactError(f"{path}: missing (export.json lists it)")
  size = path.stat().st_size
  if size != expected["bytes"]:
    raise ExportedArtifactError(f"{path}: {size} bytes where export.json records {expected['bytes']} (truncated or "
                                "replaced); export again")
  if sha256_file(path) != expected["sha256"]:
    raise ExportedArtifactError(f"{path}: its sha256 differs from export.json's (the file was altered after export); "
                                "export again")
  return path


class ExportedModel:
  """An export folder ready to run on this machine's default device (CPU, a CUDA GPU or a TPU)."""

  def __init__(self, folder: str | pathlib.Path):
    self.folder = pathlib.Path(folder)
    self.info = read_info(self.folder)
    program = verified(self.folder, PROGRAM, self.info)
    try:
      exported = jax.export.deserialize(bytearray(program.read_bytes()))
    except Exception as e:  # pylint: disable=broad-except  (a format jax cannot read: say which jax wrote it)
      raise ExportedArtifactError(f"{program}: jax {jax.__version__} cannot deserialize it (written by jax "
                                  f"{self.info.get('jax_version')}): {type(e).__name__}: {e}") from None
    names = self.info["weights"]["names"]
    with np.load(verified(self.folder, WEIGHTS, self.info), allow_pickle=False) as saved:
      if sorted(saved.files) != sorted(names):
        raise ExportedArtifactError(f"{self.folder / WEIGHTS}: holds other arrays than export.json's weights.names")
      weights = [saved[name] for name in names]
    self._weights = jax.device_put(weights)
    self._run = jax.jit(exported.call)
    self.platforms = tuple(exported.platforms)

  @property
  def class_names(self) -> list[str]:
    return list(self.info["class_names"])

  @property
  def step(self) -> int:
    """The training step of the exported checkpoint."""
    return int(self.info["checkpoint"]["step"])

  def __call__(self, frames: np.ndarray, keypoints: np.ndarray) -> dict[str, np.ndarray]:
    """frames uint8 (B, T, S, S, 3) RGB in [0, 255]; keypoints float32 (B, Tp, 18, 3): x, y in pixels of the S x S
    frames, confidence in [0, 1] (0 = missing), COCO-18 order; B >= 1 (each new B compiles once). Returns the
    outputs of export.json "outputs" as numpy arrays: "logits" float32 (B, C) and, where the variant has them, the
    per-window float32 (B, T) "gate", "reliability" and "patch_entropy"."""
    frames, keypoints = np.asarray(frames), np.asarray(keypoints)
    for name, value in (("frames", frames), ("keypoints", keypoints)):
      spec = self.info["inputs"][name]
      if (str(value.dtype) != spec["dtype"] or value.ndim != len(spec["shape"])
          or any(d != s for d, s in zip(value.shape[1:], spec["shape"][1:]))):
        raise ValueError(f"{name} must be {spec['dtype']} {tuple(spec['shape'])}, got {value.dtype} {value.shape}")
    if len(frames) != len(keypoints):
      raise ValueError(f"frames and keypoints hold {len(frames)} and {len(keypoints)} clips")
    return {k: np.asarray(v) for k, v in self._run(self._weights, frames, keypoints).items()}
