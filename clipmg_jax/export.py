r"""Exports a trained checkpoint as a folder that runs without the training code: a serialized JAX program (jax
and numpy alone load it) and, when the model converts, an ONNX model.

  python -m clipmg_jax.export --config configs/synthetic.py --workdir runs/synthetic --out exported/
  python -m clipmg_jax.predict --exported exported/ --video my.mp4 --skeleton_dir skeletons/   # top-5 on the export

Use the --config (and overrides) the checkpoint was trained with. --out receives
  model.jaxexport  jax.export's serialization (StableHLO) of the whole inference function: uint8 frames and raw
                   keypoints in (the record's layout; CLIP normalisation and heatmap rendering inside), logits and
                   the per-window gate (with reliability and patch entropy) out; any batch size; for CPU, CUDA and
                   TPU. A jax whose jaxlib was built up to 6 months after the exporting one loads it (jax.export's
                   compatibility guarantee; docs/deployment.md).
  weights.npz      its weights, beside it (named arrays; the program takes them as its first argument)
  model.onnx       the same function with the weights inside, when jax2onnx (the `onnx` extra) converts every
                   operation and ONNX Runtime reproduces the program's outputs on a probe batch; otherwise absent,
                   and export.json's "onnx" entry says why
  export.json      the classes, the inputs' and outputs' shapes and dtypes, the variant, image size, checkpoint step
                   and parameter digest, the jax version, how clips are prepared, and every file's size and sha256,
                   checked by the loader before use

Loading it with jax and numpy alone (clipmg_jax/exported/artifact.py, which can be copied on its own):

  from clipmg_jax.exported.artifact import ExportedModel
  model = ExportedModel("exported/")
  logits = model(frames, keypoints)["logits"]   # frames uint8 (B, 8, S, S, 3), keypoints float32 (B, 32, 18, 3)
"""

from absl import flags

from clipmg_jax import command
from clipmg_jax.exported import build
from clipmg_jax.prediction import predictor as predictor_lib
from clipmg_jax.run import output_paths

_CONFIG = command.config_flag(
    "The training config file of the checkpoint (e.g. configs/synthetic.py), with its overrides.")
_WORKDIR = command.workdir_flag("The training run's folder (holds checkpoints/).")
_CHECKPOINT = flags.DEFINE_string("checkpoint", "latest", "'latest', 'best' (highest validation top-1) or a step.")
_OUT = flags.DEFINE_string("out", None, "The export folder to write (created; an earlier export there is replaced).")
_ONNX = flags.DEFINE_bool("onnx", True, "Also write model.onnx when jax2onnx is installed (the `onnx` extra) and "
                          "the model converts; --noonnx skips it.")
flags.mark_flag_as_required("out")


def main(config, session):
  # Before the checkpoint loads: an export folder written over the run (or its checkpoints) would replace them.
  output_paths.check_folder(_OUT.value, flag="out", inputs={"workdir": session.workdir,
                                                            "workdir's checkpoints": session.folder.checkpoints_dir})
  predictor = predictor_lib.Predictor(config, session.workdir, _CHECKPOINT.value)
  info = build.write_export(predictor, _OUT.value, onnx=_ONNX.value)
  checkpoint = info["checkpoint"]
  print(f"exported checkpoint {checkpoint['step']} ({checkpoint['rule']}) of {session.workdir}, variant "
        f"{info['model']['variant']}, {info['weights']['parameters']:,} parameters, to {_OUT.value}:")
  for name, entry in info["files"].items():
    print(f"  {name:16s} {entry['bytes']:>12,} bytes  sha256 {entry['sha256'][:16]}")
  print(f"  platforms {', '.join(info['program']['platforms'])}; batch dimension symbolic; jax {info['jax_version']}")


if __name__ == "__main__":
  command.run(main, config=_CONFIG, output_flag="out", rerun="the export is written again")
