r"""Recognises micro-gestures in a video with a trained checkpoint: one clip (top-5 classes), or online over a whole
video (segments), or online over every video of a raw dataset's split (segments + precision/recall/F1); --render
writes the annotated video to show.

  # One clip, skeletons extracted on the fly (needs ./.venv-pose: bash scripts/pose_env.sh):
  python -m clipmg_jax.predict --config configs/synthetic.py --workdir runs/synthetic --video my.mp4 --extract_pose
  # One clip with OpenPose JSON you already have (<skeleton_dir>/<video_id>/<video_id>_<frame:012d>_keypoints.json),
  # and the clip rendered with its skeleton and top-3 classes:
  python -m clipmg_jax.predict --config configs/synthetic.py --workdir runs/synthetic --video 17.mp4 \
      --skeleton_dir skeletons/ --start_frame 100 --end_frame 160 --render clip.mp4
  # Online: segments (start_frame, end_frame, class, score) over the whole video, as JSON and CSV; the video
  # rendered with a timeline of the segments (and of the true gestures of a labels table):
  python -m clipmg_jax.predict ... --video my.mp4 --extract_pose --online --window 32 --stride 8 --threshold 0.3 \
      --render online.mp4 [--labels labels.csv]
  # Online over the test videos of a raw dataset (labels.csv, skeleton/, videos/, split.json), scored against its
  # gesture intervals:
  python -m clipmg_jax.predict --config configs/synthetic.py --workdir runs/synthetic --online \
      --raw_root runs/synthetic/synthetic_data/raw --split test [--plot_video 4 --render video4.mp4]
  # Any of these on an export folder (python -m clipmg_jax.export) instead of the training run: no --config,
  # --workdir or --checkpoint, the same top-5:
  python -m clipmg_jax.predict --exported exported/ --video my.mp4 --skeleton_dir skeletons/ [--online ...]

A clip, and every window of online recognition, is prepared exactly as evaluation prepares a converted clip: the
record is made by the converter (clip_record.make_record, with the conversion options of the checkpoint's dataset
manifest) and read by the evaluation pipeline's decoder (segment-centre sampling, centre crop), and the logits come
from the evaluation step (clipmg_jax/prediction/). Use the --config (and overrides) the checkpoint was trained with.
With --exported, the conversion options, the decoder's settings and the program all come from the export folder
(its export.json); every file is checked against the sizes and sha256 recorded there before it is used.

Online recognition (clipmg_jax/prediction/online.py): every window of --window frames, --stride apart, is classified as one
clip; windows whose probability of a class reaches --threshold form that class's segments, and class-agnostic
temporal NMS (--nms_iou) resolves overlaps; a window with no person in any frame is not classified. With --raw_root
(or --labels), precision/recall/F1 at temporal IoU >= --iou are computed against the annotation (a prediction
counts when its class is right; also reported class-agnostic). Window probabilities are cached in <out>/windows/ so
that re-running with another --threshold is quick.

A video that cannot be read, a clip without a person in any frame, or a range past the video's end is one message
and exit status 1. A damaged video (a file cut short, whose header declares more frames than decode) is used up to
its last decodable frame, with a warning saying which frames: the clip (by default) or online recognition ends
there, and the extractor is asked for those frames only.

--render (clipmg_jax/figures/video.py): the clip, or with --online the whole video, with the skeleton on every frame,
the top-3 classes as bars (online: of the window at each frame) and, online, the timeline of the segments; H.264
(MPEG-4 part 2 where PyAV has no libx264, said in the log).
"""

import pathlib
from typing import Callable

from absl import app
from absl import flags
import numpy as np

from clipmg_jax import command
from clipmg_jax.data.raw import openpose
from clipmg_jax.data.raw import video as video_io
from clipmg_jax.exported import predictor as exported_predictor
from clipmg_jax.figures import timeline
from clipmg_jax.figures import video as video_figure
from clipmg_jax.prediction import online
from clipmg_jax.prediction import online_split
from clipmg_jax.prediction import outputs
from clipmg_jax.prediction import pose
from clipmg_jax.prediction import predictor as predictor_lib
from clipmg_jax.prediction import recognize
from clipmg_jax.prediction import records
from clipmg_jax.run import output_paths

_CONFIG = command.config_flag(
    "The training config file of the checkpoint (e.g. configs/synthetic.py), with its overrides (not with "
    "--exported).", required=False)
_WORKDIR = command.workdir_flag("The training run's folder (holds checkpoints/); not with --exported.",
                                required=False)
_CHECKPOINT = flags.DEFINE_string("checkpoint", "latest", "'latest', 'best' (highest validation top-1) or a step.")
_EXPORTED = flags.DEFINE_string("exported", None, "An export folder (python -m clipmg_jax.export) to run instead of "
                                "--config/--workdir/--checkpoint.")
_VIDEO = flags.DEFINE_string("video", None, "The video file (H.264 mp4 or anything PyAV decodes).")
_VIDEO_ID = flags.DEFINE_string("video_id", None, "Name of the video's skeleton folder (default: the file stem).")
_SKELETON_DIR = flags.DEFINE_string("skeleton_dir", None, "OpenPose JSON root holding <video_id>/ (default with "
                                    "--extract_pose: <out>/skeleton).")
_EXTRACT = flags.DEFINE_bool("extract_pose", False, "Extract skeletons with data_prep/extract_pose.py first (in "
                             "./.venv-pose; frames already extracted are kept).")
_POSE_PYTHON = flags.DEFINE_string("pose_python", str(pose.POSE_PYTHON), "Python of the pose environment.")
_START = flags.DEFINE_integer("start_frame", 0, "First frame of the clip (0-based).")
_END = flags.DEFINE_integer("end_frame", None, "Last frame of the clip, inclusive (default: the last frame).")
_TOP_K = flags.DEFINE_integer("top_k", 5, "Classes to print.")
_OUT = flags.DEFINE_string("out", "predictions", "Output folder for the JSON (and CSV, windows, plots).")
_RENDER = flags.DEFINE_string("render", None, "Write the annotated video to this .mp4: the clip (with --online the "
                              "whole video; with --raw_root the --plot_video video) with skeleton, top-3 classes "
                              "and, online, the segments' timeline.")
_ONLINE = flags.DEFINE_bool("online", False, "Online recognition: sliding windows -> segments.")
_WINDOW = flags.DEFINE_integer("window", 32, "Online: window length in frames.")
_STRIDE = flags.DEFINE_integer("stride", 8, "Online: window stride in frames.")
_THRESHOLD = flags.DEFINE_float("threshold", 0.3, "Online: a window belongs to a class whose probability reaches "
                                "this (else it is background).")
_NMS_IOU = flags.DEFINE_float("nms_iou", 0.3, "Online: class-agnostic NMS drops segments overlapping a better one "
                              "with temporal IoU above this.")
_MIN_FRAMES = flags.DEFINE_integer("min_frames", 1, "Online: shortest segment kept, frames.")
_LABELS = flags.DEFINE_string("labels", None, "Online, one --video: an iMiGUE labels table (labels.csv) holding the "
                              "video's gestures, to score the segments against and draw in --render's timeline.")
_RAW_ROOT = flags.DEFINE_string("raw_root", None, "Online evaluation: a raw dataset (labels.csv, skeleton/, "
                                "videos/, split.json) whose --split videos are processed and scored.")
_SPLIT = flags.DEFINE_enum("split", "test", ["test", "train", "validation"], "Online evaluation: which subjects' "
                           "videos (validation = the checkpoint config's validation subjects).")
_IOU = flags.DEFINE_float("iou", 0.5, "Online evaluation: temporal IoU a prediction needs to match a gesture.")
_SWEEP = flags.DEFINE_list("sweep", [], "Online evaluation: also score these thresholds (a table; windows are "
                           "computed once).")
_PLOT = flags.DEFINE_string("plot_video", None, "Online evaluation: plot predicted vs true segments of this video.")
_MAX_VIDEOS = flags.DEFINE_integer("max_videos", 0, "Online evaluation: only the first N videos (0 = all).")


def _render(path: str, video: pathlib.Path, skeleton_dir: pathlib.Path, video_id: str, first: int, last: int,
            notes: dict) -> None:
  """The annotated video of frames first..last; `notes`: video.Annotations' fields but the keypoints."""
  keypoints, _ = openpose.read_openpose_clip(skeleton_dir, video_id, first, last)
  done = video_figure.render(path, video, first, last, video_figure.Annotations(keypoints=keypoints, **notes))
  print(f"wrote {path}: {done['frames']} frames of {done['width']}x{done['height']} at {done['fps']:g} fps "
        f"({done['codec']})")


def _render_online(path: str, video: pathlib.Path, skeleton_dir: pathlib.Path, shown: recognize.OnlineVideo,
                   settings: online.Settings, predictor: predictor_lib.Predictor, title: str,
                   truth: list[online.Segment] | None, iou: float) -> None:
  """The annotated whole video of online recognition, with its timeline."""
  _render(path, video, skeleton_dir, shown.video_id, 0, shown.num_frames - 1, dict(
      probabilities=shown.frame_probabilities(settings), class_names=predictor.class_names,
      header=[title, f"online, checkpoint step {predictor.step}"], predicted=shown.segments, truth=truth, iou=iou))


def _predict_clip(predictor: predictor_lib.Predictor, video: pathlib.Path, skeleton_dir: pathlib.Path,
                  video_id: str, out: pathlib.Path, start: int, end: int, top_k: int, render: str | None) -> None:
  probs, reliability = recognize.clip_prediction(predictor, video, skeleton_dir, video_id, start, end)
  result = outputs.clip_result(video, video_id, start, end, predictor.step, probs, predictor.class_names, top_k)
  result["pose_reliability"] = reliability
  if predictor.classifies_without_pose and reliability < predictor.reliability_floor:
    print(f"warning: {video} frames {start}..{end}: pose reliability {reliability:.2f}"
          + (" (no usable joint)" if reliability == 0 else f", below the model's floor {predictor.reliability_floor:g}")
          + ": classified " + ("from vision alone" if reliability == 0 else "mostly from vision"), flush=True)
  path = outputs.write_json(out / f"{video_id}.json", result)
  print(f"{video_id} frames {start}..{end} (checkpoint step {predictor.step}):")
  for rank, entry in enumerate(result["top"], 1):
    print(f"  {rank}. class {entry['class']:2d} {entry['name']:<40s} {entry['probability']:.4f}")
  print(f"wrote {path}")
  if render:
    _render(render, video, skeleton_dir, video_id, start, end, dict(
        probabilities=np.tile(probs, (end - start + 1, 1)), class_names=predictor.class_names,
        header=[video_id, f"clip frames {start}..{end}, checkpoint step {predictor.step}"]))


def _predict_online(predictor: predictor_lib.Predictor, video: pathlib.Path, skeleton_dir: pathlib.Path,
                    video_id: str, out: pathlib.Path, settings: online.Settings, labels: str | None, iou: float,
                    render: str | None) -> None:
  result = recognize.online_video(predictor, video, skeleton_dir, video_id, settings, out / "windows")
  rows = outputs.segment_rows(video_id, result.segments, predictor.class_names)
  path = outputs.write_video_segments(out, video, video_id, result.num_frames, predictor.step, settings, rows,
                                      result.unclassified, result.classified_without_pose)
  print(f"{video_id}: {len(rows)} segment(s) in {result.num_frames} frames"
        + (f" ({result.unclassified} window(s) without a person, not classified; {records.NO_POSE_HINT})"
           if result.unclassified else ""))
  if result.classified_without_pose:
    print(f"warning: {result.classified_without_pose} of {len(result.starts)} window(s) had no usable joint (pose "
          "reliability 0.00): classified from vision alone", flush=True)
  for r in rows:
    print(f"  frames {r['start_frame']:6d}..{r['end_frame']:6d}  class {r['class']:2d} {r['name']:<36s} "
          f"{r['score']:.3f}")
  print(f"wrote {path} and .csv")
  truth = online_split.true_segments(labels).get(video_id, []) if labels else None
  if truth is not None:
    scores, agnostic = online.score_videos({video_id: result.segments}, {video_id: truth}, iou)
    print(f"against {len(truth)} labelled gesture(s), tIoU >= {iou}: precision {scores['precision']:.3f} recall "
          f"{scores['recall']:.3f} F1 {scores['f1']:.3f}; class-agnostic F1 {agnostic['f1']:.3f}")
  if render:
    _render_online(render, video, skeleton_dir, result, settings, predictor, video_id, truth, iou)


def _evaluate_split(predictor: predictor_lib.Predictor, root: pathlib.Path, out: pathlib.Path,
                    settings: online.Settings, split: str, iou: float, sweep: list[float], max_videos: int,
                    plot_video: str | None, render: str | None) -> None:
  result = online_split.evaluate_split(
      predictor, root, split, settings, out / "windows", iou=iou, sweep=sweep, max_videos=max_videos,
      on_video=lambda i, n, video_id: print(f"[{i + 1}/{n}] video {video_id}", flush=True))
  summary, scores, agnostic = result.summary, result.summary["scores"], result.summary["class_agnostic"]
  rows = [r for v in result.videos for r in outputs.segment_rows(v, result.windows[v].segments, predictor.class_names)]
  outputs.write_segments_csv(out / f"online_{split}.segments.csv", rows)
  path = outputs.write_json(out / f"online_{split}.json", summary)
  print(f"online, {split} split, {len(result.videos)} videos, {summary['frames']} frames, threshold "
        f"{settings.threshold}, tIoU >= {iou}: precision {scores['precision']:.3f} recall {scores['recall']:.3f} "
        f"F1 {scores['f1']:.3f} ({scores['true_positives']} of {scores['ground_truth']} gestures, "
        f"{scores['predictions']} predictions); class-agnostic F1 {agnostic['f1']:.3f}")
  for entry in summary["sweep"]:
    print(f"  threshold {entry['threshold']:.2f}: P {entry['precision']:.3f} R {entry['recall']:.3f} "
          f"F1 {entry['f1']:.3f}  class-agnostic F1 {entry['class_agnostic_f1']:.3f}")
  if plot_video:
    if plot_video not in result.windows:
      raise ValueError(f"--plot_video {plot_video} is not among the evaluated videos {result.videos}")
    shown = result.windows[plot_video]
    plot = out / f"online_{plot_video}.png"
    timeline.save_segments(plot, plot_video, shown.num_frames, shown.segments, result.truth[plot_video], iou=iou)
    print(f"wrote {plot}")
    if render:
      _render_online(render, result.videos_dir / f"{plot_video}.mp4", result.skeleton_dir, shown, settings,
                     predictor, f"video {plot_video} ({split} split)", result.truth[plot_video], iou)
  print(f"wrote {path}")


def _predictor_maker(config) -> Callable[[], predictor_lib.Predictor | exported_predictor.ExportedPredictor]:
  """What makes the predictor: the export folder of --exported, or the checkpoint of --config, --workdir and
  --checkpoint. The flags and the config are checked here, at once; the run or export loads when it is called."""
  if _EXPORTED.value:
    given = [f"--{name}" for name in ("config", "workdir", "checkpoint") if flags.FLAGS[name].present]
    if given:
      raise app.UsageError(f"--exported runs an export folder, which records its own config and checkpoint: drop "
                           f"{', '.join(given)}")
    return lambda: exported_predictor.ExportedPredictor(_EXPORTED.value)
  if config is None or not _WORKDIR.value:
    raise app.UsageError("give the training run (--config and --workdir) or an export folder (--exported)")
  return lambda: predictor_lib.Predictor(config, _WORKDIR.value, _CHECKPOINT.value)


def _check_outputs() -> pathlib.Path:
  """--out and --render checked before any work: neither may be an input (a render onto its own video would replace
  it), both writable, --render an .mp4."""
  inputs = {"video": _VIDEO.value, "skeleton_dir": _SKELETON_DIR.value, "labels": _LABELS.value,
            "raw_root": _RAW_ROOT.value, "workdir": _WORKDIR.value, "exported": _EXPORTED.value}
  if _RAW_ROOT.value and _PLOT.value:  # the video --render draws on (online_split's layout: <root>/videos/<id>.mp4)
    inputs["plot_video"] = pathlib.Path(_RAW_ROOT.value) / "videos" / f"{_PLOT.value}.mp4"
  out = output_paths.check_folder(_OUT.value, flag="out", inputs=inputs)
  if _RENDER.value:
    output_paths.check_file(_RENDER.value, flag="render", suffixes=(".mp4",), inputs=inputs)
  return out


def main(config, session):
  del session  # reads a run or an export; writes only --out and --render
  make_predictor = _predictor_maker(config)
  out = _check_outputs()
  out.mkdir(parents=True, exist_ok=True)
  settings = online.Settings(window=_WINDOW.value, stride=_STRIDE.value, threshold=_THRESHOLD.value,
                             nms_iou=_NMS_IOU.value, min_frames=_MIN_FRAMES.value)
  if _RAW_ROOT.value:
    if not _ONLINE.value:
      raise app.UsageError("--raw_root evaluates online recognition: add --online")
    if _RENDER.value and not _PLOT.value:
      raise app.UsageError("with --raw_root, --render renders the --plot_video video: add --plot_video")
    predictor = make_predictor()
    _evaluate_split(predictor, pathlib.Path(_RAW_ROOT.value), out, settings, _SPLIT.value, _IOU.value,
                    [float(t) for t in _SWEEP.value], _MAX_VIDEOS.value, _PLOT.value, _RENDER.value)
    return
  if not _VIDEO.value:
    raise app.UsageError("--video is required (or --raw_root with --online)")
  video = pathlib.Path(_VIDEO.value)
  if not video.is_file():
    raise app.UsageError(f"--video {video}: no such file")
  if _LABELS.value and not _ONLINE.value:
    raise app.UsageError("--labels gives the true segments of online recognition: add --online")
  video_id = _VIDEO_ID.value or video.stem
  skeleton_dir = pathlib.Path(_SKELETON_DIR.value) if _SKELETON_DIR.value else out / "skeleton"
  if not (_EXTRACT.value or _SKELETON_DIR.value):
    raise app.UsageError("give --skeleton_dir (OpenPose JSON) or --extract_pose")
  # The video is read before anything else (an unreadable one is one message): a damaged one is used up to its
  # last decodable frame, and the clip's range checked against that.
  declared, readable = video_io.readable_frames(video)
  if _ONLINE.value:
    start, end = 0, readable - 1
  else:
    start, end = _START.value, readable - 1 if _END.value is None else _END.value
    records.check_range(video, start, end, readable, declared)
  if readable < declared:
    print(f"warning: {video}: only frames 0..{readable - 1} decode of the {declared} its header declares (damaged "
          f"or cut short); using frames {start}..{end}", flush=True)
  if _EXTRACT.value:
    pose.extract_pose(video, skeleton_dir, video_id, start, end, _POSE_PYTHON.value)
  predictor = make_predictor()
  if _ONLINE.value:
    _predict_online(predictor, video, skeleton_dir, video_id, out, settings, _LABELS.value, _IOU.value, _RENDER.value)
  else:
    _predict_clip(predictor, video, skeleton_dir, video_id, out, start, end, _TOP_K.value, _RENDER.value)


if __name__ == "__main__":
  command.run(main, config=_CONFIG, output_flag="out", rerun="it runs again")
