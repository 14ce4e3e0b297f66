"""Readable command-line logs: INFO from this project, only warnings and errors from chatty libraries, and no
library tracebacks for a full disk (the command names it once, cli_errors.known_failures)."""

import logging
import sys

from clipmg_jax import disk_full

_QUIET = ("/orbax/", "/grain/", "/jax/_src/", "/absl/")


class _LibraryInfoFilter(logging.Filter):
  """Drops records below WARNING emitted from files of the libraries in _QUIET (Orbax logs every save step), and
  every record carrying a full disk's exception."""

  def filter(self, record: logging.LogRecord) -> bool:
    path = record.pathname.replace("\\", "/")
    from_library = any(part in path for part in _QUIET)
    if record.exc_info and disk_full.is_disk_full(record.exc_info[1]):
      # Each of Orbax's writer threads logs the same full disk with its traceback, and asyncio each of its tasks
      # that failed after the first; the command names it once.
      return False
    if record.levelno >= logging.WARNING:
      # Orbax warns at every periodic save that carries no metrics; only evaluated saves are ranked, by design.
      return not (from_library and "tracked_metric" in str(record.msg))
    return not from_library


def quiet_library_logs() -> None:
  """Installs the filter on every handler of the root and absl loggers, and the hook below (call once, in main)."""
  filt = _LibraryInfoFilter()
  for name in ("", "absl"):
    for handler in logging.getLogger(name).handlers:
      handler.addFilter(filt)
  sys.unraisablehook = _without_closed_loop_callbacks(sys.unraisablehook)


def _without_closed_loop_callbacks(hook):
  """sys.unraisablehook without "RuntimeError: Event loop is closed": when one of Orbax's writes fails it closes
  its event loop, and each write of the same save that ends later has tensorstore call into that loop and print
  this traceback (from a C++ thread, through this hook), dozens of them, after the failure the command reports."""

  def filtered(unraisable):
    error = unraisable.exc_value
    if isinstance(error, RuntimeError) and str(error) == "Event loop is closed" and unraisable.object is None:
      return
    hook(unraisable)

  return filtered
