"""Command-line mistakes as one short message instead of a flag-parsing traceback: a misspelled --config.<field>
override (with ml_collections' "Did you mean" hint), a config file that does not exist or does not load."""

from absl import flags


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing (app.run's flags_parser), exiting with status 2 and a short message on a bad --config."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    raise SystemExit(f"{argv[0]}: {_text(e)}\nRun with --help for the flags.") from None
  except (KeyError, AttributeError, TypeError, ValueError, OSError) as e:
    overrides = [a for a in argv[1:] if a.startswith("--config.")]
    raise SystemExit(
        f"{argv[0]}: the config or an override cannot be used: {type(e).__name__}: {_text(e)}\n"
        + (f"Overrides given: {' '.join(overrides)}\n" if overrides else "")
        + "Fields are spelled as in the config file (e.g. --config.optimizer.learning_rate=1e-3); run with --help."
    ) from None


def _text(error: BaseException) -> str:
  # KeyError's str() is the repr of its message; ml_collections puts its "Did you mean" hint in the message.
  text = error.args[0] if isinstance(error, KeyError) and error.args else error
  return str(text).strip()



def config_or_exit(holder):
  """The config of a config_flags holder; a config file that failed to load (its error is deferred to the first
  access) exits with that error's message and no traceback."""
  try:
    config = holder.value
    config.get("seed")  # the first access raises the deferred load error
  except (OSError, ImportError, SyntaxError, AttributeError, TypeError) as e:
    raise SystemExit(f"the config cannot be loaded: {type(e).__name__}: {e}\n"
                     "Pass an existing config file, e.g. --config configs/synthetic.py (run with --help).") from None
  return config
