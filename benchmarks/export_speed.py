r"""A trained run three ways on this CPU, side by side in one process: the live model (the checkpoint restored with
the training code, its jitted eval step), the exported program (clipmg_jax/exported/artifact.py) and ONNX Runtime
(model.onnx, where the export has one). Prints a markdown table: the artifacts' sizes, the load time (to the first
result: restore or deserialize, compile, one batch), and per batch size the median latency per clip (and its ratio
to the live model's) and clips/s.

The three are timed in turn within every repeat (round robin), so a load change on a shared machine falls on all of
them alike; the logits of the three are compared on the timed batch as well.

  python -m clipmg_jax.export --config configs/synthetic.py --workdir runs/synthetic --out runs/synthetic_export
  python -m benchmarks.export_speed --config configs/synthetic.py --workdir runs/synthetic \
      --export runs/synthetic_export [--batch_sizes 1,16 --repeats 20]
"""

import argparse
import os
import pathlib
import statistics
import time

import jax
import numpy as np

from clipmg_jax.exported import artifact
from clipmg_jax.exported import onnx_file
from clipmg_jax.prediction import predictor as predictor_lib
from clipmg_jax.run.folder import RunFolder
from clipmg_jax.training import runs


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--config", required=True, help="the run's config file (with :arg)")
  parser.add_argument("--workdir", required=True, help="the training run (holds checkpoints/)")
  parser.add_argument("--export", required=True, help="its export folder (python -m clipmg_jax.export)")
  parser.add_argument("--batch_sizes", default="1,16")
  parser.add_argument("--repeats", type=int, default=20, help="timed calls of each way per batch size")
  return parser.parse_args(argv)


def seconds_to_first(make):
  """(the object make() returns after its first batch, seconds from the start to that result)."""
  start = time.perf_counter()
  thing = make()
  return thing, time.perf_counter() - start


def folder_bytes(path: pathlib.Path) -> int:
  return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main(argv=None):
  args = parse_args(argv)
  folder = pathlib.Path(args.export)
  info = artifact.read_info(folder)
  frames_shape, keypoints_shape = (info["inputs"][k]["shape"][1:] for k in ("frames", "keypoints"))
  sizes = [int(b) for b in args.batch_sizes.split(",")]
  probe = onnx_file.probe_inputs(frames_shape, keypoints_shape, 1)

  def live():
    predictor = predictor_lib.Predictor(runs.load_config(args.config), args.workdir)
    step = predictor.setup.eval_step
    call = lambda f, k: {n: np.asarray(v) for n, v in step(predictor.params, {"frames": f, "keypoints": k}).items()}
    call(*probe)
    return call

  def exported():
    model = artifact.ExportedModel(folder)
    model(*probe)
    return model

  def onnx():
    model = onnx_file.OnnxModel.from_folder(folder)
    model(*probe)
    return model

  ways = {"live model (checkpoint + training code)": live, "exported program (jax.export)": exported}
  if info["onnx"]["written"]:
    ways["ONNX Runtime"] = onnx
  loaded = {name: seconds_to_first(make) for name, make in ways.items()}
  rows = {name: {"load_s": seconds} for name, (_, seconds) in loaded.items()}
  for batch in sizes:
    inputs = onnx_file.probe_inputs(frames_shape, keypoints_shape, batch, seed=batch)
    outs = {name: call(*inputs)["logits"] for name, (call, _) in loaded.items()}  # compiles this batch size
    reference = next(iter(outs.values()))
    times = {name: [] for name in loaded}
    for _ in range(args.repeats):
      for name, (call, _) in loaded.items():
        start = time.perf_counter()
        call(*inputs)
        times[name].append(time.perf_counter() - start)
    for name, t in times.items():
      median = statistics.median(t)
      rows[name][batch] = (1000 * median / batch, batch / median, float(np.max(np.abs(outs[name] - reference))))

  checkpoint = RunFolder(args.workdir).checkpoints_dir / str(info["checkpoint"]["step"])
  print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {len(os.sched_getaffinity(0))} usable cores, load "
        f"average {os.getloadavg()[0]:.2f}; {info['weights']['parameters']:,} parameters, {info['model']}")
  print("files: " + ", ".join(f"{n} {e['bytes'] / 1e6:.2f} MB" for n, e in info["files"].items())
        + (f"; checkpoint {checkpoint.name} {folder_bytes(checkpoint) / 1e6:.2f} MB (with optimizer state)"
           if checkpoint.is_dir() else ""))
  header = "| | load to first result (s) | " + " | ".join(
      f"batch {b}: ms per clip | batch {b}: clips/s" for b in sizes) + " | max abs logit diff |"
  print(header)
  print("|" + "---|" * (header.count("|") - 1))
  for name, row in rows.items():
    live_ms = next(iter(rows.values()))
    cells = " | ".join(f"{row[b][0]:.2f} ({row[b][0] / live_ms[b][0]:.2f}x) | {row[b][1]:.1f}" for b in sizes)
    print(f"| {name} | {row['load_s']:.2f} | {cells} | {max(row[b][2] for b in sizes):.1e} |")


if __name__ == "__main__":
  main()
