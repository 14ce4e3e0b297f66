"""Skeletons of one's own video: data_prep/extract_pose.py (MediaPipe BlazePose, written as OpenPose JSON) run in
its own environment, ./.venv-pose (mediapipe pins numpy<2 and an old jax; `bash scripts/pose_env.sh` makes it)."""

import os
import pathlib
import subprocess

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
EXTRACT_SCRIPT = REPO_ROOT / "data_prep" / "extract_pose.py"
EXTRACT_MODULE = "data_prep.extract_pose"  # EXTRACT_SCRIPT, run as a module
POSE_PYTHON = REPO_ROOT / ".venv-pose" / "bin" / "python"


class PoseExtractionError(RuntimeError):
  """The extractor failed (its own message, on the terminal above, says why)."""


def extract_pose(video: str | os.PathLike, out: str | os.PathLike, video_id: str, start: int = 0,
                 end: int | None = None, python: str | os.PathLike = POSE_PYTHON) -> None:
  """Writes <out>/<video_id>/<video_id>_<frame:012d>_keypoints.json for frames start..end (None: to the last);
  frames already extracted are kept. Raises PoseExtractionError when the extractor fails."""
  if not pathlib.Path(python).is_file():
    raise FileNotFoundError(f"no pose environment at {python}: run `bash scripts/pose_env.sh` first "
                            f"(or pass --pose_python, or give OpenPose JSON with --skeleton_dir)")
  cmd = [str(python), "-m", EXTRACT_MODULE, "--video", str(video), "--out", str(out), "--video_id", video_id,
         "--start_frame", str(start)]
  if end is not None:
    cmd += ["--end_frame", str(end)]
  # The pose environment does not install the project: the repository root in PYTHONPATH lets it import data_prep and
  # clipmg_jax from here, whatever the working directory (kept, so that relative paths mean what the caller meant).
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in [str(REPO_ROOT), os.environ.get("PYTHONPATH")] if p))
  done = subprocess.run(cmd, check=False, env=env)  # its progress bar and messages go to the terminal
  if done.returncode != 0:
    raise PoseExtractionError(f"{EXTRACT_SCRIPT.relative_to(REPO_ROOT)} failed on {video} (exit status "
                              f"{done.returncode}; its message is above)")
