"""The one message for a full disk: every command's (cli_errors.known_failures) and data_prep/extract_pose.py's,
which runs in its own environment and so can import only this module of the project (it needs only the standard
library)."""

import errno


# Tensorstore (Orbax's array writer) reports the operating system's error inside its status text, as a ValueError:
# 'RESOURCE_EXHAUSTED: Error writing ...: No space left on device [os_error_code='28']'.
_TENSORSTORE_MARK = f"[os_error_code='{errno.ENOSPC}']"


def is_disk_full(error: BaseException) -> bool:
  """Whether `error` is the operating system's "No space left on device", raised by Python or by tensorstore."""
  if isinstance(error, OSError):
    return error.errno == errno.ENOSPC
  return isinstance(error, ValueError) and _TENSORSTORE_MARK in str(error)


def message(error: OSError, folder_flag: str, folder, rerun: str) -> str:
  """What to print: the error, the folder to free space under (as its flag) and what running the same command
  again does (`rerun`, e.g. "finished shards are kept")."""
  return (f"disk full: {error}\nFree space under --{folder_flag}={folder} and run the same command again: "
          f"{rerun}.")
