"""Online recognition scored over the videos of a raw dataset's split (labels.csv, skeleton/, videos/, split.json):
every video's windows (cached), its segments, and precision/recall/F1 against the labelled gestures, at the chosen
threshold and at each of a sweep of thresholds (the windows are computed once)."""

import dataclasses
import os
import pathlib
from typing import Callable, Sequence

from clipmg_jax.data import input_setup
from clipmg_jax.data.raw import imigue
from clipmg_jax.prediction import online
from clipmg_jax.prediction import predictor as predictor_lib
from clipmg_jax.prediction import recognize


def true_segments(labels_csv: str | os.PathLike, subjects: set[int] | None = None) -> dict[str, list[online.Segment]]:
  """{video_id: its labelled gestures as segments} from an iMiGUE labels table (of `subjects` only, if given)."""
  truth: dict[str, list[online.Segment]] = {}
  for clip in imigue.read_labels(labels_csv):
    if subjects is None or clip.subject in subjects:
      truth.setdefault(clip.video_id, []).append(online.Segment(clip.start_frame, clip.end_frame, clip.label))
  return truth


def split_subjects(predictor: predictor_lib.Predictor, root: pathlib.Path, split: str) -> tuple[int, ...]:
  """The subjects of "test", "train" or "validation" (the checkpoint config's held-out training subjects; "train"
  is then the rest) of a raw dataset."""
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


@dataclasses.dataclass
class SplitResult:
  """The videos of a split in order, their windows and segments, their true gestures and the summary (scores);
  where the videos and their skeletons are."""
  videos: list[str]
  windows: dict[str, recognize.OnlineVideo]
  truth: dict[str, list[online.Segment]]
  summary: dict
  videos_dir: pathlib.Path
  skeleton_dir: pathlib.Path


def evaluate_split(predictor: predictor_lib.Predictor, root: pathlib.Path, split: str, settings: online.Settings,
                   cache_dir: pathlib.Path, *, iou: float = 0.5, sweep: Sequence[float] = (), max_videos: int = 0,
                   on_video: Callable[[int, int, str], None] | None = None) -> SplitResult:
  """Online recognition of every video of the split's subjects (the first `max_videos` in the order of their ids,
  0 = all), scored at tIoU >= iou; `on_video(i, n, video_id)` is called before each video."""
  layout = imigue.find_raw_layout(root)
  subjects = set(split_subjects(predictor, root, split))
  truth = true_segments(layout.labels_csv, subjects)
  videos = sorted(truth, key=lambda v: (len(v), v))
  if max_videos:
    videos = videos[:max_videos]
  if not videos:
    raise ValueError(f"{layout.labels_csv}: no video of the {split} subjects {sorted(subjects)}")
  windows = {}
  for i, video_id in enumerate(videos):
    if on_video is not None:
      on_video(i, len(videos), video_id)
    windows[video_id] = recognize.online_video(predictor, root / "videos" / f"{video_id}.mp4", layout.skeleton_dir,
                                               video_id, settings, cache_dir)

  def segments(threshold: float) -> dict[str, list[online.Segment]]:
    return {v: settings.segments(w.starts, w.probs, w.num_frames, threshold) for v, w in windows.items()}

  scores, agnostic = online.score_videos({v: w.segments for v, w in windows.items()}, truth, iou)
  swept = []
  for threshold in sorted({float(t) for t in sweep}):
    s, a = online.score_videos(segments(threshold), truth, iou)
    swept.append({"threshold": threshold, **{k: s[k] for k in ("precision", "recall", "f1")},
                  "class_agnostic_f1": a["f1"]})
  summary = {"raw_root": str(root), "split": split, "videos": videos, "checkpoint_step": predictor.step,
             "frames": int(sum(w.num_frames for w in windows.values())),
             "settings": dict(dataclasses.asdict(settings), iou=iou), "scores": scores, "class_agnostic": agnostic,
             "sweep": swept}
  return SplitResult(videos, windows, {v: truth[v] for v in videos}, summary, root / "videos", layout.skeleton_dir)
