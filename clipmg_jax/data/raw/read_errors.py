"""One error type for bad raw files: every reader raises ValueError naming the file (and line where it knows it),
so that the converter can record it as the clip's skip reason and a user can find the file."""

import csv
import functools
import os
from typing import Callable, TypeVar

F = TypeVar("F", bound=Callable)


def names_file(read: F) -> F:
  """Decorates a reader whose first argument is the path: low-level errors of malformed content (bad encoding,
  CSV syntax, numeric overflow) and ValueErrors that do not name the file become ValueError("<path>: ...")."""

  @functools.wraps(read)
  def wrapper(path: str | os.PathLike, *args, **kwargs):
    try:
      return read(path, *args, **kwargs)
    except (UnicodeDecodeError, csv.Error, OverflowError, RecursionError) as e:
      raise ValueError(f"{path}: malformed content ({type(e).__name__}: {e})") from None
    except ValueError as e:
      if str(path) in str(e):
        raise
      raise ValueError(f"{path}: {e}") from None

  return wrapper  # type: ignore[return-value]
