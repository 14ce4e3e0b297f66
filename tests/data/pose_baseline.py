"""A pose-only nearest-centroid classifier over a raw dataset root: a sanity reference for how much of a dataset's
label is visible in the skeleton alone (no learning beyond class means)."""

import collections
import os
import pathlib

import numpy as np

from clipmg_jax.data.raw import imigue

# COCO-18 joints a seated subject shows: head, neck, shoulders, elbows, wrists, eyes, ears.
UPPER_BODY = (0, 1, 2, 3, 4, 5, 6, 7, 14, 15, 16, 17)


def trajectory_features(keypoints: np.ndarray, num_frames: int = 32) -> np.ndarray:
  """keypoints (T, 18, 3) pixels -> (num_frames * 12 * 2,) upper-body trajectory, body-normalised.

  Frames are sampled uniformly over the clip; a joint missing in a frame takes its mean over the clip's frames
  where it was found (0 if never); positions are relative to the clip's mean neck and divided by the median
  shoulder width, so subjects of different size and place in the frame compare.
  """
  index = np.linspace(0, len(keypoints) - 1, num_frames).round().astype(int)
  joints = keypoints[index][:, UPPER_BODY]
  found = joints[..., 2] > 0
  xy = joints[..., :2].astype(np.float64)
  for j in range(xy.shape[1]):
    xy[~found[:, j], j] = xy[found[:, j], j].mean(0) if found[:, j].any() else np.nan
  neck = xy[:, 1].mean(0)
  shoulders = np.linalg.norm(xy[:, 2] - xy[:, 5], axis=-1)
  scale = np.nanmedian(shoulders) if np.isfinite(shoulders).any() else 1.0
  return np.nan_to_num((xy - neck) / max(scale, 1e-3)).reshape(-1).astype(np.float32)


def nearest_centroid_eval(root: str | os.PathLike, num_frames: int = 32) -> dict:
  """Fits class centroids on the train subjects of `root` (labels.csv, skeleton/, split.json) and scores the test
  subjects. Returns {"test_clips", "majority_rate", "top1", "mean_class_accuracy", "per_class"}."""
  root = pathlib.Path(root)
  clips = imigue.read_labels(root / "labels.csv")
  train_subjects, test_subjects = imigue.load_split(root)
  features = np.stack([trajectory_features(imigue.read_openpose_clip(root / "skeleton", c.video_id, c.start_frame,
                                                                     c.end_frame)[0], num_frames) for c in clips])
  labels = np.array([c.label for c in clips])
  subjects = np.array([c.subject for c in clips])
  train, test = np.isin(subjects, train_subjects), np.isin(subjects, test_subjects)
  mean, std = features[train].mean(0), features[train].std(0) + 1e-3
  features = (features - mean) / std
  classes = np.unique(labels[train])
  centroids = np.stack([features[train & (labels == c)].mean(0) for c in classes])
  distances = ((features[test][:, None] - centroids[None]) ** 2).sum(-1)
  predicted = classes[distances.argmin(1)]
  truth = labels[test]
  per_class = {int(c): float((predicted[truth == c] == c).mean()) for c in np.unique(truth)}
  return {"test_clips": int(test.sum()),
          "majority_rate": collections.Counter(truth.tolist()).most_common(1)[0][1] / len(truth),
          "top1": float((predicted == truth).mean()),
          "mean_class_accuracy": float(np.mean(list(per_class.values()))),
          "per_class": per_class}
