"""The one shell of every `python -m clipmg_jax.<command>` (train, evaluate, pretrain, inspect_clip, predict,
export).

absl parses the flags (a missing or bad flag, a misspelled --config.<field> override: one short message, exit
status 1); main then runs with the libraries' INFO logs quieted, and a failure with a known cause ends in one short
message and exit status 1 (preemption: 143, after its checkpoint; Ctrl-C: 130). What counts as known, and each message:
clipmg_jax/cli_errors.py. A command defines its flags (config_flag, workdir_flag and its own) and a
main(config, session) that reads top to bottom; the shell reads --config, opens the command's Session once
(run/session.py: the processes joined and left; for a command that writes a run, its lock and the SIGTERM watch) and
calls main inside it. It ends with

  if __name__ == "__main__":
    command.run(main, config=_CONFIG, writes=True)   # train, pretrain; evaluate: processes=True; predict: neither
"""

import functools
from typing import Any, Callable

from absl import app
from absl import flags
from ml_collections import config_flags

from clipmg_jax import cli_errors
from clipmg_jax.run import logs
from clipmg_jax.run import session as session_lib


def config_flag(help_text: str, required: bool = True):
  """--config (required unless `required` is False: then its value is None when not given): a file with
  get_config(); `file.py:arg` passes arg to it and --config.<path>=<value> overrides a field. Read it with
  cli_errors.config_or_exit."""
  holder = config_flags.DEFINE_config_file("config", None, help_text, lock_config=True)
  if required:
    flags.mark_flag_as_required("config")
  return holder


def workdir_flag(help_text: str, required: bool = True) -> flags.FlagHolder:
  """--workdir (required unless `required` is False): the run's folder."""
  holder = flags.DEFINE_string("workdir", None, help_text)
  if required:
    flags.mark_flag_as_required("workdir")
  return holder


def run(main: Callable[[Any, session_lib.Session], Any], *, config=None, writes: bool = False,
        processes: bool = False, check: Callable[[Any], None] | None = None, output_flag: str = "workdir",
        rerun: str = "it resumes from the last complete checkpoint") -> None:
  """Runs main(config, session) as the program (absl's app.run) inside the shell described above; does not return.

  config: the command's config_flag holder (None: the command has none). writes: the session takes the --workdir's
  lock and the SIGTERM watch. processes: it joins the other processes (config.distributed) and leaves them at the
  end. check: checks of the config alone, run before the session takes anything, so that a misconfigured run
  stops at once and leaves no folder behind. output_flag, rerun: the flag of the folder the command writes and what
  running it again does, for the one message of a full disk."""
  app.run(functools.partial(_shell, main, config, writes, processes, check, output_flag, rerun),
          flags_parser=cli_errors.parse_flags)


def _shell(main, config_holder, writes: bool, processes: bool, check, output_flag: str, rerun: str,
           argv: list[str]) -> Any:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logs.quiet_library_logs()
  workdir = flags.FLAGS["workdir"].value if "workdir" in flags.FLAGS else None
  output = flags.FLAGS[output_flag].value if output_flag in flags.FLAGS else None
  with cli_errors.known_failures(output, folder_flag=output_flag, rerun=rerun):
    config = None
    if config_holder is not None and config_holder.value is not None:
      config = cli_errors.config_or_exit(config_holder)
    if check is not None:
      check(config)
    with session_lib.Session(config, workdir, writes=writes, processes=processes) as session:
      return main(config, session)
