"""Online recognition's pure parts: windows and their cores, segments from window scores, NMS, and the
precision/recall/F1 matching, against hand-worked cases and an independent frame-level reference."""

import numpy as np
import pytest

from clipmg_jax.prediction import online
from clipmg_jax.prediction.online import Segment


@pytest.mark.parametrize("num_frames,length,stride", [(100, 32, 8), (101, 32, 8), (32, 32, 8), (10, 32, 8),
                                                      (1000, 48, 16), (57, 16, 5)])
def test_windows_cover_the_video_and_cores_tile_it(num_frames, length, stride):
  starts = online.window_starts(num_frames, length, stride)
  span = min(length, num_frames)
  assert starts[0] == 0 and starts[-1] + span == num_frames  # the last frame is in a window
  assert (np.diff(starts) <= stride).all() and (np.diff(starts) > 0).all()
  first, last = online.window_cores(starts, length, stride, num_frames)
  assert first[0] == 0 and last[-1] == num_frames - 1 and (first[1:] == last[:-1] + 1).all()
  # Each core lies inside its window, and is the set of frames nearest its window's centre.
  assert (first >= starts).all() and (last <= starts + span - 1).all()
  centres = starts + (span - 1) / 2
  nearest = np.argmin(np.abs(np.arange(num_frames)[:, None] - centres[None, :]), axis=1)
  owner = np.repeat(np.arange(len(starts)), last - first + 1)
  assert (np.abs(np.arange(num_frames) - centres[owner]) <= np.abs(np.arange(num_frames) - centres[nearest])).all()


def test_segments_from_windows_follow_the_active_runs():
  # 12 windows of 8 frames, stride 4 (cores of 4 frames, the first and last reach the ends), 3 classes.
  starts = online.window_starts(52, 8, 4)
  assert len(starts) == 12
  probs = np.full((12, 3), 0.1)
  probs[2:5, 0] = [0.6, 0.8, 0.7]   # class 0 over windows 2..4
  probs[7:9, 2] = [0.9, 0.5]        # class 2 over windows 7..8
  probs[8, 1] = 0.45                # class 1 in window 8 only, overlapping class 2's segment
  segs = online.segments_from_windows(starts, probs, length=8, stride=4, num_frames=52, threshold=0.4, nms_iou=0.3)
  first, last = online.window_cores(starts, 8, 4, 52)
  assert segs[0] == Segment(int(first[2]), int(last[4]), 0, pytest.approx(0.7))
  assert segs[1] == Segment(int(first[7]), int(last[8]), 2, pytest.approx(0.7))
  assert len(segs) == 2  # class 1's window is inside class 2's segment (IoU 0.5 > 0.3) with a lower score
  # Raising the NMS IoU keeps it; a higher threshold removes the weak windows.
  assert len(online.segments_from_windows(starts, probs, length=8, stride=4, num_frames=52, threshold=0.4,
                                          nms_iou=0.6)) == 3
  high = online.segments_from_windows(starts, probs, length=8, stride=4, num_frames=52, threshold=0.75)
  assert [(s.label, s.start, s.end) for s in high] == [(0, first[3], last[3]), (2, first[7], last[7])]
  assert online.segments_from_windows(starts, probs, length=8, stride=4, num_frames=52, threshold=0.95) == []
  assert len(online.segments_from_windows(starts, probs, length=8, stride=4, num_frames=52, threshold=0.4,
                                          min_frames=9)) == 1


def test_nms_keeps_the_best_of_each_overlapping_group():
  segs = [Segment(0, 9, 1, 0.9), Segment(2, 11, 2, 0.8), Segment(20, 29, 3, 0.5), Segment(9, 21, 4, 0.95)]
  kept = online.nms(segs, iou=0.3)
  assert kept == [Segment(0, 9, 1, 0.9), Segment(9, 21, 4, 0.95), Segment(20, 29, 3, 0.5)]
  assert online.temporal_iou(Segment(0, 9, 0), Segment(5, 14, 0)) == pytest.approx(5 / 15)
  assert online.temporal_iou(Segment(0, 9, 0), Segment(10, 19, 0)) == 0.0


def test_matching_counts():
  truth = [Segment(0, 9, 1), Segment(20, 29, 2), Segment(40, 49, 3)]
  predicted = [Segment(1, 10, 1, 0.9),    # IoU 9/11: true positive
               Segment(0, 9, 1, 0.5),     # the same gesture again: it is already matched
               Segment(22, 33, 2, 0.8),   # IoU 8/14 = 0.57: true positive at 0.5, not at 0.6
               Segment(40, 49, 0, 0.7)]   # the right place, the wrong class
  scores = online.match(predicted, truth, 0.5).scores()
  assert (scores["true_positives"], scores["predictions"], scores["ground_truth"]) == (2, 4, 3)
  assert scores["precision"] == 0.5 and scores["recall"] == pytest.approx(2 / 3)
  assert scores["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
  assert online.match(predicted, truth, 0.6).true_positives == 1
  assert online.match(predicted, truth, 0.5, class_agnostic=True).true_positives == 3
  total = online.match(predicted, truth, 0.5) + online.match([], truth, 0.5)
  assert (total.true_positives, total.predictions, total.ground_truth) == (2, 4, 6)
  assert online.Counts().scores()["f1"] == 0.0


def test_perfect_windows_recover_the_gestures():
  """Windows scored by the true gesture under their centre give back every gesture at IoU >= 0.5."""
  rng = np.random.default_rng(0)
  frame, truth = 0, []
  for _ in range(12):
    frame += int(rng.integers(6, 25))
    length = int(rng.integers(16, 65))
    truth.append(Segment(frame, frame + length - 1, int(rng.integers(0, 32))))
    frame += length
  num_frames = frame + 10
  starts = online.window_starts(num_frames, 32, 4)
  centres = starts + 15.5
  probs = np.full((len(starts), 32), 0.01)
  for i, c in enumerate(centres):
    for gt in truth:
      if gt.start <= c <= gt.end:
        probs[i, gt.label] = 0.9
  segs = online.segments_from_windows(starts, probs, length=32, stride=4, num_frames=num_frames, threshold=0.5)
  scores = online.match(segs, truth, 0.5).scores()
  assert scores["f1"] >= 0.9, scores


def test_matched_flags_are_the_matching_counts():
  truth = [Segment(0, 9, 1), Segment(20, 29, 2)]
  predicted = [Segment(0, 9, 1, 0.5), Segment(1, 10, 1, 0.9), Segment(22, 33, 2, 0.8), Segment(40, 49, 2, 0.7)]
  # In the given order: the better-scored duplicate takes gesture 0, so the first is unmatched.
  assert online.matched(predicted, truth, 0.5) == [False, True, True, False]
  assert sum(online.matched(predicted, truth, 0.5)) == online.match(predicted, truth, 0.5).true_positives
  scores, agnostic = online.score_videos({"a": predicted, "b": []}, {"a": truth, "b": [Segment(0, 5, 0)]}, 0.5)
  assert (scores["true_positives"], scores["predictions"], scores["ground_truth"]) == (2, 4, 3)
  assert agnostic["true_positives"] == 2


def test_frame_windows_follow_the_cores_and_unclassified_windows_stay_inactive():
  settings = online.Settings(window=8, stride=4, threshold=0.0)
  starts = online.window_starts(52, 8, 4)
  first, last = online.window_cores(starts, 8, 4, 52)
  owner = online.frame_windows(starts, 8, 4, 52)
  assert (owner == np.repeat(np.arange(len(starts)), last - first + 1)).all()
  probs = np.full((len(starts), 2), 0.5)
  probs[5:7] = np.nan  # no person in windows 5 and 6: never active, even at threshold 0
  segs = settings.segments(starts, probs, 52)
  assert all(not (s.start <= first[5] <= s.end or s.start <= last[6] <= s.end) for s in segs)
  assert {s.start for s in segs} >= {0, int(first[7])}
