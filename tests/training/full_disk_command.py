"""Runs `python -m clipmg_jax.<argv[2]>` (argv[3:] its flags) as on a disk that is full when the command writes
`argv[1]`:

  checkpoint  every array write of a checkpoint fails as tensorstore (Orbax's writer) reports ENOSPC, at moments
              spread over half a second, so that some fail after Orbax has given up on the save: the way the writes
              of one save end on a full file system (each of its threads logs it, each late one prints a traceback).
  cache       the prefix cache's build fails with the OS's ENOSPC on its first shard.

Portable (no small file system to mount); tests/training/test_full_disk.py also fills a real one where it can."""

import errno
import itertools
import os
import runpy
import sys
import threading

import tensorstore as ts

_TENSORSTORE_ENOSPC = ("RESOURCE_EXHAUSTED: Error writing in OCDBT database: Failed writing: Failed to write 4096 "
                       "bytes to file 23: No space left on device [os_error_code='28']")


def fail_checkpoint_writes() -> None:
  order = itertools.count()

  def write(self, *args, **kwargs):
    del self, args, kwargs
    promise, future = ts.Promise.new()
    threading.Timer(0.02 * (next(order) % 25), promise.set_exception, [ValueError(_TENSORSTORE_ENOSPC)]).start()
    return future

  ts.TensorStore.write = write


def fail_cache_build() -> None:
  from clipmg_jax.training import prefix_cache  # pylint: disable=import-outside-toplevel

  def build(config, out, **kwargs):
    del config, kwargs
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.path.join(out, "train-00000.tfrecord"))

  prefix_cache.build = build


if __name__ == "__main__":
  {"checkpoint": fail_checkpoint_writes, "cache": fail_cache_build}[sys.argv[1]]()
  module = f"clipmg_jax.{sys.argv[2]}"
  sys.argv = [module, *sys.argv[3:]]
  runpy.run_module(module, run_name="__main__", alter_sys=True)
