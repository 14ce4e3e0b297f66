"""MiGA challenge skeleton layout, on small files written by the test."""

import numpy as np
import pytest

from clipmg_jax.data import keypoints as kp
from clipmg_jax.data.raw import miga


def _write_sample(root, name, frames, joints, labels, header=True):
  """joints: (T, 35, 3) written after a frame-number column; labels: rows of gestureID,start,end."""
  folder = root / name
  folder.mkdir(parents=True)
  lines = ["frame," + ",".join(f"j{j}_{a}" for j in range(35) for a in "xyc")] if header else []
  lines += [f"{f}," + ",".join(f"{v:.4f}" for v in row.reshape(-1)) for f, row in zip(frames, joints)]
  (folder / f"{name}_light_hand.csv").write_text("\n".join(lines) + "\n")
  label_lines = (["gestureID,start,end"] if header else []) + [",".join(map(str, r)) for r in labels]
  (folder / f"{name}_label.csv").write_text("\n".join(label_lines) + "\n")
  return folder


@pytest.mark.parametrize("header", [True, False])
def test_read_miga_sample(tmp_path, header):
  rng = np.random.default_rng(0)
  joints = rng.uniform(0, 1, (12, 35, 3)).round(4)
  joints[..., :2] *= 500
  frames = np.arange(100, 112)
  folder = _write_sample(tmp_path, "s0001", frames, joints, [(8, 101, 104), (99, 106, 115)], header)
  read_frames, keypoints, segments = miga.read_miga_sample(folder)
  np.testing.assert_array_equal(read_frames, frames)
  assert keypoints.shape == (12, 18, 3) and keypoints.dtype == np.float32
  # COCO-18 joint k is BODY_25 joint BODY25_TO_COCO18[k] of the first 25 MiGA joints; hand points are ignored.
  np.testing.assert_allclose(keypoints, joints[:, kp.BODY25_TO_COCO18], rtol=1e-6)
  assert segments == [miga.MigaSegment(label=7, start=101, end=104), miga.MigaSegment(label=31, start=106, end=115)]
  clip, missing = miga.segment_keypoints(read_frames, keypoints, segments[1])
  assert clip.shape == (10, 18, 3) and missing == 4  # frames 112..115 are past the file's end.
  np.testing.assert_array_equal(clip[:6], keypoints[6:])
  assert np.all(clip[6:] == 0)


def test_miga_errors_name_file_line_column(tmp_path):
  joints = np.ones((3, 35, 3))
  folder = _write_sample(tmp_path, "bad", [0, 1, 2], joints, [(40, 0, 2)])
  with pytest.raises(ValueError, match=r"bad_label.csv:2: unknown iMiGUE class id 40"):
    miga.read_miga_labels(folder / "bad_label.csv")
  path = folder / "bad_light_hand.csv"
  lines = path.read_text().splitlines()
  lines[2] = lines[2].replace("1.0000", "abc", 1)
  path.write_text("\n".join(lines))
  with pytest.raises(ValueError, match=r"bad_light_hand.csv:3: column 2 has 'abc'"):
    miga.read_miga_skeleton(path)
  lines[2] = "1,2,3"
  path.write_text("\n".join(lines))
  with pytest.raises(ValueError, match=r"bad_light_hand.csv:3: expected 106 columns"):
    miga.read_miga_skeleton(path)
  lines = _write_sample(tmp_path, "order", [0, 2, 1], joints, [])
  with pytest.raises(ValueError, match="frame numbers must increase"):
    miga.read_miga_skeleton(lines / "order_light_hand.csv")
