"""Input-pipeline throughput: clips/s of the training pipeline with 0, 1 and 2 Grain worker processes.

Writes random shards (smooth random JPEG frames at short side 256, 16 stored frames per clip, random keypoints)
unless --shards_dir is given, then times the default training pipeline (8 RGB frames, random resized crop to 224,
flip, 32 pose frames) and prints, per worker count: wall-clock clips/s, clips/s per worker process, and clips per
CPU-second of the worker processes (what one worker delivers on a free core, whatever the machine's load), then
the 1 -> 2 worker scaling of wall-clock clips/s.

  python -m benchmarks.input_pipeline [--clips 256] [--batches 30] [--workers 0,1,2] [--shards_dir DIR]

Worker counts are timed in turn in one run, so their ratio is meaningful even on a busy machine.
"""

import argparse
import os
import pathlib
import tempfile
import time

import psutil

from clipmg_jax.data.loader import pipeline
from clipmg_jax.data.records import random_shards


def _cpu_seconds(process: psutil.Process) -> tuple[float, float]:
  """(CPU seconds of this process, CPU seconds of its live child processes, e.g. Grain workers)."""
  own = process.cpu_times()
  children = 0.0
  for child in process.children(recursive=True):
    try:
      times = child.cpu_times()
      children += times.user + times.system
    except psutil.NoSuchProcess:
      pass
  return own.user + own.system, children


def time_pipeline(config, batches: int, warmup: int) -> tuple[float, float, float]:
  """(clips/s wall, clips per CPU-second of the calling process, clips per CPU-second of the worker processes)
  over `batches` batches after `warmup` batches (worker start-up excluded)."""
  it = iter(pipeline.make_dataset(config, "train"))
  for _ in range(warmup):
    next(it)
  me = psutil.Process()
  cpu_start = _cpu_seconds(me)
  start = time.perf_counter()
  for _ in range(batches):
    batch = next(it)
  elapsed = time.perf_counter() - start
  cpu_end = _cpu_seconds(me)
  assert batch["frames"].shape[1:] == (config.num_frames, config.image_size, config.image_size, 3)
  if hasattr(it, "close"):
    it.close()
  clips = batches * config.batch_size
  own, workers = (cpu_end[i] - cpu_start[i] for i in range(2))
  # Workers run ahead of the consumer by their buffers; over enough batches the difference is small.
  return clips / elapsed, clips / max(own, 1e-9), clips / max(workers, 1e-9)


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--shards_dir", default="", help="existing shards (default: write random ones to a temp dir)")
  parser.add_argument("--clips", type=int, default=256, help="random clips to write when --shards_dir is not given")
  parser.add_argument("--batch_size", type=int, default=16)
  parser.add_argument("--batches", type=int, default=30, help="timed batches per setting")
  parser.add_argument("--warmup", type=int, default=4, help="untimed batches per setting (worker start-up)")
  parser.add_argument("--workers", default="0,1,2", help="comma-separated worker counts to time")
  args = parser.parse_args()

  with tempfile.TemporaryDirectory() as tmp:
    shards_dir = args.shards_dir
    if not shards_dir:
      start = time.perf_counter()
      shards_dir = random_shards.write_random_shards(pathlib.Path(tmp) / "shards", splits={"train": args.clips},
                                                     clips_per_shard=64)
      print(f"wrote {args.clips} random clips (256x456 JPEG, 16 stored frames) in {time.perf_counter() - start:.1f}s")
    config = pipeline.get_data_config()
    config.shards_dir = str(shards_dir)
    config.batch_size = args.batch_size
    print(f"load average before timing: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs (busy CPUs lower "
          "wall-clock figures; clips per CPU-second does not depend on it)")
    results = {}
    for workers in (int(w) for w in args.workers.split(",")):
      config.worker_count = workers
      wall, per_own_cpu, per_worker_cpu = time_pipeline(config, args.batches, args.warmup)
      results[workers] = wall
      if workers:
        cores = wall / per_worker_cpu
        print(f"worker_count={workers}: {wall:7.1f} clips/s wall = {wall / workers:6.1f} clips/s per worker "
              f"process; {per_worker_cpu:6.1f} clips per worker CPU-second; workers got {cores:4.2f} CPU cores "
              f"(main process: {per_own_cpu:6.0f} clips per CPU-second)")
      else:
        print(f"worker_count=0: {wall:7.1f} clips/s wall (decoding in the calling process); "
              f"{per_own_cpu:6.1f} clips per CPU-second")
    if 1 in results and 2 in results:
      print(f"scaling 1 -> 2 workers: x{results[2] / results[1]:.2f} (wall clips/s)")


if __name__ == "__main__":
  main()
