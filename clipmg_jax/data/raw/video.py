"""Video files through PyAV: writing RGB frames (H.264, or MPEG-4 part 2 where libx264 is missing), and reading
frames by 0-based index, selected or in order.

Frame index k is the k-th decoded frame of the first video stream (the numbering of iMiGUE's labels and OpenPose
files, see imigue.py). Constant frame rate is assumed, as in iMiGUE's 25 fps videos: the index of a decoded frame
is round((pts - start_pts) * time_base * fps).
"""

import fractions
import itertools
import os
import pathlib
from typing import Iterable, Iterator, Sequence

import av
import numpy as np

# Encoders in order of preference: H.264, then MPEG-4 part 2, which every FFmpeg build has (libx264 is GPL and some
# builds leave it out).
ENCODERS = ("libx264", "mpeg4")
# MPEG-4 part 2 takes a bit rate instead of a quality: bits per pixel and frame, enough for a sharp picture.
_MPEG4_BITS_PER_PIXEL = 0.2


def first_encoder(names: Sequence[str] = ENCODERS) -> str:
  """The first of `names` this PyAV build can encode with; ValueError when it has none of them."""
  for name in names:
    try:
      av.codec.Codec(name, "w")
      return name
    except ValueError:  # av.codec.codec.UnknownCodecError
      continue
  raise ValueError(f"this PyAV build has none of the video encoders {list(names)}")


def write_video(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: float | fractions.Fraction = 25, *,
                crf: int = 23, gop_size: int = 25, preset: str = "veryfast", threads: int = 0,
                codec: str = "libx264", options: dict[str, str] | None = None) -> int:
  """Writes RGB frames, each uint8 (H, W, 3) with even H and W, as a yuv420p mp4. Returns the frame count.

  codec: "libx264" (H.264) or "mpeg4" (MPEG-4 part 2, at a bit rate for the frame size); see first_encoder.
  crf, preset: libx264 quality and speed. gop_size: frames between keyframes; one keyframe a second keeps seeking
  in read_video_frames cheap. threads: encoder threads, 0 = automatic; 1 makes the bytes independent of the machine.
  fps: frames per second, a number or a Fraction (29.97 is stored as 30000/1001).
  options: more encoder options, e.g. {"sc_threshold": "0"}: keyframes every gop_size frames only, none at cuts.
  """
  rate = fps if isinstance(fps, (int, fractions.Fraction)) else fractions.Fraction(fps).limit_denominator(1001)
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  count = 0
  with av.open(str(path), mode="w") as container:
    stream = None
    for frame in frames:
      frame = np.asarray(frame)
      if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"{path}: frame {count} must be uint8 (H, W, 3), got {frame.dtype} {frame.shape}")
      if stream is None:
        height, width = frame.shape[:2]
        if height % 2 or width % 2:
          raise ValueError(f"{path}: H.264 yuv420p needs even frame sizes, got {width}x{height}")
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = gop_size
        if codec == "libx264":
          stream.options = {"crf": str(crf), "preset": preset, "bf": "0", "threads": str(threads)}
        else:
          stream.bit_rate = int(_MPEG4_BITS_PER_PIXEL * width * height * float(rate))
          stream.options = {"threads": str(threads)}
        stream.options = {**stream.options, **(options or {})}
      elif frame.shape[:2] != (stream.height, stream.width):
        raise ValueError(f"{path}: frame {count} is {frame.shape[:2]}, earlier frames {(stream.height, stream.width)}")
      for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
        container.mux(packet)
      count += 1
    if stream is None:
      raise ValueError(f"{path}: no frames to write")
    for packet in stream.encode():
      container.mux(packet)
  return count


def video_info(path: str | os.PathLike) -> dict:
  """{"num_frames", "fps", "width", "height"} of the first video stream (num_frames from the container, may be 0)."""
  with av.open(str(path)) as container:
    stream = container.streams.video[0]
    return {"num_frames": int(stream.frames), "fps": float(stream.average_rate or stream.base_rate or 0),
            "width": stream.codec_context.width, "height": stream.codec_context.height}


def _frame_index(frame: av.VideoFrame, stream, fps: float, start_pts: int) -> int:
  return int(round(float((frame.pts - start_pts) * stream.time_base) * fps))


def _decode_range(container, stream, first: int, last: int | None) -> Iterator[tuple[int, av.VideoFrame]]:
  """Frames first..last of an open container's `stream` (see iter_video_frames)."""
  fps = float(stream.average_rate or stream.base_rate)
  start_pts = stream.start_time or 0

  def decode_from_here():
    for frame in container.decode(stream):
      if frame.pts is None:
        continue
      yield _frame_index(frame, stream, fps, start_pts), frame

  if first > 0:
    # Seek to the keyframe at or before the first wanted frame (pts of frame k = k / fps seconds).
    container.seek(start_pts + int(round(first / fps / stream.time_base)), stream=stream, backward=True,
                   any_frame=False)
  frames = decode_from_here()
  head = next(frames, None)
  if head is not None and head[0] > first:
    # The seek overshot (imprecise index): decode from the start instead.
    container.seek(start_pts, stream=stream, backward=True, any_frame=False)
    frames = decode_from_here()
  elif head is not None:
    frames = itertools.chain([head], frames)
  for index, frame in frames:
    if index >= first:
      yield index, frame
    if last is not None and index >= last:
      break


def _open_video(path: pathlib.Path):
  container = av.open(str(path))
  stream = container.streams.video[0]
  stream.thread_type = "AUTO"  # frame and slice threads: the same frames, sooner
  return container, stream


def iter_video_frames(path: str | os.PathLike, first: int, last: int | None = None
                      ) -> Iterator[tuple[int, av.VideoFrame]]:
  """(0-based index, decoded frame) of frames first..last (inclusive; None = to the end), in order.

  Seeks to the keyframe at or before `first` and decodes forward (from the start when the seek overshoots), so a
  clip of a long video costs about one GOP plus the clip's own span. The frames are PyAV's: `to_ndarray(format=
  "rgb24")` gives uint8 (H, W, 3), `to_image(width=..., height=...)` a resized PIL image.
  """
  container, stream = _open_video(pathlib.Path(path))
  with container:
    yield from _decode_range(container, stream, first, last)


# Frames between two wanted frames up to which decoding goes on instead of seeking: a seek decodes again from the
# keyframe before its target, on average half a keyframe interval (x264's default interval is 250 frames), so going
# on through a shorter gap costs less.
SEEK_GAP = 125


def frame_runs(wanted: Sequence[int], max_gap: int = SEEK_GAP) -> list[tuple[int, int]]:
  """Sorted distinct `wanted` frame indices cut into (first, last) runs wherever the next index is more than
  `max_gap` frames ahead: each run is decoded after one seek."""
  indices = sorted(set(int(i) for i in wanted))
  runs = []
  for index in indices:
    if runs and index - runs[-1][1] <= max_gap:
      runs[-1][1] = index
    else:
      runs.append([index, index])
  return [tuple(run) for run in runs]


def iter_frames_at(path: str | os.PathLike, wanted: Sequence[int], max_gap: int = SEEK_GAP
                   ) -> Iterator[tuple[int, av.VideoFrame]]:
  """(index, decoded frame) of each of the `wanted` 0-based frame indices that the video has, in increasing order,
  each once: the video is opened once and decoded run by run (frame_runs), seeking only across gaps longer than
  `max_gap` frames. The frames are those iter_video_frames decodes (a decoder's output does not depend on where
  decoding started, from a keyframe on)."""
  container, stream = _open_video(pathlib.Path(path))
  with container:
    for first, last in frame_runs(wanted, max_gap):
      targets = set(int(i) for i in wanted if first <= i <= last)
      seen = set()
      for index, frame in _decode_range(container, stream, first, last):
        if index in targets and index not in seen:
          seen.add(index)
          yield index, frame


def read_video_frames(path: str | os.PathLike, frame_indices: Sequence[int]) -> np.ndarray:
  """Decodes the frames at 0-based `frame_indices` (any order, repeats allowed) -> uint8 (K, H, W, 3) RGB.

  Decodes once from the smallest index to the largest (iter_video_frames). Raises IndexError naming the file if an
  index is past the end of the video, ValueError if an index is negative.
  """
  path = pathlib.Path(path)
  wanted = np.asarray(frame_indices, dtype=np.int64).reshape(-1)
  if wanted.size == 0:
    raise ValueError(f"{path}: no frame indices given")
  if wanted.min() < 0:
    raise ValueError(f"{path}: negative frame index {int(wanted.min())}")
  targets = set(wanted.tolist())
  found = {}
  for index, frame in iter_video_frames(path, min(targets), max(targets)):
    if index in targets and index not in found:
      found[index] = frame.to_ndarray(format="rgb24")
  missing = sorted(targets - set(found))
  if missing:
    raise IndexError(f"{path}: frame(s) {missing[:5]}{'...' if len(missing) > 5 else ''} not in the video "
                     f"(decoded up to frame {max(found) if found else -1})")
  return np.stack([found[i] for i in wanted.tolist()])


class UnreadableVideoError(ValueError):
  """A video file that cannot be opened, has no video stream, or of which no frame decodes (the message names it)."""


def readable_frames(path: str | os.PathLike) -> tuple[int, int]:
  """(frames the container declares, 0 when it does not say; frames that decode, counted from frame 0).

  A file damaged or cut short (a faststart mp4, its index first, whose data ends early) declares more frames than
  decode, and decoding it stops silently at the cut. A whole file costs one GOP (its last frame is decoded); a
  damaged one, or one that declares nothing, a full decode. Raises UnreadableVideoError naming the file.
  """
  try:
    declared = video_info(path)["num_frames"]
  except (av.error.FFmpegError, IndexError, OSError) as e:  # IndexError: no video stream
    reason = "it has no video stream" if isinstance(e, IndexError) else getattr(e, "strerror", None) or str(e)
    raise UnreadableVideoError(f"{path}: cannot be read as a video ({reason})") from None
  last = -1
  try:
    if declared > 0:
      for index, _ in iter_video_frames(path, declared - 1, declared - 1):
        last = index
      if last >= declared - 1:
        return declared, declared
    for index, _ in iter_video_frames(path, 0):
      last = index
  except av.error.FFmpegError:  # single-threaded decoding raises at the damage: the frames before it stand
    pass
  if last < 0:
    raise UnreadableVideoError(f"{path}: cannot be read as a video (no frame decodes)")
  return declared, last + 1
