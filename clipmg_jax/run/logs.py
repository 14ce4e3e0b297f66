"""Readable command-line logs: INFO from this project, only warnings and errors from chatty libraries."""

import logging

_QUIET = ("/orbax/", "/grain/", "/jax/_src/", "/absl/")


class _LibraryInfoFilter(logging.Filter):
  """Drops records below WARNING emitted from files of the libraries in _QUIET (Orbax logs every save step)."""

  def filter(self, record: logging.LogRecord) -> bool:
    path = record.pathname.replace("\\", "/")
    from_library = any(part in path for part in _QUIET)
    if record.levelno >= logging.WARNING:
      # Orbax warns at every periodic save that carries no metrics; only evaluated saves are ranked, by design.
      return not (from_library and "tracked_metric" in str(record.msg))
    return not from_library


def quiet_library_logs() -> None:
  """Installs the filter on every handler of the root and absl loggers (call once, in main)."""
  filt = _LibraryInfoFilter()
  for name in ("", "absl"):
    for handler in logging.getLogger(name).handlers:
      handler.addFilter(filt)
