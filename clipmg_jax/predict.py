r"""Recognises micro-gestures in a video with a trained checkpoint: one clip (top-5 classes), or online over a whole
video (segments), or online over every video of a raw dataset's split (segments + precision/recall/F1).

  # One clip, skeletons extracted on the fly (needs ./.venv-pose: bash scripts/pose_env.sh):
  python -m clipmg_jax.predict --config configs/synthetic.py --workdir runs/synthetic --video my.mp4 --extract_pose
  # One clip with OpenPose JSON you already have (<skeleton_dir>/<video_id>/<video_id>_<frame:012d>_keypoints.json):
  python -m clipmg_jax.predict --config configs/synthetic.py --workdir runs/synthetic --video 17.mp4 \
      --skeleton_dir skeletons/ --start_frame 100 --end_frame 160
  # Online: segments (start_frame, end_frame, class, score) over the whole video, as JSON and CSV:
  python -m clipmg_jax.predict ... --video my.mp4 --extract_pose --online --window 32 --stride 8 --threshold 0.3
  # Online over the test videos of a raw dataset (labels.csv, skeleton/, videos/, split.json), scored against its
  # gesture intervals:
  python -m clipmg_jax.predict --config configs/synthetic.py --workdir runs/synthetic --online \
      --raw_root runs/synthetic/synthetic_data/raw --split test

A clip is prepared exactly as evaluation prepares a converted clip: the record is made by the converter's code
(clipmg_jax/data/records/convert.py, with the conversion options of the checkpoint's dataset manifest) and read by the
evaluation pipeline's decoder (clipmg_jax/data/loader/pipeline.ClipDecoder: segment-centre sampling, centre crop), and the
logits come from the evaluation step. Use the --config (and overrides) the checkpoint was trained with.

Online recognition (clipmg_jax/online.py): every window of --window frames, --stride apart, is classified as one
clip; windows whose probability of a class reaches --threshold form that class's segments, and class-agnostic
temporal NMS (--nms_iou) resolves overlaps. With --raw_root, precision/recall/F1 at temporal IoU >= --iou are
computed against the annotation (a prediction counts when its class is right; also reported class-agnostic).
Window probabilities are cached in <out>/windows/ so that re-running with another --threshold is quick.
"""

import csv
import json
import os
import pathlib
import subprocess

from absl import app
from absl import flags
import ml_collections
import numpy as np

from clipmg_jax import cli_errors
from clipmg_jax import command
from clipmg_jax import online
from clipmg_jax.data import sampling
from clipmg_jax.data.loader import pipeline
from clipmg_jax.data.raw import imigue
from clipmg_jax.data.raw import openpose
from clipmg_jax.data.raw import video as video_io
from clipmg_jax.data.records import convert
from clipmg_jax.data.records import example_codec
from clipmg_jax.data.records import manifest as manifest_lib
from clipmg_jax.data.synthetic import prepare as synthetic_prepare
from clipmg_jax.training import evaluation
from clipmg_jax.training import input_setup
from clipmg_jax.training import metrics
from clipmg_jax.training import runs

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
EXTRACT_SCRIPT = REPO_ROOT / "data_prep" / "extract_pose.py"
POSE_PYTHON = REPO_ROOT / ".venv-pose" / "bin" / "python"


# ---------------------------------------------------------------------------------------------------------------
# The model.


class Predictor:
  """A trained run (runs.load_run, reading no dataset: only the manifest of the checkpoint's dataset, where the
  shards are on this machine) with the evaluation step: examples of the batch layout -> logits."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: str | os.PathLike, which: str = "latest"):
    self.config = config
    synthetic_prepare.resolve_paths(config.data, workdir)
    self.manifest = None
    if manifest_lib.exists(config.data.shards_dir):
      self.manifest = manifest_lib.read(config.data.shards_dir)
    num_classes = int(config.model.num_classes)
    names = list((self.manifest or {}).get("classes") or [c.name for c in imigue.CLASSES][:num_classes])
    self.run = runs.load_run(config, workdir, which, data=runs.without_data(config, names))
    self.setup, self.params, self.step = self.run.setup, self.run.params, self.run.step
    self.class_names = self.run.class_names
    self.batch_size = self.setup.data.eval_batch_size

  def convert_options(self) -> convert.ConvertOptions:
    """The conversion options the checkpoint's dataset was made with (its manifest), so that frames are stored at
    the same size and quality; without a manifest, the synthetic config's or the converter's defaults."""
    if self.manifest is not None:
      opts = dict(self.manifest["options"])
      opts["skeleton_frame_size"] = tuple(opts["skeleton_frame_size"])
      opts["skeleton_only"] = False
      return convert.ConvertOptions(**opts)
    synth = self.config.data.get("synthetic")
    return convert.ConvertOptions(**dict((synth or {}).get("convert_options", {}) or {}))

  def decoder(self) -> pipeline.ClipDecoder:
    return pipeline.ClipDecoder(self.config.data, None, train=False)

  def logits(self, examples, *, progress: bool = True) -> np.ndarray:
    """float32 (N, C) logits of examples (dicts of the batch layout), through evaluation.predict."""
    return evaluation.predict(self.params, self.setup.eval_step, _batches(examples, self.batch_size),
                              self.setup.mesh, self.batch_size, progress=progress)["logits"]


def _batches(examples, size: int):
  chunk = []
  for example in examples:
    chunk.append(example)
    if len(chunk) == size:
      yield {k: np.stack([e[k] for e in chunk]) for k in chunk[0]}
      chunk = []
  if chunk:
    yield {k: np.stack([e[k] for e in chunk]) for k in chunk[0]}


# ---------------------------------------------------------------------------------------------------------------
# Clips.


def clip_example(decoder: pipeline.ClipDecoder, options: convert.ConvertOptions, video: str | os.PathLike,
                 skeleton_dir: str | os.PathLike, video_id: str, start: int, end: int) -> dict:
  """One clip as evaluation sees it: the converter's record (convert.make_record) read by the evaluation decoder."""
  task = convert.ClipTask(split="predict", video_id=video_id, label_id=0, clip_id=0, label=0, subject=-1,
                          start_frame=start, end_frame=end, layout="imigue", skeleton=str(skeleton_dir),
                          video=str(video))
  record, _ = convert.make_record(task, options)
  return decoder.decode(example_codec.encode(record), None)


class VideoWindows:
  """The records of many windows of one video, made from one read of its keypoints and frames.

  record(start, end) equals convert.make_record's record of that clip (tested) except in frames with several
  people, where the subject is followed from the start of the video instead of from the start of the window.
  """

  def __init__(self, video: str | os.PathLike, skeleton_dir: str | os.PathLike, video_id: str, num_frames: int,
               options: convert.ConvertOptions):
    self.video, self.video_id, self.options = str(video), video_id, options
    self.num_frames = num_frames
    self.keypoints, self.report = openpose.read_openpose_clip(skeleton_dir, video_id, 0, num_frames - 1)
    self._jpegs: dict[int, bytes] = {}
    self.src_hw = self.dst_hw = None

  def stored_indices(self, start: int, end: int) -> np.ndarray:
    return start + sampling.presample_indices(end - start + 1, self.options.max_stored_frames)

  def load_frames(self, frames: np.ndarray, chunk: int = 64, progress: bool = False) -> None:
    """Decodes, resizes and JPEG-encodes the given video frames once (chunks of `chunk` frames in memory)."""
    import tqdm  # pylint: disable=import-outside-toplevel
    todo = np.array(sorted(set(int(f) for f in frames) - set(self._jpegs)), np.int64)
    for i in tqdm.trange(0, len(todo), chunk, desc=f"frames {self.video_id}", unit="chunk", disable=not progress,
                         leave=False):
      part = todo[i:i + chunk]
      raw = video_io.read_video_frames(self.video, part)
      self.src_hw = raw.shape[1:3]
      self.dst_hw = convert.stored_size(*self.src_hw, self.options.short_side)
      for f, jpeg in zip(part.tolist(), convert.encode_frames(raw, self.dst_hw, self.options.jpeg_quality)):
        self._jpegs[f] = jpeg

  def record(self, start: int, end: int) -> example_codec.ClipRecord:
    indices = self.stored_indices(start, end)
    self.load_frames(indices)
    return example_codec.ClipRecord(
        video_id=self.video_id, clip_id=0, label_id=0, label=0, subject=-1, start_frame=start,
        frame_height=self.dst_hw[0], frame_width=self.dst_hw[1], video_height=self.src_hw[0],
        video_width=self.src_hw[1],
        keypoints=convert.scale_keypoints(self.keypoints[start:end + 1], self.src_hw, self.dst_hw),
        frames=[self._jpegs[int(f)] for f in indices], frame_indices=indices - start)


def count_video_frames(video: str | os.PathLike) -> int:
  """Frames of a video: the container's count when it has one, else counted by decoding."""
  num = video_io.video_info(video)["num_frames"]
  if num > 0:
    return num
  import av  # pylint: disable=import-outside-toplevel
  with av.open(str(video)) as container:
    return sum(1 for _ in container.decode(container.streams.video[0]))


def window_probabilities(predictor: Predictor, video: str | os.PathLike, skeleton_dir: str | os.PathLike,
                         video_id: str, *, length: int, stride: int, progress: bool = True
                         ) -> tuple[np.ndarray, np.ndarray, int]:
  """(window starts int64 (N,), class probabilities float32 (N, C), number of frames) of one video."""
  num_frames = count_video_frames(video)
  windows = VideoWindows(video, skeleton_dir, video_id, num_frames, predictor.convert_options())
  starts = online.window_starts(num_frames, length, stride)
  span = min(length, num_frames)
  windows.load_frames(np.concatenate([windows.stored_indices(s, s + span - 1) for s in starts]), progress=progress)
  decoder = predictor.decoder()
  examples = (decoder.decode(example_codec.encode(windows.record(int(s), int(s) + span - 1)), None) for s in starts)
  probs = metrics.softmax(predictor.logits(examples, progress=progress)).astype(np.float32)
  return starts, probs, num_frames


# ---------------------------------------------------------------------------------------------------------------
# Skeletons.


def extract_pose(video: str | os.PathLike, out: str | os.PathLike, video_id: str, start: int = 0,
                 end: int | None = None, python: str | os.PathLike = POSE_PYTHON) -> None:
  """Runs data_prep/extract_pose.py in the pose environment (its own venv: mediapipe pins numpy<2)."""
  if not pathlib.Path(python).is_file():
    raise FileNotFoundError(f"no pose environment at {python}: run `bash scripts/pose_env.sh` first "
                            f"(or pass --pose_python, or give OpenPose JSON with --skeleton_dir)")
  cmd = [str(python), str(EXTRACT_SCRIPT), "--video", str(video), "--out", str(out), "--video_id", video_id,
         "--start_frame", str(start)]
  if end is not None:
    cmd += ["--end_frame", str(end)]
  subprocess.run(cmd, check=True)


# ---------------------------------------------------------------------------------------------------------------
# Output.


def segments_json(segments: list[online.Segment], class_names: list[str]) -> list[dict]:
  return [{"start_frame": s.start, "end_frame": s.end, "class": s.label, "name": class_names[s.label],
           "score": round(s.score, 6)} for s in segments]


def write_segments_csv(path: pathlib.Path, rows: list[dict]) -> None:
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=["video_id", "start_frame", "end_frame", "class", "name", "score"],
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)


def plot_segments(path: pathlib.Path, video_id: str, num_frames: int, predicted: list[online.Segment],
                  truth: list[online.Segment], class_names: list[str], fps: float = 25.0, iou: float = 0.5) -> None:
  """Two lanes over time, true gestures above and predicted segments below, each labelled with its class number;
  a prediction is green when it matches a true gesture of its class (the evaluation's matching), red otherwise."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  del class_names  # the lanes carry class numbers: names would not fit in the boxes
  matched = _matched_predictions(predicted, truth, iou)
  seconds = num_frames / fps
  fig, ax = plt.subplots(figsize=(max(10.0, min(28.0, seconds / 4)), 2.6))
  for lane, segments, colours in ((1, truth, None), (0, predicted, matched)):
    for i, s in enumerate(segments):
      colour = "tab:blue" if colours is None else ("tab:green" if colours[i] else "tab:red")
      ax.broken_barh([(s.start / fps, s.num_frames / fps)], (lane - 0.35, 0.7), facecolors=colour,
                     edgecolor="black", linewidth=0.4)
      ax.text((s.start + s.num_frames / 2) / fps, lane, str(s.label), ha="center", va="center", fontsize=7)
  ax.set_yticks([0, 1], ["predicted", "true"])
  ax.set_xlim(0, seconds)
  ax.set_ylim(-0.6, 1.6)
  ax.set_xlabel("time (s)")
  ax.set_title(f"video {video_id}: gestures (class index) — predicted green = matched (same class, tIoU >= {iou}), "
               f"red = unmatched", fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def _matched_predictions(predicted, truth, iou: float = 0.5) -> list[bool]:
  used = set()
  order = sorted(range(len(predicted)), key=lambda i: -predicted[i].score)
  result = [False] * len(predicted)
  for i in order:
    best, best_iou = None, iou
    for j, gt in enumerate(truth):
      if j in used or gt.label != predicted[i].label:
        continue
      value = online.temporal_iou(predicted[i], gt)
      if value >= best_iou:
        best, best_iou = j, value
    if best is not None:
      used.add(best)
      result[i] = True
  return result


# ---------------------------------------------------------------------------------------------------------------
# Command line.

_CONFIG = command.config_flag(
    "The training config file of the checkpoint (e.g. configs/synthetic.py), with its overrides.")
_WORKDIR = command.workdir_flag("The training run's folder (holds checkpoints/).")
_CHECKPOINT = flags.DEFINE_string("checkpoint", "latest", "'latest', 'best' (highest validation top-1) or a step.")
_VIDEO = flags.DEFINE_string("video", None, "The video file (H.264 mp4 or anything PyAV decodes).")
_VIDEO_ID = flags.DEFINE_string("video_id", None, "Name of the video's skeleton folder (default: the file stem).")
_SKELETON_DIR = flags.DEFINE_string("skeleton_dir", None, "OpenPose JSON root holding <video_id>/ (default with "
                                    "--extract_pose: <out>/skeleton).")
_EXTRACT = flags.DEFINE_bool("extract_pose", False, "Extract skeletons with data_prep/extract_pose.py first (in "
                             "./.venv-pose; frames already extracted are kept).")
_POSE_PYTHON = flags.DEFINE_string("pose_python", str(POSE_PYTHON), "Python of the pose environment.")
_START = flags.DEFINE_integer("start_frame", 0, "First frame of the clip (0-based).")
_END = flags.DEFINE_integer("end_frame", None, "Last frame of the clip, inclusive (default: the last frame).")
_TOP_K = flags.DEFINE_integer("top_k", 5, "Classes to print.")
_OUT = flags.DEFINE_string("out", "predictions", "Output folder for the JSON (and CSV, windows, plots).")
_ONLINE = flags.DEFINE_bool("online", False, "Online recognition: sliding windows -> segments.")
_WINDOW = flags.DEFINE_integer("window", 32, "Online: window length in frames.")
_STRIDE = flags.DEFINE_integer("stride", 8, "Online: window stride in frames.")
_THRESHOLD = flags.DEFINE_float("threshold", 0.3, "Online: a window belongs to a class whose probability reaches "
                                "this (else it is background).")
_NMS_IOU = flags.DEFINE_float("nms_iou", 0.3, "Online: class-agnostic NMS drops segments overlapping a better one "
                              "with temporal IoU above this.")
_MIN_FRAMES = flags.DEFINE_integer("min_frames", 1, "Online: shortest segment kept, frames.")
_RAW_ROOT = flags.DEFINE_string("raw_root", None, "Online evaluation: a raw dataset (labels.csv, skeleton/, "
                                "videos/, split.json) whose --split videos are processed and scored.")
_SPLIT = flags.DEFINE_enum("split", "test", ["test", "train", "validation"], "Online evaluation: which subjects' "
                           "videos (validation = the checkpoint config's validation subjects).")
_IOU = flags.DEFINE_float("iou", 0.5, "Online evaluation: temporal IoU a prediction needs to match a gesture.")
_SWEEP = flags.DEFINE_list("sweep", [], "Online evaluation: also score these thresholds (a table; windows are "
                           "computed once).")
_PLOT = flags.DEFINE_string("plot_video", None, "Online evaluation: plot predicted vs true segments of this video.")
_MAX_VIDEOS = flags.DEFINE_integer("max_videos", 0, "Online evaluation: only the first N videos (0 = all).")


def _predict_clip(predictor: Predictor, video: pathlib.Path, skeleton_dir: pathlib.Path, video_id: str,
                  out: pathlib.Path) -> dict:
  end = _END.value if _END.value is not None else count_video_frames(video) - 1
  example = clip_example(predictor.decoder(), predictor.convert_options(), video, skeleton_dir, video_id,
                         _START.value, end)
  probs = metrics.softmax(predictor.logits([example], progress=False)[0])
  result = {"video": str(video), "video_id": video_id, "start_frame": _START.value, "end_frame": end,
            "checkpoint_step": predictor.step, "top": metrics.top_classes(probs, predictor.class_names, _TOP_K.value),
            "probabilities": [round(float(p), 6) for p in probs]}
  path = out / f"{video_id}.json"
  path.write_text(json.dumps(result, indent=1))
  print(f"{video_id} frames {_START.value}..{end} (checkpoint step {predictor.step}):")
  for rank, entry in enumerate(result["top"], 1):
    print(f"  {rank}. class {entry['class']:2d} {entry['name']:<40s} {entry['probability']:.4f}")
  print(f"wrote {path}")
  return result


def _online_video(predictor: Predictor, video: pathlib.Path, skeleton_dir: pathlib.Path, video_id: str,
                  out: pathlib.Path, progress: bool = True) -> tuple[np.ndarray, np.ndarray, int]:
  """Window probabilities of one video, cached in <out>/windows/<video_id>.npz for this checkpoint and windows."""
  cache = out / "windows" / f"{video_id}.npz"
  key = json.dumps({"step": predictor.step, "window": _WINDOW.value, "stride": _STRIDE.value,
                    "workdir": str(pathlib.Path(_WORKDIR.value).absolute()), "video": str(video.absolute())})
  if cache.is_file():
    with np.load(cache) as saved:
      if str(saved["key"]) == key:
        return saved["starts"], saved["probs"], int(saved["num_frames"])
  starts, probs, num_frames = window_probabilities(predictor, video, skeleton_dir, video_id, length=_WINDOW.value,
                                                   stride=_STRIDE.value, progress=progress)
  cache.parent.mkdir(parents=True, exist_ok=True)
  np.savez(cache, starts=starts, probs=probs, num_frames=num_frames, key=key)
  return starts, probs, num_frames


def _segments(starts, probs, num_frames, threshold: float) -> list[online.Segment]:
  return online.segments_from_windows(starts, probs, length=_WINDOW.value, stride=_STRIDE.value,
                                      num_frames=num_frames, threshold=threshold, nms_iou=_NMS_IOU.value,
                                      min_frames=_MIN_FRAMES.value)


def _predict_online(predictor: Predictor, video: pathlib.Path, skeleton_dir: pathlib.Path, video_id: str,
                    out: pathlib.Path) -> None:
  starts, probs, num_frames = _online_video(predictor, video, skeleton_dir, video_id, out)
  segments = _segments(starts, probs, num_frames, _THRESHOLD.value)
  rows = [dict(video_id=video_id, **s) for s in segments_json(segments, predictor.class_names)]
  settings = dict(window=_WINDOW.value, stride=_STRIDE.value, threshold=_THRESHOLD.value, nms_iou=_NMS_IOU.value,
                  min_frames=_MIN_FRAMES.value)
  (out / f"{video_id}.segments.json").write_text(json.dumps(
      {"video": str(video), "video_id": video_id, "num_frames": num_frames, "checkpoint_step": predictor.step,
       "settings": settings, "segments": rows}, indent=1))
  write_segments_csv(out / f"{video_id}.segments.csv", rows)
  print(f"{video_id}: {len(segments)} segment(s) in {num_frames} frames")
  for r in rows:
    print(f"  frames {r['start_frame']:6d}..{r['end_frame']:6d}  class {r['class']:2d} {r['name']:<36s} "
          f"{r['score']:.3f}")
  print(f"wrote {out / (video_id + '.segments.json')} and .csv")


def _split_subjects(predictor: Predictor, root: pathlib.Path, split: str) -> tuple[int, ...]:
  if split == "validation":
    if predictor.manifest is None:
      raise ValueError("--split=validation needs the checkpoint's dataset manifest (config.data.shards_dir)")
    val, *_ = input_setup.split_validation(predictor.config.data, predictor.manifest)
    return tuple(val.subjects)
  train, test = imigue.load_split(root)
  if split == "train" and predictor.manifest is not None:
    val, *_ = input_setup.split_validation(predictor.config.data, predictor.manifest)
    return tuple(s for s in train if s not in set(val.subjects))
  return train if split == "train" else test


def _evaluate_online(predictor: Predictor, root: pathlib.Path, out: pathlib.Path) -> dict:
  layout = imigue.find_raw_layout(root)
  subjects = set(_split_subjects(predictor, root, _SPLIT.value))
  truth: dict[str, list[online.Segment]] = {}
  for clip in imigue.read_labels(layout.labels_csv):
    if clip.subject in subjects:
      truth.setdefault(clip.video_id, []).append(online.Segment(clip.start_frame, clip.end_frame, clip.label))
  videos = sorted(truth, key=lambda v: (len(v), v))
  if _MAX_VIDEOS.value:
    videos = videos[:_MAX_VIDEOS.value]
  if not videos:
    raise ValueError(f"{layout.labels_csv}: no video of the {_SPLIT.value} subjects {sorted(subjects)}")
  windows = {}
  for i, video_id in enumerate(videos):
    print(f"[{i + 1}/{len(videos)}] video {video_id}", flush=True)
    windows[video_id] = _online_video(predictor, root / "videos" / f"{video_id}.mp4", layout.skeleton_dir,
                                      video_id, out)

  def score(threshold):
    per_video, counts, agnostic = {}, online.Counts(), online.Counts()
    for video_id in videos:
      segments = _segments(*windows[video_id], threshold)
      per_video[video_id] = segments
      counts += online.match(segments, truth[video_id], _IOU.value)
      agnostic += online.match(segments, truth[video_id], _IOU.value, class_agnostic=True)
    return per_video, counts.scores(), agnostic.scores()

  per_video, scores, agnostic = score(_THRESHOLD.value)
  sweep = []
  for t in sorted({float(t) for t in _SWEEP.value}):
    _, s, a = score(t)
    sweep.append({"threshold": t, **{k: s[k] for k in ("precision", "recall", "f1")},
                  "class_agnostic_f1": a["f1"]})
  rows = [dict(video_id=v, **r) for v in videos for r in segments_json(per_video[v], predictor.class_names)]
  write_segments_csv(out / f"online_{_SPLIT.value}.segments.csv", rows)
  summary = {"raw_root": str(root), "split": _SPLIT.value, "videos": videos, "checkpoint_step": predictor.step,
             "frames": int(sum(windows[v][2] for v in videos)),
             "settings": dict(window=_WINDOW.value, stride=_STRIDE.value, threshold=_THRESHOLD.value,
                              nms_iou=_NMS_IOU.value, min_frames=_MIN_FRAMES.value, iou=_IOU.value),
             "scores": scores, "class_agnostic": agnostic, "sweep": sweep}
  path = out / f"online_{_SPLIT.value}.json"
  path.write_text(json.dumps(summary, indent=1))
  print(f"online, {_SPLIT.value} split, {len(videos)} videos, {summary['frames']} frames, threshold "
        f"{_THRESHOLD.value}, tIoU >= {_IOU.value}: precision {scores['precision']:.3f} recall {scores['recall']:.3f} "
        f"F1 {scores['f1']:.3f} ({scores['true_positives']} of {scores['ground_truth']} gestures, "
        f"{scores['predictions']} predictions); class-agnostic F1 {agnostic['f1']:.3f}")
  for entry in sweep:
    print(f"  threshold {entry['threshold']:.2f}: P {entry['precision']:.3f} R {entry['recall']:.3f} "
          f"F1 {entry['f1']:.3f}  class-agnostic F1 {entry['class_agnostic_f1']:.3f}")
  if _PLOT.value:
    if _PLOT.value not in windows:
      raise ValueError(f"--plot_video {_PLOT.value} is not among the evaluated videos {videos}")
    plot = out / f"online_{_PLOT.value}.png"
    plot_segments(plot, _PLOT.value, windows[_PLOT.value][2], per_video[_PLOT.value], truth[_PLOT.value],
                  predictor.class_names, iou=_IOU.value)
    print(f"wrote {plot}")
  print(f"wrote {path}")
  return summary


def main(argv):
  del argv  # the command shell refuses positional arguments
  config = cli_errors.config_or_exit(_CONFIG)
  out = pathlib.Path(_OUT.value)
  out.mkdir(parents=True, exist_ok=True)
  if _RAW_ROOT.value:
    if not _ONLINE.value:
      raise app.UsageError("--raw_root evaluates online recognition: add --online")
    predictor = Predictor(config, _WORKDIR.value, _CHECKPOINT.value)
    _evaluate_online(predictor, pathlib.Path(_RAW_ROOT.value), out)
    return
  if not _VIDEO.value:
    raise app.UsageError("--video is required (or --raw_root with --online)")
  video = pathlib.Path(_VIDEO.value)
  if not video.is_file():
    raise app.UsageError(f"--video {video}: no such file")
  video_id = _VIDEO_ID.value or video.stem
  skeleton_dir = pathlib.Path(_SKELETON_DIR.value) if _SKELETON_DIR.value else out / "skeleton"
  if _EXTRACT.value:
    extract_pose(video, skeleton_dir, video_id, 0 if _ONLINE.value else _START.value,
                 None if _ONLINE.value else _END.value, _POSE_PYTHON.value)
  elif not _SKELETON_DIR.value:
    raise app.UsageError("give --skeleton_dir (OpenPose JSON) or --extract_pose")
  predictor = Predictor(config, _WORKDIR.value, _CHECKPOINT.value)
  if _ONLINE.value:
    _predict_online(predictor, video, skeleton_dir, video_id, out)
  else:
    _predict_clip(predictor, video, skeleton_dir, video_id, out)


if __name__ == "__main__":
  command.run(main)
