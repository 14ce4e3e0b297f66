"""A command's output paths, checked before any work: never one of its inputs, writable, of a format it writes.

A render that lands on the video it reads, or an export written into the run it exports, destroys the input; an
unwritable or extension-less path found only after an hour of work loses that hour. Commands call `check_file` /
`check_folder` for every output flag first; OutputPathError's message names the flag, the path and what to change
(cli_errors prints it as one line).
"""

import os
import pathlib


class OutputPathError(ValueError):
  """An output path that is one of the command's inputs, cannot be written, or has a format the command can't write."""


def _same(a: pathlib.Path, b: pathlib.Path) -> bool:
  """Whether a and b are one file or folder, by any path (links, relative parts, hard links)."""
  try:
    return a.exists() and b.exists() and os.path.samefile(a, b)
  except OSError:
    return False


def _writable_parent(path: pathlib.Path, flag: str) -> None:
  """OutputPathError unless the nearest existing folder above `path` can be written (it makes the rest)."""
  parent = path.absolute().parent
  while not parent.exists():
    parent = parent.parent
  if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
    raise OutputPathError(f"--{flag}={path}: {parent} cannot be written; choose a folder you can write to")


def _not_an_input(path: pathlib.Path, flag: str, inputs: dict[str, object]) -> None:
  for name, given in inputs.items():
    if not given:
      continue
    given = pathlib.Path(given)
    if _same(path, given):
      raise OutputPathError(f"--{flag}={path} is the input --{name}={given} (the same file or folder): writing there "
                            f"would destroy it; choose another path for --{flag}")


def check_file(path, *, flag: str, suffixes: tuple[str, ...], inputs: dict[str, object] | None = None) -> pathlib.Path:
  """The output file `path` of --flag, checked: its suffix one of `suffixes` (".mp4"), not an existing folder, not one
  of `inputs` ({flag name: path}, by any path to the same file), its folder writable."""
  path = pathlib.Path(path)
  if path.suffix.lower() not in suffixes:
    raise OutputPathError(f"--{flag}={path}: expected a file name ending in {' or '.join(suffixes)}")
  if path.is_dir():
    raise OutputPathError(f"--{flag}={path} is a folder; give a file name ending in {' or '.join(suffixes)}")
  _not_an_input(path, flag, inputs or {})
  _writable_parent(path, flag)
  if path.exists() and not os.access(path, os.W_OK):
    raise OutputPathError(f"--{flag}={path} exists and cannot be overwritten")
  return path


def check_folder(path, *, flag: str, inputs: dict[str, object] | None = None) -> pathlib.Path:
  """The output folder `path` of --flag, checked: not a file, not one of `inputs`, writable."""
  path = pathlib.Path(path)
  if path.exists() and not path.is_dir():
    raise OutputPathError(f"--{flag}={path} is a file; give a folder")
  _not_an_input(path, flag, inputs or {})
  _writable_parent(path / "_", flag)
  return path
