"""H.264 write/read round trip, frame selection by index, and damaged files (what decodes of them)."""

import pathlib

import numpy as np
import pytest

import damaged_videos  # tests/fakes
from clipmg_jax.data.raw import video


def _frames(num, height=96, width=128):
  """Frames whose content identifies the index: a bright bar at x = 4 * index on a index-dependent grey."""
  frames = np.zeros((num, height, width, 3), np.uint8)
  for t in range(num):
    frames[t] = 40 + (t * 5) % 160
    x = (4 * t) % (width - 16)
    frames[t, 20:60, x:x + 16] = (250, 30, 30)
  return frames


@pytest.fixture(scope="module")
def clip_path(tmp_path_factory):
  path = tmp_path_factory.mktemp("video") / "v.mp4"
  frames = _frames(130)
  assert video.write_video(path, iter(frames), fps=25, gop_size=25) == 130
  return path, frames


def test_info(clip_path):
  path, frames = clip_path
  info = video.video_info(path)
  assert info == {"num_frames": 130, "fps": 25.0, "width": 128, "height": 96}


def test_round_trip_within_codec_tolerance(clip_path):
  path, frames = clip_path
  decoded = video.read_video_frames(path, range(130))
  assert decoded.shape == frames.shape and decoded.dtype == np.uint8
  error = np.abs(decoded.astype(np.int32) - frames).mean(axis=(1, 2, 3))
  assert error.max() < 4.0
  # Every frame is closest to its own source frame (no off-by-one in the indexing).
  profile = lambda f: f[:, 20:60].astype(np.float32).mean(axis=1).reshape(len(f), -1)  # (T, W * 3)
  distances = np.abs(profile(decoded)[:, None] - profile(frames)[None]).mean(-1)
  np.testing.assert_array_equal(distances.argmin(1), np.arange(130))


def test_selected_frames_equal_sequential_decode(clip_path):
  path, _ = clip_path
  everything = video.read_video_frames(path, range(130))
  for indices in ([0], [129], [60, 61, 62], [100, 3, 77, 3], [26, 49, 50, 51, 75, 99, 124]):
    np.testing.assert_array_equal(video.read_video_frames(path, indices), everything[indices])


def test_bad_indices_and_frames(clip_path, tmp_path):
  path, frames = clip_path
  with pytest.raises(IndexError, match=r"v.mp4: frame\(s\) \[130, 200\] not in the video"):
    video.read_video_frames(path, [5, 130, 200])
  with pytest.raises(ValueError, match="negative frame index"):
    video.read_video_frames(path, [-1])
  with pytest.raises(ValueError, match="even frame sizes"):
    video.write_video(tmp_path / "odd.mp4", iter(np.zeros((2, 9, 10, 3), np.uint8)))
  with pytest.raises(ValueError, match=r"frame 0 must be uint8 \(H, W, 3\)"):
    video.write_video(tmp_path / "f.mp4", iter(np.zeros((2, 8, 10, 3), np.float32)))


def test_mpeg4_stands_in_for_a_missing_encoder(tmp_path):
  assert video.first_encoder() in video.ENCODERS
  assert video.first_encoder(("no_such_encoder", "mpeg4")) == "mpeg4"
  with pytest.raises(ValueError, match="none of the video encoders"):
    video.first_encoder(("no_such_encoder",))
  frames = _frames(30)
  path = tmp_path / "m.mp4"
  assert video.write_video(path, iter(frames), fps=29.97, codec="mpeg4") == 30
  decoded = video.read_video_frames(path, range(30))
  assert decoded.shape == frames.shape and np.abs(decoded.astype(np.int32) - frames).mean() < 6.0
  assert video.video_info(path)["fps"] == pytest.approx(29.97, abs=0.01)


def test_readable_frames_of_real_clips_damaged(tmp_path):
  """The real clips of ../shared/videos, damaged as users' files are (tests/fakes/damaged_videos.py): unreadable
  ones raise UnreadableVideoError naming the file; one cut short decodes its first frames, exactly."""
  real = sorted((pathlib.Path(__file__).resolve().parents[3] / "shared" / "videos").glob("*.mp4"))
  if not real:
    pytest.skip("no real clips in ../shared/videos (the shared material is not part of a clone)")
  source = real[0]
  declared = video.video_info(source)["num_frames"]
  assert video.readable_frames(source) == (declared, declared)
  bad = damaged_videos.make(source, tmp_path)
  for name in ("empty", "text", "half"):
    with pytest.raises(video.UnreadableVideoError, match=f"^{bad[name]}: cannot be read as a video"):
      video.readable_frames(bad[name])
  got, readable = video.readable_frames(bad["faststart_half"])
  assert got == declared and 0 < readable < declared
  cut = [f.to_ndarray(format="rgb24") for _, f in video.iter_video_frames(bad["faststart_half"], 0)]
  assert len(cut) == readable
  np.testing.assert_array_equal(np.stack(cut), video.read_video_frames(source, range(readable)))
