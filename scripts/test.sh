#!/usr/bin/env bash
# Install into ./.venv (first run) and run the whole test suite. Extra arguments go to pytest.
# Two worker processes by default (CLIPMG_TEST_WORKERS=0 runs in one): much of a JAX test is single-threaded
# compilation and data generation, so two files side by side use a 2-core machine better than one. Whole files go to
# one worker (--dist loadfile), so module-scoped fixtures (a generated dataset) are built once.
source "$(dirname "$0")/_venv.sh"
# The TPU compiler for the pod-slice compile test, kept beside .venv rather than in it: with libtpu importable, every
# JAX start-up on a machine without TPUs prints its failed search for one. The pin is the `tpu` extra's.
# A machine with no libtpu wheel for its platform skips that one test (it says why) rather than stopping here.
if [ ! -d .venv/libtpu/libtpu ]; then
  pin=$(python -c 'import tomllib; print(next(r for r in tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["tpu"] if r.startswith("libtpu")))')
  echo "[setup] installing $pin into .venv/libtpu (the TPU compiler, for tests/training/test_pod_slice.py)"
  python -m pip install -q --no-deps --target .venv/libtpu "$pin" \
    || echo "[setup] no $pin for this machine: tests/training/test_pod_slice.py will skip"
fi
export CLIPMG_LIBTPU_PATH="$PWD/.venv/libtpu"
# The pose extractor's environment, ./.venv-pose (scripts/pose_env.sh: mediapipe pins numpy<2, so it is apart from
# .venv), so that the extraction tests run (tests/data/test_extract_pose.py, tests/test_predict.py); about 90 s the
# first time. CLIPMG_TEST_POSE=0 leaves it out (those tests then skip, saying so); a machine where it cannot be made
# (no Python 3.9-3.12, no mediapipe wheel) goes on without it.
if [ "${CLIPMG_TEST_POSE:-1}" = "1" ] && [ ! -f .venv-pose/.installed-mediapipe-0.10.21 ]; then
  bash scripts/pose_env.sh || echo "[setup] .venv-pose could not be made: the pose-extraction tests will skip"
fi
# The `onnx` extra, for the ONNX half of tests/test_export.py, installed into .venv once. jax2onnx goes in without its
# declared dependencies (it pins orbax-checkpoint<0.11.37, which would move .venv's orbax back; it imports only onnx
# and onnx-ir, installed beside it as pyproject.toml pins them).
if ! python -c "import importlib.util as u, sys; sys.exit(not all(map(u.find_spec, ['jax2onnx', 'onnx_ir', 'onnxruntime'])))"; then
  onnx_extra=$(python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["onnx"]))')
  echo "[setup] installing the onnx extra into .venv (tests/test_export.py)"
  python -m pip install -q $(grep -v '^jax2onnx' <<< "$onnx_extra")
  python -m pip install -q --no-deps $(grep '^jax2onnx' <<< "$onnx_extra")
fi
# The Beam conversion tests (tests/data/test_beam_convert.py) run in an environment of their own, .venv/beam: the
# `beam` extra pins protobuf<7 and pyarrow<26, older than what .venv resolves, so it stays out of .venv (where those
# tests skip). It is made on the first run (about 1 minute; the tests then take about 25 s) and used when no pytest
# arguments are given; CLIPMG_TEST_BEAM=0 leaves it out.
beam_tests=${CLIPMG_TEST_BEAM:-$([ $# -eq 0 ] && echo 1 || echo 0)}
if [ "$beam_tests" = "1" ]; then
  beam_stamp=.venv/beam/.installed-$(cksum < pyproject.toml | cut -d' ' -f1)
  if [ ! -f "$beam_stamp" ]; then
    echo "[setup] installing clipmg_jax[beam] and pytest into .venv/beam (the Beam conversion tests)"
    "${PYTHON:-python3}" -m venv .venv/beam
    .venv/beam/bin/python -m pip install -q --upgrade pip
    .venv/beam/bin/python -m pip install -q -e ".[beam]" "$(python -c 'import tomllib; print(next(r for r in tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["test"] if r.startswith("pytest>")))')"
    rm -f .venv/beam/.installed-*; touch "$beam_stamp"
  fi
fi
workers=${CLIPMG_TEST_WORKERS:-2}
status=0
if [ "$workers" = "0" ]; then
  python -m pytest -q --durations=15 "$@" || status=$?
else
  python -m pytest -q --durations=15 -n "$workers" --dist loadfile "$@" || status=$?
fi
if [ "$beam_tests" = "1" ]; then
  echo "[beam] tests/data/test_beam_convert.py in .venv/beam"
  .venv/beam/bin/python -m pytest -q -p no:cacheprovider --durations=5 tests/data/test_beam_convert.py || status=$?
fi
exit $status
