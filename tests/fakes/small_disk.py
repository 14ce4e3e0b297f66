"""A small real file system for tests of a full disk: a tmpfs of a given size (mounting needs root; where it cannot
be mounted, mount returns False and the test skips, its portable stand-in covering the message)."""

import pathlib
import subprocess


def mount(path: pathlib.Path, size: str) -> bool:
  """Mounts a tmpfs of `size` (e.g. "256k") at `path` (created); whether it could."""
  path.mkdir()
  try:
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
  except OSError:
    return False
  return done.returncode == 0


def unmount(path: pathlib.Path) -> None:
  subprocess.run(["umount", str(path)], check=False)
