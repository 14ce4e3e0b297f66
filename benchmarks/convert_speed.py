r"""Conversion speed on 1080p video: frames decoded and clips written per CPU-second, and where the time goes.

Builds a raw dataset (flat iMiGUE layout) from the three MA-52 clips in ../shared/videos (1080x1296, 30 fps):
their frames, repeated in turn, re-encoded with libx264 into --num_videos videos of --seconds each (a keyframe every
--gop frames, none at the joins); one OpenPose file per frame (a real one of ../shared/imigue/skeleton_sample when present); clips whose
lengths and gaps are drawn from iMiGUE's annotation table (../shared/imigue/labels_20200831.csv; median clip 40
frames, median gap 26, some overlapping), labels of our own. Then converts it, side by side in one run (repeats
alternate), with:
  before   each clip's frames decoded alone (clip_record.decode_frames: open, seek, decode from the keyframe)
  after    the stored frames of a shard's clips of one video decoded in one pass (clip_record.FramesByVideo)
  beam     the Beam pipeline on the DirectRunner, one process (after's decoding, one work item per video)
checks that every variant wrote the same bytes, and prints per variant: clips, frames decoded, CPU seconds, frames
decoded and clips written per CPU-second (per core) and per wall second, and the CPU-time share of each stage
(decode, RGB conversion, resize, JPEG encode, keypoint reading, writing, the rest: planning, the Beam runner, ...),
then the ratios to before. CPU time is the process's, all threads (FFmpeg decodes in threads of its own).

  python -m benchmarks.convert_speed                       # 2 videos of 20 s, 2 repeats
  python -m benchmarks.convert_speed --seconds 60 --num_videos 4 --repeats 3 --no_beam
"""

import argparse
import collections
import contextlib
import csv
import dataclasses
import hashlib
import json
import os
import pathlib
import shutil
import tempfile
import threading
import time

import av
import numpy as np
from PIL import Image

from clipmg_jax.data.raw import openpose
from clipmg_jax.data.raw import video as video_io
from clipmg_jax.data.records import clip_record
from clipmg_jax.data.records import convert
from clipmg_jax.data.records import example_codec
from clipmg_jax.data.records import layouts
from clipmg_jax.data.records import shard_writer

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
FPS = 30


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--videos_dir", default=str(SHARED / "videos"), help="the MA-52 clips (default ../shared/videos)")
  parser.add_argument("--imigue_dir", default=str(SHARED / "imigue"),
                      help="iMiGUE's labels table and OpenPose sample, for clip lengths and gaps and a real JSON")
  parser.add_argument("--work_dir", default=None, help="where the raw dataset and shards go (default: a temp dir)")
  parser.add_argument("--num_videos", type=int, default=2)
  parser.add_argument("--seconds", type=float, default=20, help="length of each video (default 20)")
  parser.add_argument("--gop", type=int, default=250, help="frames between keyframes (default 250, x264's default)")
  parser.add_argument("--repeats", type=int, default=2, help="runs of each variant, alternating (default 2)")
  parser.add_argument("--clips_per_shard", type=int, default=clip_record.ConvertOptions().clips_per_shard)
  parser.add_argument("--no_beam", action="store_true", help="leave out the Beam DirectRunner")
  parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
  return parser.parse_args(argv)


# --- The raw dataset. -------------------------------------------------------------------------------------------


def _source_frames(videos_dir: pathlib.Path) -> list[np.ndarray]:
  frames = []
  for path in sorted(videos_dir.glob("ma52_*.mp4")):
    frames += [frame.to_ndarray(format="rgb24") for _, frame in video_io.iter_video_frames(path, 0)]
  if not frames:
    raise SystemExit(f"no ma52_*.mp4 in {videos_dir} (see --videos_dir)")
  return frames


def _clip_shapes(imigue_dir: pathlib.Path) -> list[tuple[int, int]]:
  """(length, gap to the next clip) pairs of iMiGUE's clips, or a fixed set at its percentiles without the table."""
  table = imigue_dir / "labels_20200831.csv"
  if not table.is_file():
    return [(20, 1), (40, 26), (40, -3), (130, 113), (40, 26), (60, 282)]
  with open(table, newline="") as f:
    rows = [(r["video_id"], int(r["start_frame"]), int(r["end_frame"])) for r in csv.DictReader(f)]
  return [(e0 - s0 + 1, s1 - e0) for (v0, s0, e0), (v1, s1, _) in zip(rows, rows[1:]) if v0 == v1]


def make_dataset(root: pathlib.Path, args) -> dict:
  """Writes the raw dataset; returns its size."""
  frames = _source_frames(pathlib.Path(args.videos_dir))
  real_json = pathlib.Path(args.imigue_dir) / "skeleton_sample" / "298" / "298_000000001976_keypoints.json"
  person = real_json.read_text() if real_json.is_file() else json.dumps({"version": 1.3, "people": [{
      "pose_keypoints_2d": [v for j in range(25) for v in (500.0 + 9 * j, 300.0 + 11 * j, 0.8)]}]})
  shapes = _clip_shapes(pathlib.Path(args.imigue_dir))
  rng = np.random.default_rng(0)
  num_frames = int(args.seconds * FPS)
  rows, subjects = [], {}
  for v in range(1, args.num_videos + 1):
    video = root / "videos" / f"{v}.mp4"
    video_io.write_video(video, (frames[i % len(frames)] for i in range(num_frames)), fps=FPS, gop_size=args.gop,
                         options={"sc_threshold": "0"})  # keyframes every --gop frames, none at the joins
    folder = root / "skeleton" / str(v)
    folder.mkdir(parents=True)
    for t in range(num_frames):
      (folder / openpose.frame_filename(str(v), t)).write_text(person)
    start, label_id = int(rng.integers(0, 30)), 1
    while True:
      length, gap = shapes[int(rng.integers(len(shapes)))]
      if start + length > num_frames:
        break
      rows.append(f"{v},{label_id},{start},{start + length - 1},{label_id % 32 + 1},{v}")
      label_id += 1
      start = max(0, start + length + gap)
    subjects[v] = v
  (root / "labels.csv").write_text("video_id,label_id,start_frame,end_frame,class,subject_id\n" + "\n".join(rows) + "\n")
  (root / "split.json").write_text(json.dumps({"train_subjects": list(subjects), "test_subjects": []}))
  return {"videos": args.num_videos, "frames_per_video": num_frames, "clips": len(rows), "gop": args.gop,
          "size": list(frames[0].shape[:2])}


# --- Timing the stages. -----------------------------------------------------------------------------------------


def _threads_cpu() -> dict[int, float]:
  """CPU seconds (user + system) of each live thread of this process, by native thread id."""
  ticks = os.sysconf("SC_CLK_TCK")
  cpu = {}
  for task in pathlib.Path("/proc/self/task").iterdir():
    try:
      fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
      cpu[int(task.name)] = (int(fields[11]) + int(fields[12])) / ticks
    except (OSError, IndexError, ValueError):
      continue
  return cpu


class Stages:
  """CPU seconds spent in each stage, and frames decoded. A stage is timed in the thread that runs it
  (time.thread_time); FFmpeg's decoder threads, which decode ahead while the caller does other stages, are counted
  as decoding: the process's CPU time less that of the Python threads that ran stages."""

  def __init__(self):
    self.cpu = collections.Counter()
    self.decoded = 0
    self.threads = {threading.get_native_id()}
    self._start = _threads_cpu()

  @contextlib.contextmanager
  def timed(self, stage: str):
    self.threads.add(threading.get_native_id())
    start = time.thread_time()
    try:
      yield
    finally:
      self.cpu[stage] += time.thread_time() - start

  def finish(self, process_cpu: float) -> None:
    """Adds the decoder threads' CPU time (process_cpu less the stage-running threads') to decoding."""
    now = _threads_cpu()
    python = sum(now.get(tid, 0.0) - self._start.get(tid, 0.0) for tid in self.threads)
    self.cpu["decode"] += max(0.0, process_cpu - python)


class _Frame:
  """A decoded frame whose RGB conversion is timed."""

  def __init__(self, frame, stages):
    self._frame, self._stages = frame, stages

  def __getattr__(self, name):
    return getattr(self._frame, name)

  def to_ndarray(self, *args, **kwargs):
    with self._stages.timed("rgb conversion"):
      return self._frame.to_ndarray(*args, **kwargs)


class _Container:
  """A PyAV input container whose decoding (every frame, wanted or not) is timed and counted."""

  def __init__(self, container, stages):
    self._container, self._stages = container, stages

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    return self._container.__exit__(*exc)

  def seek(self, *args, **kwargs):
    with self._stages.timed("decode"):
      return self._container.seek(*args, **kwargs)

  def decode(self, *args, **kwargs):
    frames = self._container.decode(*args, **kwargs)
    while True:
      with self._stages.timed("decode"):
        frame = next(frames, None)
      if frame is None:
        return
      self._stages.decoded += 1
      yield _Frame(frame, self._stages)


@contextlib.contextmanager
def instrumented(stages: Stages):
  """Times the stages of the converter's own functions while inside (this process only)."""
  patches = []

  def patch(owner, name, make):
    original = getattr(owner, name)
    patches.append((owner, name, original))
    setattr(owner, name, make(original))

  def timing(stage):
    def make(original):
      def timed(*args, **kwargs):
        with stages.timed(stage):
          return original(*args, **kwargs)
      return timed
    return make

  patch(video_io, "_open_video", lambda original: lambda path: (
      lambda pair: (_Container(pair[0], stages), pair[1]))(original(path)))
  patch(Image.Image, "resize", timing("resize"))
  patch(Image.Image, "save", timing("JPEG encode"))
  patch(example_codec, "encode", timing("writing"))
  patch(shard_writer, "write_shard", timing("writing"))
  imigue = layouts.LAYOUTS["imigue"]
  patches.append((layouts.LAYOUTS, "imigue", imigue))
  layouts.LAYOUTS["imigue"] = dataclasses.replace(imigue, read_keypoints=timing("keypoint reading")(
      imigue.read_keypoints))
  try:
    yield
  finally:
    for owner, name, original in reversed(patches):
      if isinstance(owner, dict):
        owner[name] = original
      else:
        setattr(owner, name, original)


# --- The variants. ----------------------------------------------------------------------------------------------


def _run(variant: str, raw: pathlib.Path, out: pathlib.Path, options) -> tuple[Stages, float, float, dict]:
  if out.exists():
    shutil.rmtree(out)
  stages = Stages()
  saved = clip_record.FramesByVideo
  if variant == "before":
    clip_record.FramesByVideo = lambda clips, options: clip_record.decode_frames
  wall, cpu = time.perf_counter(), time.process_time()
  try:
    with instrumented(stages):
      if variant == "beam":
        from clipmg_jax.data.records import beam_convert  # pylint: disable=import-outside-toplevel
        manifest = beam_convert.convert_beam(raw, out, options=options, pipeline_args=[
            "--runner=DirectRunner", "--direct_num_workers=1", "--direct_running_mode=in_memory"])
      else:
        manifest = convert.convert(raw, out, options=options, num_workers=0, progress=False)
  finally:
    clip_record.FramesByVideo = saved
  cpu = time.process_time() - cpu
  stages.finish(cpu)
  return stages, cpu, time.perf_counter() - wall, manifest


def _digest(out: pathlib.Path) -> str:
  digest = hashlib.sha256()
  for path in sorted(out.glob("*.tfrecord*")):
    digest.update(path.name.encode() + path.read_bytes())
  return digest.hexdigest()


STAGES = ("decode", "rgb conversion", "resize", "JPEG encode", "keypoint reading", "writing")


def main(argv=None):
  args = parse_args(argv)
  work = pathlib.Path(args.work_dir or tempfile.mkdtemp(prefix="convert_speed_"))
  raw = work / "raw"
  if raw.exists():
    shutil.rmtree(raw)
  start = time.perf_counter()
  size = make_dataset(raw, args)
  print(f"raw dataset {raw}: {size} (made in {time.perf_counter() - start:.0f} s)")
  options = clip_record.ConvertOptions(clips_per_shard=args.clips_per_shard)
  variants = ["before", "after"] + ([] if args.no_beam else ["beam"])
  totals = {v: {"cpu": 0.0, "wall": 0.0, "decoded": 0, "clips": 0, "stages": collections.Counter()} for v in variants}
  digests = {}
  for _ in range(args.repeats):
    for variant in variants:
      stages, cpu, wall, manifest = _run(variant, raw, work / f"shards_{variant}", options)
      entry = totals[variant]
      entry["cpu"] += cpu
      entry["wall"] += wall
      entry["decoded"] += stages.decoded
      entry["clips"] += sum(split["num_clips"] for split in manifest["splits"].values())
      entry["stages"].update(stages.cpu)
      digests.setdefault(variant, set()).add(_digest(work / f"shards_{variant}"))
  same = len(set().union(*digests.values())) == 1
  print(f"records identical in every variant and repeat: {same}")
  header = (f"{'variant':8} {'clips':>6} {'decoded':>8} {'CPU s':>7} {'wall s':>7} {'frames/CPU-s':>13} "
            f"{'clips/CPU-s':>12} {'clips/wall-s':>13}  " + "  ".join(f"{s:>8.8}" for s in STAGES) + "     rest")
  print(header)
  results = {}
  for variant, entry in totals.items():
    shares = {s: entry["stages"][s] / entry["cpu"] for s in STAGES}
    shares["rest"] = 1 - sum(shares.values())
    results[variant] = {"clips": entry["clips"], "frames_decoded": entry["decoded"], "cpu_s": entry["cpu"],
                        "wall_s": entry["wall"], "frames_per_cpu_s": entry["decoded"] / entry["cpu"],
                        "clips_per_cpu_s": entry["clips"] / entry["cpu"], "clips_per_wall_s": entry["clips"] / entry["wall"],
                        "cpu_share": shares}
    r = results[variant]
    print(f"{variant:8} {r['clips']:6d} {r['frames_decoded']:8d} {r['cpu_s']:7.1f} {r['wall_s']:7.1f} "
          f"{r['frames_per_cpu_s']:13.1f} {r['clips_per_cpu_s']:12.2f} {r['clips_per_wall_s']:13.2f}  "
          + "  ".join(f"{shares[s]:8.1%}" for s in STAGES) + f" {shares['rest']:8.1%}")
  for variant in variants[1:]:
    print(f"{variant}/before: clips per CPU-second x{results[variant]['clips_per_cpu_s'] / results['before']['clips_per_cpu_s']:.2f}, "
          f"per wall second x{results[variant]['clips_per_wall_s'] / results['before']['clips_per_wall_s']:.2f}, "
          f"frames decoded x{results[variant]['frames_decoded'] / results['before']['frames_decoded']:.2f}")
  _decoder_resize(raw, results)
  if args.json:
    pathlib.Path(args.json).write_text(json.dumps({"dataset": size, "identical": same, "results": results}, indent=1))
  if not args.work_dir:
    shutil.rmtree(work)


def _decoder_resize(raw: pathlib.Path, results: dict) -> None:
  """Not applied (it changes the stored pixels): resizing in FFmpeg from the decoder's YUV against RGB conversion +
  PIL's antialiased bilinear resize, per stored frame."""
  video = sorted((raw / "videos").glob("*.mp4"))[0]
  frames = [frame for _, frame in video_io.iter_video_frames(video, 0, 59)]
  height, width = clip_record.stored_size(frames[0].height, frames[0].width, clip_record.ConvertOptions().short_side)
  start = time.process_time()
  for frame in frames:
    Image.fromarray(frame.to_ndarray(format="rgb24")).resize((width, height), Image.BILINEAR)
  pil = (time.process_time() - start) / len(frames)
  start = time.process_time()
  for frame in frames:
    frame.reformat(width=width, height=height, format="rgb24", interpolation="AREA").to_ndarray()
  ffmpeg = (time.process_time() - start) / len(frames)
  results["resize_per_frame_ms"] = {"rgb + PIL bilinear": pil * 1e3, "FFmpeg area from YUV": ffmpeg * 1e3}
  print(f"per stored frame (not applied: other pixels): RGB conversion + PIL resize {pil * 1e3:.1f} ms, FFmpeg "
        f"resize from the decoder's YUV {ffmpeg * 1e3:.1f} ms (x{pil / ffmpeg:.1f})")


if __name__ == "__main__":
  main()
