r"""Raw video -> per-frame OpenPose-format JSON (BODY_25 layout), with MediaPipe's BlazePose.

  bash scripts/pose_env.sh          # once: makes ./.venv-pose (mediapipe 0.10.21 pins numpy<2 and an old jax, so it
                                    # cannot live in the project's ./.venv)
  .venv-pose/bin/python -m data_prep.extract_pose --video my_interview.mp4 --out skeletons/
  .venv-pose/bin/python -m data_prep.extract_pose --video 17.mp4 --out skeletons/ --start_frame 0 --end_frame 999

Run it as a module from the repository root (as above): that puts the root on the path, and with it clipmg_jax,
which ./.venv-pose does not install.

Writes <out>/<video_id>/<video_id>_<frame:012d>_keypoints.json for every frame of the range (0-based, end inclusive;
frame k = the k-th decoded frame, as in clipmg_jax/data/raw/video.py), the layout OpenPose's --write_json gives and
every reader of this project expects (clipmg_jax/data/raw/openpose.py, data_prep/convert.py --skeleton_dir <out>).
video_id defaults to the file's stem; data_prep/convert.py needs integer video ids (labels.csv), --video_id sets one.

One person per frame (BlazePose tracks a single person); a frame where nobody is found gets "people": []. Keypoints
are in pixels of the source video with pixel centres at integer coordinates, confidence = BlazePose's landmark
visibility. BlazePose's 33 landmarks map to BODY_25 as in BODY25_FROM_BLAZEPOSE below; neck and mid-hip are the
midpoints of the shoulders and of the hips (confidence: the smaller of the two); the small toes, which BlazePose
lacks, and any landmark outside the frame or below --min_confidence get (0, 0, 0), as OpenPose writes undetected
joints.

Resumable: a frame whose JSON file already exists is not written again (files are written atomically), so an
interrupted run continues where it stopped; --start_frame/--end_frame split a long video into ranges (for parallel
processes). The tracker restarts every TRACK_CHUNK (250) frames, so a resumed or split run writes exactly what one
uninterrupted run writes (it tracks again the frames of the chunk before its first missing frame). The model is
BlazePose "full" (model_complexity=1), bundled with the wheel: nothing is downloaded.

A video that cannot be opened, or a bad range, ends in one message and exit status 1; a video that decodes to fewer
frames than asked for (a damaged or truncated file) is extracted up to its last decodable frame, with a warning
naming it ("complete": false in the printed statistics).
"""

import argparse
import json
import os
import pathlib
import sys

import numpy as np

# The project's one full-disk message (clipmg_jax/disk_full.py imports only the standard library, so it loads in this
# command's own environment). clipmg_jax is not installed there: it comes from the repository root, on the path when
# this runs as `python -m data_prep.extract_pose` from there.
try:
  from clipmg_jax import disk_full
except ModuleNotFoundError as e:
  if e.name != "clipmg_jax" or __name__ != "__main__":
    raise
  # Run by its file path (`python data_prep/extract_pose.py`), the root is not on the path: say how to run it.
  print("data_prep/extract_pose.py runs as a module from the repository root: .venv-pose/bin/python -m "
        "data_prep.extract_pose --help", file=sys.stderr)
  sys.exit(2)

# BODY_25 joint <- BlazePose landmark index, or a pair whose midpoint is the joint, or None (not in BlazePose).
#   BlazePose: 0 nose, 2 left eye, 5 right eye, 7 left ear, 8 right ear, 11/12 left/right shoulder, 13/14 elbows,
#   15/16 wrists, 23/24 hips, 25/26 knees, 27/28 ankles, 29/30 heels, 31/32 foot index (the big toe's tip).
BODY25_FROM_BLAZEPOSE = (
    ("Nose", 0), ("Neck", (11, 12)), ("RShoulder", 12), ("RElbow", 14), ("RWrist", 16), ("LShoulder", 11),
    ("LElbow", 13), ("LWrist", 15), ("MidHip", (23, 24)), ("RHip", 24), ("RKnee", 26), ("RAnkle", 28),
    ("LHip", 23), ("LKnee", 25), ("LAnkle", 27), ("REye", 5), ("LEye", 2), ("REar", 8), ("LEar", 7),
    ("LBigToe", 31), ("LSmallToe", None), ("LHeel", 29), ("RBigToe", 32), ("RSmallToe", None), ("RHeel", 30),
)
NUM_BLAZEPOSE = 33


def frame_filename(video_id: str, frame: int) -> str:
  """As clipmg_jax.data.raw.openpose.frame_filename (not imported: this script runs in its own environment)."""
  return f"{video_id}_{frame:012d}_keypoints.json"


def blazepose_to_body25(landmarks: np.ndarray, width: int, height: int, min_confidence: float = 0.0) -> np.ndarray:
  """BlazePose landmarks float (33, 3) = (x, y, visibility), x and y normalised to [0, 1] of the frame -> BODY_25
  float32 (25, 3) = (x, y, confidence) in pixels (pixel centres at integers). Undetected joints are (0, 0, 0)."""
  landmarks = np.asarray(landmarks, np.float64)
  if landmarks.shape != (NUM_BLAZEPOSE, 3):
    raise ValueError(f"expected BlazePose landmarks of shape (33, 3), got {landmarks.shape}")
  xy = landmarks[:, :2] * np.array([width, height]) - 0.5  # MediaPipe: 0..1 spans the frame's edges.
  conf = np.clip(landmarks[:, 2], 0.0, 1.0)
  inside = (xy[:, 0] >= -0.5) & (xy[:, 0] <= width - 0.5) & (xy[:, 1] >= -0.5) & (xy[:, 1] <= height - 0.5)
  conf = np.where(inside, conf, 0.0)
  out = np.zeros((len(BODY25_FROM_BLAZEPOSE), 3), np.float64)
  for j, (_, source) in enumerate(BODY25_FROM_BLAZEPOSE):
    if source is None:
      continue
    if isinstance(source, tuple):
      a, b = source
      out[j, :2] = (xy[a] + xy[b]) / 2
      out[j, 2] = min(conf[a], conf[b])
    else:
      out[j, :2], out[j, 2] = xy[source], conf[source]
  out[out[:, 2] <= min_confidence] = 0.0
  return out.astype(np.float32)


def openpose_json(body25: np.ndarray | None) -> str:
  """The OpenPose --write_json document of one frame: no person for None, else one person with pose_keypoints_2d."""
  people = []
  if body25 is not None:
    people.append({"person_id": [-1], "pose_keypoints_2d": [round(float(v), 3) for v in body25.reshape(-1)],
                   "face_keypoints_2d": [], "hand_left_keypoints_2d": [], "hand_right_keypoints_2d": [],
                   "pose_keypoints_3d": [], "face_keypoints_3d": [], "hand_left_keypoints_3d": [],
                   "hand_right_keypoints_3d": []})
  return json.dumps({"version": 1.3, "people": people})


def _write_atomic(path: pathlib.Path, text: str) -> None:
  tmp = path.with_name(path.name + ".tmp")
  tmp.write_text(text)
  os.replace(tmp, path)


class UnreadableVideoError(ValueError):
  """The video file cannot be opened or has no video stream."""


def _open_video(path: pathlib.Path):
  import av  # pylint: disable=import-outside-toplevel
  if not path.is_file():
    raise UnreadableVideoError(f"{path}: no such file")
  try:
    container = av.open(str(path))
  except (av.error.FFmpegError, OSError) as e:
    raise UnreadableVideoError(f"{path}: cannot be read as a video ({e})") from None
  if not container.streams.video:
    container.close()
    raise UnreadableVideoError(f"{path}: has no video stream")
  return container


def iter_frames(path: pathlib.Path, start: int, end: int | None):
  """(frame index, RGB uint8 (H, W, 3)) for frames start..end (inclusive; None = to the end), decoded in order.

  Frames are counted as decoded (the k-th decoded frame is frame k), the numbering of video.read_video_frames for
  constant-frame-rate video. A file damaged or cut short ends early, at the last frame that decodes (extract warns
  with the frame reached); one that cannot be opened raises UnreadableVideoError naming the file.
  """
  import av  # pylint: disable=import-outside-toplevel
  container = _open_video(path)
  with container:
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    try:
      for index, frame in enumerate(container.decode(stream)):
        if index < start:
          continue
        if end is not None and index > end:
          break
        yield index, frame.to_ndarray(format="rgb24")
    except av.error.FFmpegError:
      # Threaded decoding ends silently at a cut, single-threaded decoding raises: either way the file is damaged
      # from here on and the frames before it stand.
      return


def count_frames(path: pathlib.Path) -> int:
  """Frames in the container's header (0 when the container does not say)."""
  container = _open_video(path)
  with container:
    return int(container.streams.video[0].frames)


# The tracker restarts at every TRACK_CHUNK-th frame (0, 250, 500, ...): a frame's keypoints depend only on the
# frames of its chunk, so a resumed run (after kill -9) or a video split into --start_frame/--end_frame ranges writes
# exactly what one uninterrupted run writes. MediaPipe's tracking carries state across frames (the region of interest,
# the landmark filter), and a fresh tracker does not catch up with it: on the real clips of ../shared/videos its
# keypoints stay 2-4 px (mean) away from a continuing tracker's after 10 frames of warm-up. 250 frames are 10 s of
# iMiGUE's 25 fps video; a resumed run redoes at most that much tracking.
TRACK_CHUNK = 250


def _chunk_needs_tracking(folder: pathlib.Path, video_id: str, chunk_start: int, start: int, last: int | None) -> bool:
  """Whether some frame of the chunk at chunk_start, within start..last, has no file yet (None: the end unknown)."""
  if last is None:
    return True
  first, final = max(chunk_start, start), min(chunk_start + TRACK_CHUNK - 1, last)
  return any(not (folder / frame_filename(video_id, k)).is_file() for k in range(first, final + 1))


def extract(video: str | os.PathLike, out: str | os.PathLike, *, video_id: str | None = None, start_frame: int = 0,
            end_frame: int | None = None, min_confidence: float = 0.0, min_detection_confidence: float = 0.5,
            progress: bool = True) -> dict:
  """Writes the OpenPose JSON of frames start_frame..end_frame of `video` under <out>/<video_id>/.

  Returns {"video_id", "folder", "frames" (in the range), "written", "skipped_existing", "no_person", "width",
  "height", "header_frames" (the container's count, 0 when it has none), "last_frame" (the last frame decoded),
  "complete" (False when the video decodes to fewer frames than asked for: a damaged file, or a range past its end;
  a warning on stderr says so)}. Raises UnreadableVideoError for a file that is not a readable video.
  """
  import mediapipe as mp  # pylint: disable=import-outside-toplevel
  import tqdm  # pylint: disable=import-outside-toplevel
  video = pathlib.Path(video)
  video_id = video_id or video.stem
  folder = pathlib.Path(out) / video_id
  if start_frame < 0 or (end_frame is not None and end_frame < start_frame):
    raise ValueError(f"frame range {start_frame}..{end_frame} is empty or negative")
  header = count_frames(video)
  folder.mkdir(parents=True, exist_ok=True)
  last = end_frame if end_frame is not None else (header - 1 if header else None)
  total = None if last is None else last - start_frame + 1
  stats = {"video_id": video_id, "folder": str(folder), "frames": 0, "written": 0, "skipped_existing": 0,
           "no_person": 0, "width": 0, "height": 0, "header_frames": header, "last_frame": -1}
  pose, track = None, False
  bar = tqdm.tqdm(total=total, unit="frame", desc=f"pose {video_id}", disable=not progress)
  try:
    chunk_start = start_frame - start_frame % TRACK_CHUNK  # frames of its chunk before the range warm it up
    for index, rgb in iter_frames(video, chunk_start, end_frame):
      if index % TRACK_CHUNK == 0 or pose is None:
        if pose is not None:
          pose.close()
        # Tracking mode (static_image_mode=False): the person found in one frame seeds the next, as in a video.
        pose = mp.solutions.pose.Pose(static_image_mode=False, model_complexity=1, smooth_landmarks=True,
                                      min_detection_confidence=min_detection_confidence)
        track = _chunk_needs_tracking(folder, video_id, index, start_frame, last)
      if index < start_frame:
        if track:
          pose.process(rgb)
        continue
      stats["frames"] += 1
      stats["last_frame"] = index
      stats["height"], stats["width"] = rgb.shape[:2]
      bar.update(1)
      path = folder / frame_filename(video_id, index)
      if path.is_file():
        stats["skipped_existing"] += 1
        if track:  # the chunk's tracker still sees the frame, as it did in the run that wrote it
          pose.process(rgb)
        continue
      result = pose.process(rgb)
      body25 = None
      if result.pose_landmarks is not None:
        landmarks = np.array([(p.x, p.y, p.visibility) for p in result.pose_landmarks.landmark])
        body25 = blazepose_to_body25(landmarks, rgb.shape[1], rgb.shape[0], min_confidence)
      else:
        stats["no_person"] += 1
      _write_atomic(path, openpose_json(body25))
      stats["written"] += 1
  finally:
    bar.close()
    if pose is not None:
      pose.close()
  if stats["frames"] == 0:
    raise UnreadableVideoError(f"{video}: no frame decoded in the range {start_frame}..{end_frame}")
  stats["complete"] = last is None or stats["last_frame"] >= last
  if not stats["complete"]:
    reached = stats["last_frame"]
    why = (f"the file decodes only to frame {reached} of the {header} frames its header declares (damaged or cut "
           f"short)" if header and reached < header - 1 else f"the video ends at frame {reached}")
    print(f"warning: {video}: extracted frames {start_frame}..{reached}, {stats['frames']} of the {total} asked for: "
          f"{why}", file=sys.stderr)
  return stats


def parse_args(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(prog="python -m data_prep.extract_pose", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--video", required=True, help="the video file (anything FFmpeg/PyAV decodes, e.g. H.264 mp4)")
  parser.add_argument("--out", required=True, help="skeleton root: JSON goes to <out>/<video_id>/")
  parser.add_argument("--video_id", default=None, help="name of the output folder and files (default: the video's "
                      "file stem; use an integer to convert with data_prep/convert.py)")
  parser.add_argument("--start_frame", type=int, default=0, help="first frame, 0-based (default 0)")
  parser.add_argument("--end_frame", type=int, default=None, help="last frame, inclusive (default: the last)")
  parser.add_argument("--min_confidence", type=float, default=0.0,
                      help="joints with visibility at or below this are written as undetected (default 0)")
  parser.add_argument("--min_detection_confidence", type=float, default=0.5,
                      help="BlazePose's person detection threshold (default 0.5)")
  parser.add_argument("--no_progress", action="store_true", help="no progress bar")
  return parser.parse_args(argv)


def main(argv=None) -> int:
  args = parse_args(argv)
  try:
    import mediapipe  # pylint: disable=import-outside-toplevel,unused-import
  except ImportError:
    print("data_prep/extract_pose.py needs mediapipe==0.10.21, which lives in its own environment: run "
          "`bash scripts/pose_env.sh` and use .venv-pose/bin/python", file=sys.stderr)
    return 2
  try:
    stats = extract(args.video, args.out, video_id=args.video_id, start_frame=args.start_frame,
                    end_frame=args.end_frame, min_confidence=args.min_confidence,
                    min_detection_confidence=args.min_detection_confidence, progress=not args.no_progress)
  except (UnreadableVideoError, ValueError) as e:  # one message, as the project's commands print a known failure
    print(f"{type(e).__name__}: {e}", file=sys.stderr)
    return 1
  except OSError as e:
    if not disk_full.is_disk_full(e):
      raise
    print(disk_full.message(e, "out", args.out, "frames already written are kept"), file=sys.stderr)
    return 1
  print(json.dumps(stats))
  return 0


if __name__ == "__main__":
  sys.exit(main())
