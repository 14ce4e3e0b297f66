"""The synthetic iMiGUE-like dataset: layout, determinism, skeleton/frame agreement, noise, class shape and
learnability."""

import json

import numpy as np
import pose_baseline
import pytest

from clipmg_jax.data import synthetic
from clipmg_jax.data.raw import imigue, openpose, video
from clipmg_jax.data.synthetic import body, motions, noise, plan, render, writer


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
  root = tmp_path_factory.mktemp("synthetic") / "a"
  summary = synthetic.generate(root, preset="tiny", seed=3, workers=1, progress=False)
  return root, summary


def test_layout_is_readable_by_the_imigue_readers(tiny_root):
  root, summary = tiny_root
  clips = imigue.read_labels(root / "labels.csv")
  assert len(clips) == summary["clips"] > 0
  train, test = imigue.load_split(root)
  assert set(train).isdisjoint(test) and len(train) + len(test) == plan.PRESETS["tiny"].num_subjects
  assert {c.subject for c in clips} <= set(train) | set(test)
  assert imigue.load_classes(root) == imigue.CLASSES
  assert len(imigue.split_clips(clips, train)) == summary["train_clips"]
  for c in clips:
    keypoints, report = imigue.read_openpose_clip(root / "skeleton", c.video_id, c.start_frame, c.end_frame)
    assert keypoints.shape == (c.num_frames, 18, 3) and report.missing_frames == []
  videos = {c.video_id for c in clips}
  assert sorted(p.stem for p in (root / "videos").glob("*.mp4")) == sorted(videos)
  for v in videos:
    info = video.video_info(root / "videos" / f"{v}.mp4")
    num_json = len(list((root / "skeleton" / v).glob("*_keypoints.json")))
    assert info["num_frames"] == num_json and info["fps"] == 25.0 and (info["width"], info["height"]) == (160, 120)
    assert max(c.end_frame for c in clips if c.video_id == v) < num_json


def test_openpose_json_has_the_real_fields(tiny_root):
  root, _ = tiny_root
  path = next((root / "skeleton" / "1").glob("*_keypoints.json"))
  person = json.loads(path.read_text())["people"][0]
  lengths = {k: len(v) for k, v in person.items()}
  assert lengths == {"person_id": 1, "pose_keypoints_2d": 75, "face_keypoints_2d": 210, "hand_left_keypoints_2d": 63,
                     "hand_right_keypoints_2d": 63, "pose_keypoints_3d": 0, "face_keypoints_3d": 0,
                     "hand_left_keypoints_3d": 0, "hand_right_keypoints_3d": 0}


def test_labels_times_follow_imigue_convention(tiny_root):
  root, _ = tiny_root
  text = (root / "labels.csv").read_text().splitlines()
  assert text[0] == ",".join(imigue.LABEL_COLUMNS)
  for line in text[1:]:
    row = dict(zip(imigue.LABEL_COLUMNS, line.split(",")))
    assert int(row["start_frame"]) == int(np.floor(25 * float(row["start_time"])))
    assert int(row["end_frame"]) == int(np.floor(25 * float(row["end_time"])))


def test_same_seed_same_dataset_any_worker_count(tiny_root, tmp_path):
  root, _ = tiny_root
  again = tmp_path / "b"
  synthetic.generate(again, preset="tiny", seed=3, workers=2, progress=False)
  for name in ("labels.csv", "split.json", "classes.json"):
    assert (again / name).read_bytes() == (root / name).read_bytes()
  for path in (root / "skeleton" / "2").glob("*.json"):
    assert (again / "skeleton" / "2" / path.name).read_bytes() == path.read_bytes()
  a = video.read_video_frames(root / "videos" / "2.mp4", range(0, 60, 7))
  b = video.read_video_frames(again / "videos" / "2.mp4", range(0, 60, 7))
  assert np.abs(a.astype(int) - b).max() <= 2
  other = tmp_path / "c"
  synthetic.generate(other, preset="tiny", seed=4, workers=1, progress=False)
  assert (other / "labels.csv").read_bytes() != (root / "labels.csv").read_bytes()


def test_rendered_body_is_where_the_skeleton_says(tiny_root):
  """At confidently detected joints the frame differs from the empty backdrop; far from the body it equals it."""
  root, _ = tiny_root
  size = plan.PRESETS["tiny"]
  clips = imigue.read_labels(root / "labels.csv")
  video_id = clips[0].video_id
  subject = writer.subject_for(3, clips[0].subject, size)
  empty = np.asarray(render.backdrop(subject)).astype(int)
  frames_idx = list(range(0, 200, 9))
  frames = video.read_video_frames(root / "videos" / f"{video_id}.mp4", frames_idx).astype(int)
  keypoints, _ = imigue.read_openpose_clip(root / "skeleton", video_id, 0, 199)
  on_body, checked = 0, 0
  for frame, t in zip(frames, frames_idx):
    for x, y, c in keypoints[t, [0, 1, 2, 3, 5, 6, 14, 15]]:  # nose, neck, shoulders, elbows, eyes.
      if c < 0.3:
        continue
      xi, yi = int(round(x)), int(round(y))
      checked += 1
      on_body += np.abs(frame[yi, xi] - empty[yi, xi]).sum() > 40
    # The top corners are backdrop in every frame.
    assert np.abs(frame[:8, :8] - empty[:8, :8]).mean() < 12
  assert checked > 50 and on_body / checked > 0.9


def test_noise_model_failure_modes():
  size = plan.PRESETS["small"]
  subject = writer.subject_for(0, 1, size)
  rng = np.random.default_rng(0)
  state = motions.idle(subject, 5000, 25, rng)
  clean = body.pose(subject, state)
  dets = noise.detect(subject, clean, state.behind, rng)
  assert dets.no_person.sum() > 0 and len(dets.extra_people) > 10
  shoulders = dets.pose[:, [body.RSHO, body.LSHO]]
  dropped = (shoulders[..., 2] == 0).mean()
  assert 0.005 < dropped < 0.1
  found = shoulders[..., 2] > 0
  error = np.linalg.norm(shoulders[..., :2] - clean["body25"][:, [body.RSHO, body.LSHO]], axis=-1)[found]
  assert 0.2 < np.median(error) < 0.05 * subject.shoulder_width  # jittered, but close.
  assert np.all(dets.pose[:, list(body.HIDDEN_JOINTS)] == 0)
  # What the reader makes of it: the subject is followed through the extra detections.
  for t in list(dets.extra_people)[:20]:
    people = [openpose.pose_to_coco18(p.reshape(-1)) for p in (dets.pose[t], dets.extra_people[t])]
    previous = openpose.pose_to_coco18(dets.pose[t - 1].reshape(-1))
    assert openpose.choose_person(people, previous) == 0


def test_pose_twins_differ_only_in_rgb():
  """C2/C29 and C23/C24/C26 share their pose program; the renderer tells them apart."""
  size = plan.PRESETS["small"]
  subject = writer.subject_for(0, 5, size)
  for twins in ((1, 28), (22, 23, 25)):
    states = []
    for label in twins:
      state = motions.idle(subject, 60, 25, np.random.default_rng(1))
      motions.apply_gesture(label, subject, state, 10, 49, np.random.default_rng(2))
      states.append(state)
    poses = [body.pose(subject, s) for s in states]
    for p in poses[1:]:
      np.testing.assert_array_equal(p["body25"], poses[0]["body25"])
      np.testing.assert_array_equal(p["face"], poses[0]["face"])
    background = render.backdrop(subject)
    images = [render.render_frame(background, subject, p["body25"][30], p["face"][30], s.behind[30],
                                  vars(s), 30).astype(int) for p, s in zip(poses, states)]
    for image in images[1:]:
      assert np.abs(image - images[0]).sum(-1).astype(bool).sum() > 20  # pixels that differ.


def test_cue_scale_enlarges_what_tells_pose_twins_apart():
  """The pixels that differ between pose twins (cheeks vs pressed lips; plain hands vs pen) grow with cue_scale,
  and cue_scale changes nothing in a frame without a cue."""
  size = plan.PRESETS["small"]
  subject = writer.subject_for(0, 5, size)
  background = render.backdrop(subject)

  def frames(label, cue_scale):
    state = motions.idle(subject, 60, 25, np.random.default_rng(1))
    motions.apply_gesture(label, subject, state, 10, 49, np.random.default_rng(2))
    pose = body.pose(subject, state)
    return [render.render_frame(background, subject, pose["body25"][t], pose["face"][t], state.behind[t],
                                vars(state), t, cue_scale).astype(int) for t in (5, 30)]

  for a, b in ((1, 28), (22, 25)):
    differing = []
    for cue_scale in (1.0, 2.0):
      (_, image_a), (_, image_b) = frames(a, cue_scale), frames(b, cue_scale)
      differing.append(np.abs(image_a - image_b).sum(-1).astype(bool).sum())
    assert differing[1] > 1.5 * differing[0], (a, b, differing)
  before_small, _ = frames(25, 1.0)
  before_large, _ = frames(25, 2.0)
  np.testing.assert_array_equal(before_small, before_large)  # frame 5: before the clip starts


def test_class_counts_are_shaped_like_imigue():
  real = np.array(imigue.TRAIN_CLIPS_PER_CLASS) + np.array(imigue.TEST_CLIPS_PER_CLASS)
  for name in ("small", "demo"):
    train, test = plan.class_counts(plan.PRESETS[name])
    total = train + test
    assert total.argmax() == 31  # C32 is the largest class.
    # Same ordering as iMiGUE's counts, up to ties from the per-class floor.
    ranks = lambda a: np.argsort(np.argsort(a))
    assert np.corrcoef(ranks(total), ranks(real))[0, 1] > 0.9
    assert np.all(train >= 1) and test[18] == 0 and (test > 0).sum() >= 29
  train, test = plan.class_counts(plan.PRESETS["demo"])
  assert train.min() >= 5


def test_plan_clips_fit_their_videos():
  videos, train, test = plan.plan_dataset(0, plan.PRESETS["demo"])
  assert (len(train), len(test)) == (12, 12)
  for v in videos:
    ends = [-1] + [x for c in v.clips for x in (c.start_frame, c.end_frame)] + [v.num_frames]
    assert ends == sorted(ends) and len(set(ends)) == len(ends)  # ordered, non-overlapping, inside the video.


@pytest.mark.slow
def test_pose_alone_is_informative_but_not_enough(tmp_path):
  """Nearest centroid on normalised joint trajectories beats the majority class on the test subjects, and stays far
  from perfect (some classes differ only in RGB)."""
  root = tmp_path / "learn"
  synthetic.generate(root, preset="small", seed=0, num_clips=700, width=128, height=96, progress=False)
  result = pose_baseline.nearest_centroid_eval(root)
  print(f"\nsynthetic nearest centroid: {result['test_clips']} test clips, majority {result['majority_rate']:.3f}, "
        f"top-1 {result['top1']:.3f}, mean class accuracy {result['mean_class_accuracy']:.3f}")
  assert result["top1"] > 2 * result["majority_rate"]
  assert result["mean_class_accuracy"] > 0.25
  assert result["top1"] < 0.8
  # The pose twins are confused with each other.
  assert np.mean([result["per_class"].get(c, 0.0) for c in (22, 23, 25)]) < 0.8
