"""Writes a synthetic dataset in the iMiGUE raw layout (see imigue.py): labels.csv, per-frame OpenPose JSON,
one H.264 mp4 per video, split.json and classes.json."""

import csv
import dataclasses
import json
import multiprocessing
import os
import pathlib
import time

import numpy as np
import tqdm

from clipmg_jax.data.raw import imigue
from clipmg_jax.data.raw import openpose
from clipmg_jax.data.raw import video as video_io
from clipmg_jax.data.synthetic import body, motions, noise, render
from clipmg_jax.data.synthetic.plan import PRESETS, SUBJECT, VIDEO, PlannedVideo, SizeConfig, plan_dataset, rng_for
from clipmg_jax.data.synthetic.subjects import Subject, sample_subject


def subject_for(seed: int, subject_id: int, size: SizeConfig) -> Subject:
  """The appearance and proportions of one subject (the same in all of their videos)."""
  return sample_subject(rng_for(seed, SUBJECT, subject_id), subject_id, size.width, size.height)


def video_state(seed: int, planned: PlannedVideo, subject: Subject, size: SizeConfig) -> body.State:
  """Control state of every frame of one video: idle throughout, each clip's class program inside its frames."""
  rng = rng_for(seed, VIDEO, planned.video_id)
  state = motions.idle(subject, planned.num_frames, size.fps, rng)
  for clip in planned.clips:
    motions.apply_gesture(clip.label, subject, state, clip.start_frame, clip.end_frame, rng)
  return state


def _numbers(values: np.ndarray) -> str:
  return ",".join("0" if v == 0 else f"{v:.3f}" for v in values.reshape(-1).tolist())


def _person_json(pose, face=None, hands=None) -> str:
  empty_face = np.zeros(70 * 3) if face is None else face
  hand_r = np.zeros(21 * 3) if hands is None else hands[0]
  hand_l = np.zeros(21 * 3) if hands is None else hands[1]
  return ('{"person_id":[-1],"pose_keypoints_2d":[' + _numbers(pose) + '],"face_keypoints_2d":['
          + _numbers(empty_face) + '],"hand_left_keypoints_2d":[' + _numbers(hand_l)
          + '],"hand_right_keypoints_2d":[' + _numbers(hand_r) + '],"pose_keypoints_3d":[],"face_keypoints_3d":[],'
          '"hand_left_keypoints_3d":[],"hand_right_keypoints_3d":[]}')


def _write_openpose(folder: pathlib.Path, video_id: str, dets: noise.Detections) -> None:
  folder.mkdir(parents=True, exist_ok=True)
  for t in range(dets.pose.shape[0]):
    people = []
    if not dets.no_person[t]:
      people.append(_person_json(dets.pose[t], dets.face[t], dets.hands[t]))
      if t in dets.extra_people:
        people.append(_person_json(dets.extra_people[t]))
    text = '{"version":1.3,"people":[' + ",".join(people) + "]}"
    (folder / openpose.frame_filename(video_id, t)).write_text(text)


def write_video(root: str | os.PathLike, seed: int, planned: PlannedVideo, size: SizeConfig) -> dict:
  """Writes videos/<id>.mp4 and skeleton/<id>/ of one planned video. Returns counts for the summary."""
  root = pathlib.Path(root)
  subject = subject_for(seed, planned.subject_id, size)
  state = video_state(seed, planned, subject, size)
  clean = body.pose(subject, state)
  dets = noise.detect(subject, clean, state.behind, rng_for(seed, VIDEO, planned.video_id, 1))
  video_id = str(planned.video_id)
  _write_openpose(root / "skeleton" / video_id, video_id, dets)
  background = render.backdrop(subject)
  channels = {name: getattr(state, name) for name in ("lips_pressed", "cheeks", "crossed_fingers", "object",
                                                      "eyes_closed")}
  frames = (render.render_frame(background, subject, clean["body25"][t], clean["face"][t], state.behind[t],
                                channels, t, size.cue_scale) for t in range(planned.num_frames))
  # One encoder thread: the bytes do not depend on the machine, and videos are written in parallel anyway.
  video_io.write_video(root / "videos" / f"{video_id}.mp4", frames, fps=size.fps, preset="ultrafast", threads=1)
  return {"frames": planned.num_frames, "no_person_frames": int(dets.no_person.sum()),
          "two_person_frames": len(dets.extra_people)}


def _write_video_job(args):
  return write_video(*args)


def _label_rows(videos, size: SizeConfig, seed: int):
  for v in videos:
    subject = subject_for(seed, v.subject_id, size)
    for c in v.clips:
      # Times are the frame's middle, so that floor(fps * time) gives the frame back, as in iMiGUE's table.
      yield [v.video_id, c.label_id, f"{(c.start_frame + 0.5) / size.fps:.4f}", c.start_frame,
             f"{(c.end_frame + 0.5) / size.fps:.4f}", c.end_frame, imigue.CLASSES[c.label].csv_class, v.subject_id,
             subject.gender, subject.nationality, "Win" if v.win else "Lose"]


def generate(root: str | os.PathLike, *, preset: str = "small", seed: int = 0, workers: int | None = None,
             progress: bool = True, **overrides) -> dict:
  """Writes a synthetic iMiGUE-like dataset to `root` and returns a summary.

  preset: "tiny" (tests), "small" (default) or "demo" (the end-to-end demonstration), see plan.PRESETS; any
  SizeConfig field given as a keyword overrides the preset (e.g. num_clips=500, width=256, height=192).
  workers: processes writing videos in parallel (default: the CPU count, at most 4). The output does not depend
  on it. Returns {"videos", "clips", "frames", "train_clips", "test_clips", "no_person_frames",
  "two_person_frames", "seconds", "size"}.
  """
  if preset not in PRESETS:
    raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
  size = dataclasses.replace(PRESETS[preset], **overrides)
  root = pathlib.Path(root)
  start = time.time()
  videos, train_subjects, test_subjects = plan_dataset(seed, size)
  root.mkdir(parents=True, exist_ok=True)
  with open(root / "labels.csv", "w", newline="") as f:
    writer = csv.writer(f, lineterminator="\n")
    writer.writerow(imigue.LABEL_COLUMNS)
    writer.writerows(_label_rows(videos, size, seed))
  (root / "split.json").write_text(json.dumps({"train_subjects": list(train_subjects),
                                               "test_subjects": list(test_subjects)}, indent=1) + "\n")
  (root / "classes.json").write_text(json.dumps(imigue.classes_to_json(), indent=1) + "\n")

  jobs = [(str(root), seed, v, size) for v in sorted(videos, key=lambda v: -v.num_frames)]  # longest first.
  workers = workers or min(os.cpu_count() or 1, 4)
  bar = tqdm.tqdm(total=sum(v.num_frames for v in videos), unit="frame", desc="synthetic videos",
                  disable=not progress)
  totals = {"no_person_frames": 0, "two_person_frames": 0}
  if workers > 1 and len(jobs) > 1:
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
      for result in pool.imap_unordered(_write_video_job, jobs):
        bar.update(result["frames"])
        for k in totals:
          totals[k] += result[k]
  else:
    for job in jobs:
      result = write_video(*job)
      bar.update(result["frames"])
      for k in totals:
        totals[k] += result[k]
  bar.close()
  train = set(train_subjects)
  clips = [(v.subject_id, c) for v in videos for c in v.clips]
  summary = {"videos": len(videos), "clips": len(clips), "frames": sum(v.num_frames for v in videos),
             "train_clips": sum(s in train for s, _ in clips), "test_clips": sum(s not in train for s, _ in clips),
             **totals, "seconds": round(time.time() - start, 1), "size": dataclasses.asdict(size)}
  return summary
