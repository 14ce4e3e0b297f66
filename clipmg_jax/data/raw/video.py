"""H.264 video files through PyAV: writing RGB frames, and reading selected frames by 0-based index.

Frame index k is the k-th decoded frame of the first video stream (the numbering of iMiGUE's labels and OpenPose
files, see imigue.py). Constant frame rate is assumed, as in iMiGUE's 25 fps videos: the index of a decoded frame
is round((pts - start_pts) * time_base * fps).
"""

import os
import pathlib
from typing import Iterable, Sequence

import av
import numpy as np


def write_video(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: int = 25, *, crf: int = 23,
                gop_size: int = 25, preset: str = "veryfast", threads: int = 0) -> int:
  """Writes RGB frames, each uint8 (H, W, 3) with even H and W, as an H.264 (yuv420p) mp4. Returns the frame count.

  crf, preset: libx264 quality and speed. gop_size: frames between keyframes; one keyframe a second keeps seeking
  in read_video_frames cheap. threads: encoder threads, 0 = automatic; 1 makes the bytes independent of the machine.
  """
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
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = gop_size
        stream.options = {"crf": str(crf), "preset": preset, "bf": "0", "threads": str(threads)}
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


def read_video_frames(path: str | os.PathLike, frame_indices: Sequence[int]) -> np.ndarray:
  """Decodes the frames at 0-based `frame_indices` (any order, repeats allowed) -> uint8 (K, H, W, 3) RGB.

  Seeks to the keyframe before the smallest index and decodes forward once, up to the largest index, so a clip of a
  long video costs about one GOP plus the clip's own span. Raises IndexError naming the file if an index is past the
  end of the video, ValueError if an index is negative.
  """
  path = pathlib.Path(path)
  wanted = np.asarray(frame_indices, dtype=np.int64).reshape(-1)
  if wanted.size == 0:
    raise ValueError(f"{path}: no frame indices given")
  if wanted.min() < 0:
    raise ValueError(f"{path}: negative frame index {int(wanted.min())}")
  targets = sorted(set(wanted.tolist()))
  first, last = targets[0], targets[-1]
  found = {}
  with av.open(str(path)) as container:
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    fps = float(stream.average_rate or stream.base_rate)
    start_pts = stream.start_time or 0

    def decode_from_here():
      for frame in container.decode(stream):
        if frame.pts is None:
          continue
        index = _frame_index(frame, stream, fps, start_pts)
        yield index, frame

    restarted = False
    if first > 0:
      # Seek to the keyframe at or before the first wanted frame (pts of frame k = k / fps seconds).
      container.seek(start_pts + int(round(first / fps / stream.time_base)), stream=stream, backward=True,
                     any_frame=False)
    for index, frame in decode_from_here():
      if not found and not restarted and index > first:
        restarted = True  # The seek overshot (imprecise index): decode from the start instead.
        break
      if index in targets and index not in found:
        found[index] = frame.to_ndarray(format="rgb24")
      if index >= last:
        break
    if restarted:
      container.seek(start_pts, stream=stream, backward=True, any_frame=False)
      for index, frame in decode_from_here():
        if index in targets and index not in found:
          found[index] = frame.to_ndarray(format="rgb24")
        if index >= last:
          break
  missing = [i for i in targets if i not in found]
  if missing:
    raise IndexError(f"{path}: frame(s) {missing[:5]}{'...' if len(missing) > 5 else ''} not in the video "
                     f"(decoded up to frame {max(found) if found else -1})")
  return np.stack([found[i] for i in wanted.tolist()])
