"""XLA compiles of this process and their seconds, from jax.monitoring's events, so that a benchmark can say how many
compiles each of its parts made and how long they took.

Every backend compile records /jax/core/compile/backend_compile_duration, a load from the persistent compilation
cache too (a short one); a cache hit also records /jax/compilation_cache/cache_hits just before it, which is how the
two are told apart. jax keeps listeners for the life of the process, so one log is made once (`the_log`).
"""

import threading

from jax import monitoring

COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
CACHE_HIT_EVENT = "/jax/compilation_cache/cache_hits"
# jax's persistent cache stores only compiles longer than this (jax_persistent_cache_min_compile_time_secs), and the
# shorter ones (random inputs, small functions) are not what a time budget is made of: listed apart from the long ones.
LONG_SECONDS = 1.0


class CompileLog:
  """Appends (function name, seconds, was a cache hit) for every backend compile of the process."""

  def __init__(self):
    self.entries = []
    self._lock = threading.Lock()
    self._hit = threading.local()  # the cache-hit event comes first, on the compiling thread
    monitoring.register_event_listener(self._on_event)
    monitoring.register_event_duration_secs_listener(self._on_duration)

  def _on_event(self, event, **_):
    if event == CACHE_HIT_EVENT:
      self._hit.pending = True

  def _on_duration(self, event, seconds, **kwargs):
    if event != COMPILE_EVENT:
      return
    hit = getattr(self._hit, "pending", False)
    self._hit.pending = False
    with self._lock:
      self.entries.append((str(kwargs.get("fun_name", "?")), float(seconds), hit))

  def mark(self) -> int:
    return len(self.entries)

  def since(self, mark: int) -> dict:
    """The compiles after `mark`: counts and seconds, and each long one as [name, seconds]."""
    with self._lock:
      entries = self.entries[mark:]
    compiles = [e for e in entries if not e[2]]
    long = [[name, round(s, 2)] for name, s, _ in compiles if s >= LONG_SECONDS]
    return dict(compiles=len(compiles), compile_seconds=round(sum(e[1] for e in compiles), 2),
                long_compiles=len(long), long_compile_seconds=round(sum(s for _, s in long), 2),
                cache_hits=sum(e[2] for e in entries), cache_load_seconds=round(sum(e[1] for e in entries if e[2]), 2),
                long=long)


_LOG = []


def the_log() -> CompileLog:
  if not _LOG:
    _LOG.append(CompileLog())
  return _LOG[0]
