"""A trained model outside the training code: `python -m clipmg_jax.export` writes an export folder, which runs with
jax and numpy alone (and as ONNX).

  artifact.py   the folder's files and export.json, their checks, and ExportedModel: the loader, which imports
                nothing of flax, optax, orbax, grain, ml_collections or the rest of this project
  build.py      a trained run (prediction.Predictor) written as an export folder: the eval step's function exported
                with jax.export (symbolic batch; cpu, cuda and tpu), its weights beside it, export.json
  onnx_file.py  the same function as model.onnx (jax2onnx, the `onnx` extra), checked with ONNX Runtime before it
                is kept
  predictor.py  an export folder in prediction.Predictor's place (python -m clipmg_jax.predict --exported)

This package's __init__ imports nothing, so that `clipmg_jax.exported.artifact` loads alone.
"""
