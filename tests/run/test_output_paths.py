"""A command's outputs are checked before any work: never one of its inputs (by any path), writable, a known format."""

import hashlib
import os
import pathlib
import subprocess
import sys

import pytest

from clipmg_jax.run import output_paths

REPO = pathlib.Path(__file__).resolve().parents[2]


def _video(tmp_path) -> pathlib.Path:
  video = tmp_path / "in" / "talk.mp4"
  video.parent.mkdir()
  video.write_bytes(os.urandom(4096))
  return video


def test_an_input_by_any_path_is_refused(tmp_path):
  video = _video(tmp_path)
  link = tmp_path / "link.mp4"
  link.symlink_to(video)
  for same in (video, tmp_path / "in" / ".." / "in" / "talk.mp4", link):
    with pytest.raises(output_paths.OutputPathError, match=r"--render=.* is the input --video="):
      output_paths.check_file(same, flag="render", suffixes=(".mp4",), inputs={"video": video})
  assert output_paths.check_file(tmp_path / "new" / "out.mp4", flag="render", suffixes=(".mp4",),
                                 inputs={"video": video}) == tmp_path / "new" / "out.mp4"
  with pytest.raises(output_paths.OutputPathError, match="is the input --workdir"):
    output_paths.check_folder(tmp_path / "in", flag="out", inputs={"workdir": video.parent})


def test_format_kind_and_writability_are_checked(tmp_path):
  with pytest.raises(output_paths.OutputPathError, match=r"ending in \.mp4"):
    output_paths.check_file(tmp_path / "annotated", flag="render", suffixes=(".mp4",))
  (tmp_path / "dir.mp4").mkdir()
  with pytest.raises(output_paths.OutputPathError, match="is a folder"):
    output_paths.check_file(tmp_path / "dir.mp4", flag="render", suffixes=(".mp4",))
  (tmp_path / "file").write_text("x")
  with pytest.raises(output_paths.OutputPathError, match="is a file"):
    output_paths.check_folder(tmp_path / "file", flag="out")
  if os.geteuid() != 0:  # root writes anywhere
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(output_paths.OutputPathError, match="cannot be written"):
      output_paths.check_file(locked / "sub" / "x.mp4", flag="render", suffixes=(".mp4",))


def test_predict_refuses_to_render_onto_its_video_before_any_work(tmp_path):
  """The run folder does not even exist: had the command started working it would have failed on that instead."""
  video = _video(tmp_path)
  before = hashlib.sha256(video.read_bytes()).hexdigest()
  done = subprocess.run([sys.executable, "-m", "clipmg_jax.predict", "--config=configs/synthetic.py",
                         f"--workdir={tmp_path / 'no_run'}", f"--video={video}", f"--skeleton_dir={tmp_path}",
                         f"--out={tmp_path / 'out'}", f"--render={tmp_path / 'in' / '..' / 'in' / 'talk.mp4'}"],
                        cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
  assert done.returncode == 1, done.stderr
  assert "OutputPathError" in done.stderr and "is the input --video=" in done.stderr, done.stderr
  assert "Traceback" not in done.stderr
  assert hashlib.sha256(video.read_bytes()).hexdigest() == before
  assert not (tmp_path / "out").exists()
