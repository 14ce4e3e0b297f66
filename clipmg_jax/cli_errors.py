"""Failures with a known cause as one short message and a non-zero exit status instead of a traceback, for every
`python -m clipmg_jax.<command>` (clipmg_jax/command.py runs each command through here).

parse_flags: a misspelled --config.<field> override (with ml_collections' "Did you mean" hint) or a bad flag;
config_or_exit: a config file that does not exist or does not load; known_failures: the failures of the work itself
(non-finite loss, unreadable or missing checkpoints, missing or corrupt shards, a full disk, results that cannot be
written, a tower left random, a workdir another run holds, a prefix cache of another tower, depth or data, an export
folder with a missing, truncated or altered file) and
preemption (exit status 143 after its checkpoint), Ctrl-C (130, one line). Anything else keeps its traceback. No
flags are defined here, so tests can import it next to any command.
"""

import contextlib
import sys

from absl import flags
import jax

from clipmg_jax import disk_full
from clipmg_jax.data.loader import token_pipeline
from clipmg_jax.data.raw import video as video_io
from clipmg_jax.data.records import convert
from clipmg_jax.data.records import manifest as manifest_lib
from clipmg_jax.data.records import tfrecord
from clipmg_jax.exported import artifact
from clipmg_jax.prediction import pose
from clipmg_jax.prediction import records
from clipmg_jax.run import preemption
from clipmg_jax.run import output_paths
from clipmg_jax.run import workdir_lock
from clipmg_jax.training import checkpointing
from clipmg_jax.training import evaluation
from clipmg_jax.training import model_setup
from clipmg_jax.training import trainer

PREEMPTED_EXIT_CODE = preemption.PREEMPTED_EXIT_CODE  # 143
INTERRUPTED_EXIT_CODE = preemption.INTERRUPTED_EXIT_CODE  # 130
# Errors whose message already names what to change: printed as "<name>: <message>".
KNOWN_ERRORS = (trainer.NonFiniteLossError, trainer.ConfigError, checkpointing.CheckpointCorruptError,
                checkpointing.NoCheckpointError, manifest_lib.DataSetupError, model_setup.RandomVisionTowerError,
                token_pipeline.PrefixCacheError,
                evaluation.ResultsNotWrittenError, workdir_lock.WorkdirLockedError,
                workdir_lock.WorkdirNotWritableError, artifact.ExportedArtifactError,
                output_paths.OutputPathError)
# The data side's: raw data the converter cannot plan (data_prep/convert.py runs in known_failures too); a video
# that cannot be read, a clip range past its last decodable frame, a clip without a person, a failed extraction.
KNOWN_DATA_ERRORS = (convert.RawDataError, video_io.UnreadableVideoError, records.FrameRangeError,
                     records.NothingToClassifyError, pose.PoseExtractionError)


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing (app.run's flags_parser), exiting with status 1 and a short message on a bad flag or
  --config."""
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


@contextlib.contextmanager
def known_failures(workdir: str | None = None, *, folder_flag: str = "workdir",
                   rerun: str = "it resumes from the last complete checkpoint"):
  """Inside, a failure with a known cause becomes SystemExit with one short message saying what to do (naming
  --<folder_flag>=<workdir> and what a rerun does for a full disk), preemption SystemExit(PREEMPTED_EXIT_CODE)
  after its checkpoint, Ctrl-C INTERRUPTED_EXIT_CODE; anything else propagates unchanged."""
  try:
    yield
  except preemption.Preempted as e:
    print(e, flush=True)
    if jax.process_count() == 1:
      preemption.exit_now(PREEMPTED_EXIT_CODE)
    raise SystemExit(PREEMPTED_EXIT_CODE) from None
  except KeyboardInterrupt:
    # What was saved is already said (the training loop logs its checkpoint); a traceback would add nothing, and a
    # Ctrl-C inside XLA's compiler leaves the same half-made objects as a SIGTERM there (see preemption.exit_now).
    print("interrupted (Ctrl-C)", file=sys.stderr, flush=True)
    if jax.process_count() == 1:
      preemption.exit_now(INTERRUPTED_EXIT_CODE)
    raise SystemExit(INTERRUPTED_EXIT_CODE) from None
  except KNOWN_ERRORS + KNOWN_DATA_ERRORS as e:
    raise SystemExit(f"{type(e).__name__}: {e}") from None
  except tfrecord.CorruptRecordError as e:
    raise SystemExit(f"CorruptRecordError: {e}\nRe-convert the shard, or set --config.data.skip_corrupt=True to "
                     "skip unreadable records (each is logged, left out, and counted in eval.json as "
                     "skipped_records).") from None
  except (OSError, ValueError) as e:  # ValueError: tensorstore's form of the OS error (disk_full.py)
    if not disk_full.is_disk_full(e):
      raise
    # One line, not a traceback per failing writer thread: the fix is the same whichever file hit the limit.
    raise SystemExit(disk_full.message(e, folder_flag, workdir, rerun)) from None
