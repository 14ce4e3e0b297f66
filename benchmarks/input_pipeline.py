"""Input-pipeline throughput: clips/s of the training pipeline with 0, 1 and 2 Grain worker processes.

Writes random shards (smooth random JPEG frames at short side 256, 16 stored frames per clip, random keypoints)
unless --shards_dir is given, then times the default training pipeline (8 RGB frames, random resized crop to 224,
flip, 32 pose frames) and prints clips/s per setting, clips/s per worker process, and the 1 -> 2 worker scaling.

  python benchmarks/input_pipeline.py [--clips 256] [--batches 30] [--workers 0,1,2] [--shards_dir DIR]

Worker counts are timed in turn in one run, so their ratio is meaningful even on a busy machine.
"""

import argparse
import pathlib
import tempfile
import time

from clipmg_jax.data import pipeline
from clipmg_jax.data import random_shards


def time_pipeline(config, batches: int, warmup: int) -> float:
  """Clips per second over `batches` batches after `warmup` batches (worker start-up excluded)."""
  it = iter(pipeline.make_dataset(config, "train"))
  for _ in range(warmup):
    next(it)
  start = time.perf_counter()
  for _ in range(batches):
    batch = next(it)
  elapsed = time.perf_counter() - start
  assert batch["frames"].shape[1:] == (config.num_frames, config.image_size, config.image_size, 3)
  if hasattr(it, "close"):
    it.close()
  return batches * config.batch_size / elapsed


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
    results = {}
    for workers in (int(w) for w in args.workers.split(",")):
      config.worker_count = workers
      results[workers] = time_pipeline(config, args.batches, args.warmup)
      per_process = results[workers] / max(workers, 1)
      print(f"worker_count={workers}: {results[workers]:7.1f} clips/s  ({per_process:6.1f} clips/s per "
            f"{'worker process' if workers else 'process (in-process decoding)'})")
    if 1 in results and 2 in results:
      print(f"scaling 1 -> 2 workers: x{results[2] / results[1]:.2f}")


if __name__ == "__main__":
  main()
