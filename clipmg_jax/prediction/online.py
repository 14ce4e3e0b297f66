"""Online recognition over a long video: sliding windows, window scores -> segments, and their evaluation.

Windows: length L frames, stride S; window w covers frames [w S, w S + L - 1], and one more window ends on the last
frame when the strides do not reach it (a video shorter than L is one window over all of it). Each window is
classified as one clip by the evaluation transform (clipmg_jax/prediction/recognize.py), giving class probabilities;
a window the converter cannot make a record of (no person in any of its frames) has NaN probabilities and is never
active.

No-gesture decision: a score threshold. The model has no background class (iMiGUE's labels cover gestures only,
and training a background class would change the model's output layer); a window belongs to class c when its
probability of c is at least `threshold`, and frames covered by no such window are background.

Segments: every window stands for its *core*, the S frames around its centre (the part of the video no other
window's centre is nearer to), so a run of consecutive windows w_i..w_j active for class c becomes the segment from
the first frame of w_i's core to the last frame of w_j's core, with score = the mean probability of c over the run.
Runs of different classes may overlap (with threshold < 0.5 two classes can both pass); class-agnostic temporal
non-maximum suppression keeps the highest-scoring segment of any overlapping group whose temporal IoU is above
`nms_iou` (one person performs one micro-gesture at a time). Segments shorter than `min_frames` are dropped.

Evaluation (detection precision/recall/F1): predictions are taken in decreasing score; each is a true positive when
an unmatched ground-truth gesture of the same class overlaps it with temporal IoU >= iou_threshold (the unmatched
one of highest IoU is taken). precision = TP / predictions, recall = TP / ground-truth gestures, F1 their harmonic
mean. With class_agnostic=True the class is ignored (localisation alone). `matched` says which predictions are true
positives (the timelines colour them), `score_videos` adds the counts over videos.
"""

import dataclasses
from typing import Iterable, Mapping, Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class Segment:
  """Frames start..end (0-based, inclusive) of one video, a class index and a score in [0, 1]."""
  start: int
  end: int
  label: int
  score: float = 1.0

  @property
  def num_frames(self) -> int:
    return self.end - self.start + 1


def window_starts(num_frames: int, length: int, stride: int) -> np.ndarray:
  """First frames of the windows of a video of `num_frames` frames: int64 (N,), increasing (see module doc)."""
  if num_frames < 1:
    raise ValueError(f"a video needs at least one frame, got {num_frames}")
  if length < 1 or stride < 1:
    raise ValueError(f"window length and stride must be >= 1, got length={length}, stride={stride}")
  if num_frames <= length:
    return np.zeros((1,), np.int64)
  starts = np.arange(0, num_frames - length + 1, stride, dtype=np.int64)
  if starts[-1] + length < num_frames:
    starts = np.append(starts, num_frames - length)
  return starts


def window_cores(starts: np.ndarray, length: int, stride: int, num_frames: int) -> tuple[np.ndarray, np.ndarray]:
  """(first, last) frame of each window's core: the frames nearer its centre than any other window's centre.

  Computed from the window centres, so the first and last windows' cores reach the video's ends and an irregular
  last stride is handled; cores tile the video without overlap.
  """
  del stride  # The cores follow from the centres alone.
  length = min(length, num_frames)
  centres = np.asarray(starts, np.float64) + (length - 1) / 2
  bounds = np.floor((centres[:-1] + centres[1:]) / 2).astype(np.int64)  # last frame of each core but the last
  first = np.concatenate([[0], bounds + 1])
  last = np.concatenate([bounds, [num_frames - 1]])
  return first, last


def frame_windows(starts: np.ndarray, length: int, stride: int, num_frames: int) -> np.ndarray:
  """int64 (num_frames,): the window whose core holds each frame (the window that speaks for the frame)."""
  first, _ = window_cores(starts, length, stride, num_frames)
  return np.searchsorted(first, np.arange(num_frames), side="right").astype(np.int64) - 1


def temporal_iou(a: Segment, b: Segment) -> float:
  """Intersection over union of two inclusive frame ranges."""
  inter = min(a.end, b.end) - max(a.start, b.start) + 1
  if inter <= 0:
    return 0.0
  return inter / (a.num_frames + b.num_frames - inter)


def nms(segments: Iterable[Segment], iou: float) -> list[Segment]:
  """Greedy class-agnostic temporal NMS: in decreasing score, keep a segment unless its IoU with a kept one is
  above `iou`. Returns the kept segments in time order."""
  kept: list[Segment] = []
  for seg in sorted(segments, key=lambda s: (-s.score, s.start, s.label)):
    if all(temporal_iou(seg, k) <= iou for k in kept):
      kept.append(seg)
  return sorted(kept, key=lambda s: (s.start, s.end, s.label))


def segments_from_windows(starts: np.ndarray, probs: np.ndarray, *, length: int, stride: int, num_frames: int,
                          threshold: float, nms_iou: float = 0.3, min_frames: int = 1) -> list[Segment]:
  """Window probabilities float (N, C) of the windows at `starts` -> segments (see the module doc)."""
  probs = np.asarray(probs, np.float64)
  starts = np.asarray(starts, np.int64)
  if probs.ndim != 2 or len(probs) != len(starts):
    raise ValueError(f"expected probabilities (N, C) for N={len(starts)} windows, got {probs.shape}")
  first, last = window_cores(starts, length, stride, num_frames)
  candidates = []
  for c in range(probs.shape[1]):
    active = probs[:, c] >= threshold  # NaN (an unclassified window) is never active
    if not active.any():
      continue
    # Runs of consecutive active windows: [begin, finish) index ranges.
    edges = np.diff(np.concatenate([[0], active.astype(np.int8), [0]]))
    for begin, finish in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)):
      seg = Segment(int(first[begin]), int(last[finish - 1]), c, float(probs[begin:finish, c].mean()))
      if seg.num_frames >= min_frames:
        candidates.append(seg)
  return nms(candidates, nms_iou)


@dataclasses.dataclass(frozen=True)
class Settings:
  """How window probabilities become segments: window length and stride (frames), the class threshold, the NMS IoU
  and the shortest segment kept (frames)."""
  window: int = 32
  stride: int = 8
  threshold: float = 0.3
  nms_iou: float = 0.3
  min_frames: int = 1

  def segments(self, starts: np.ndarray, probs: np.ndarray, num_frames: int, threshold: float | None = None
               ) -> list[Segment]:
    """segments_from_windows with these settings (`threshold` replaces the settings' one, for a sweep)."""
    return segments_from_windows(starts, probs, length=self.window, stride=self.stride, num_frames=num_frames,
                                 threshold=self.threshold if threshold is None else threshold, nms_iou=self.nms_iou,
                                 min_frames=self.min_frames)


@dataclasses.dataclass
class Counts:
  """Detection counts, added over videos."""
  true_positives: int = 0
  predictions: int = 0
  ground_truth: int = 0

  def __add__(self, other: "Counts") -> "Counts":
    return Counts(self.true_positives + other.true_positives, self.predictions + other.predictions,
                  self.ground_truth + other.ground_truth)

  def scores(self) -> dict:
    precision = self.true_positives / self.predictions if self.predictions else 0.0
    recall = self.true_positives / self.ground_truth if self.ground_truth else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "true_positives": self.true_positives,
            "predictions": self.predictions, "ground_truth": self.ground_truth}


def matched(predicted: Sequence[Segment], truth: Sequence[Segment], iou_threshold: float = 0.5, *,
            class_agnostic: bool = False) -> list[bool]:
  """Greedy one-to-one matching of predictions (by decreasing score) to ground truth (see the module doc): whether
  each prediction, in the order given, is a true positive."""
  used = np.zeros(len(truth), bool)
  result = [False] * len(predicted)
  for p in sorted(range(len(predicted)), key=lambda i: -predicted[i].score):
    best, best_iou = -1, iou_threshold
    for i, gt in enumerate(truth):
      if used[i] or (not class_agnostic and gt.label != predicted[p].label):
        continue
      value = temporal_iou(predicted[p], gt)
      if value >= best_iou:
        best, best_iou = i, value
    if best >= 0:
      used[best] = True
      result[p] = True
  return result


def match(predicted: Sequence[Segment], truth: Sequence[Segment], iou_threshold: float = 0.5, *,
          class_agnostic: bool = False) -> Counts:
  """The detection counts of `matched`."""
  return Counts(sum(matched(predicted, truth, iou_threshold, class_agnostic=class_agnostic)), len(predicted),
                len(truth))


def score_videos(predicted: Mapping[str, Sequence[Segment]], truth: Mapping[str, Sequence[Segment]],
                 iou_threshold: float = 0.5) -> tuple[dict, dict]:
  """(Counts.scores with classes, class-agnostic Counts.scores) of the videos of `predicted`, added over them."""
  counts, agnostic = Counts(), Counts()
  for video_id, segments in predicted.items():
    counts += match(segments, truth[video_id], iou_threshold)
    agnostic += match(segments, truth[video_id], iou_threshold, class_agnostic=True)
  return counts.scores(), agnostic.scores()
