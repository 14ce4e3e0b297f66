"""The measurements behind docs/results.md's checks of the paper's claims: the moved-part ground truth, the
alignment shares (a map that ignores the part scores exactly its uniform share) and the paired intervals."""

import numpy as np
import pytest
from scipy import stats

from benchmarks import ablations
from benchmarks import query_alignment
from clipmg_jax.data import keypoints as keypoints_lib
from clipmg_jax.data.synthetic import motions
from clipmg_jax.data.synthetic import moved_parts


def test_every_class_program_has_its_moved_part():
  assert set(moved_parts.MOVED_PART) == set(motions.PROGRAMS)
  assert set(moved_parts.MOVED_PART.values()) <= set(moved_parts.PART_JOINTS)


def test_the_acting_hand_is_the_wrist_that_travels():
  kp = np.zeros((32, keypoints_lib.NUM_JOINTS, 3), np.float32)
  kp[..., 2] = 1.0
  left = keypoints_lib.COCO18_NAMES.index("left_wrist")
  kp[:, left, 0] = np.linspace(10, 60, 32)  # only the left wrist moves
  assert moved_parts.acting_side(kp) == 1
  assert moved_parts.moved_joints(2, kp) == (left, keypoints_lib.COCO18_NAMES.index("left_elbow"))
  assert moved_parts.moved_joints(27, kp) == moved_parts.PART_JOINTS["head"]


def test_part_patches_and_shares():
  kp = np.zeros((8, keypoints_lib.NUM_JOINTS, 3), np.float32)  # 2 frames x 4 pose frames
  kp[:, 4] = (39.5, 39.5, 1.0)  # one joint at the centre of patch (2, 2) of a 7 x 7 grid of 16-px patches
  kp[4:, 4, 2] = 0.0  # undetected in the second frame's window
  region = query_alignment.part_patches(kp, (4,), 2, 112, 16, radius=1.0)
  assert region.shape == (2, 49)
  assert set(np.flatnonzero(region[0])) == {9, 15, 16, 17, 23}  # the patch and its 4 neighbours (distance 16)
  assert not region[1].any()
  uniform = {"patch_weights": np.full((2, 7, 7), 1 / 49), "attention": np.full((4, 2, 7, 7), 1 / 98)}
  shares = query_alignment.clip_shares(uniform, region)
  assert shares["w"] == pytest.approx(shares["uniform_w"]) == pytest.approx(5 / 49)
  assert shares["attention"] == pytest.approx(shares["uniform_attention"])
  focused = {"attention": np.zeros((4, 2, 7, 7))}
  focused["attention"][:, 0, 2, 2] = 1.0
  assert query_alignment.clip_shares(focused, region)["attention"] == pytest.approx(1.0)


def test_paired_interval_is_the_t_interval_of_the_differences():
  full = [{"top1": v} for v in (0.50, 0.52, 0.55, 0.51, 0.53)]
  other = [{"top1": v} for v in (0.45, 0.50, 0.49, 0.47, 0.50)]
  text = ablations.paired_differences({"full": full, "no_gate": other}, [0, 1, 2, 3, 4])
  diffs = np.array([-5.0, -2.0, -6.0, -4.0, -3.0])
  half = stats.t.ppf(0.975, 4) * diffs.std(ddof=1) / np.sqrt(5)
  row = text.splitlines()[2]
  assert f"| {diffs.mean():+.1f} | [{diffs.mean() - half:+.1f}, {diffs.mean() + half:+.1f}]" in row
  assert "yes (interval below 0)" in row and "-1.74" in row


def test_paired_verdicts_name_what_the_interval_excludes():
  full = [{"top1": v} for v in (0.50, 0.52, 0.55, 0.51, 0.53)]
  same = [{"top1": v + d} for v, d in zip((0.50, 0.52, 0.55, 0.51, 0.53), (0.004, -0.003, 0.002, -0.001, 0.0))]
  wide = [{"top1": v} for v in (0.40, 0.60, 0.45, 0.58, 0.50)]
  rows = ablations.paired_differences({"full": full, "no_guidance": same, "no_gate": wide}, [0, 1, 2, 3, 4])
  rows = rows.splitlines()
  assert "the interval holds 0, not the paper's difference" in rows[2]  # -16.52 is far outside a +-0.4 interval
  assert "not resolved" in rows[3]  # a wide interval holds both 0 and -1.74
