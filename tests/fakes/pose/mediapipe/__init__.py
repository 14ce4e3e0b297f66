"""A stand-in for mediapipe's BlazePose (`mp.solutions.pose.Pose`), for tests where mediapipe is not installed:
data_prep/extract_pose.py runs unchanged with it (in process through sys.modules, or as a subprocess with this folder's
parent on PYTHONPATH).

Like MediaPipe's tracking, the landmarks of a frame depend on every frame the tracker saw before it: they follow a
running average of the frame's centre of brightness, so a fresh tracker gives other keypoints than a continuing one.
A frame without contrast (a uniform picture) has no person.
"""

import types

import numpy as np


class Pose:
  """mp.solutions.pose.Pose: process(rgb) -> result with .pose_landmarks (None: no person) holding 33 landmarks
  (x, y normalised to the frame, visibility)."""

  def __init__(self, static_image_mode=False, model_complexity=1, smooth_landmarks=True,
               min_detection_confidence=0.5):
    del static_image_mode, model_complexity, smooth_landmarks, min_detection_confidence
    self._state = None

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()

  def close(self):
    self._state = None

  def process(self, rgb):
    gray = np.asarray(rgb, np.float64).mean(axis=-1)
    if gray.std() < 2:
      return types.SimpleNamespace(pose_landmarks=None)
    height, width = gray.shape
    weights = gray / gray.sum()
    centre = np.array([(weights.sum(axis=0) * np.arange(width)).sum() / width,
                       (weights.sum(axis=1) * np.arange(height)).sum() / height])
    self._state = centre if self._state is None else 0.7 * self._state + 0.3 * centre
    points = [types.SimpleNamespace(x=self._state[0] + 0.02 * (j % 5 - 2), y=self._state[1] + 0.02 * (j // 5 - 3),
                                    visibility=0.9) for j in range(33)]
    return types.SimpleNamespace(pose_landmarks=types.SimpleNamespace(landmark=points))


solutions = types.SimpleNamespace(pose=types.SimpleNamespace(Pose=Pose))
