"""The measurements behind docs/results.md's checks of the paper's claims: the moved-part ground truth, the
alignment shares (a map that ignores the part scores exactly its uniform share) and the paired intervals."""

import numpy as np
import pytest
from scipy import stats

from studies import ablations
from studies import query_alignment
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


def test_robust_fusion_pairs_by_seed_and_judges_the_targets():
  """The robust-fusion study: differences are paired seed by seed, its t interval is ablations.mean_interval's, the
  targets compare means over the seeds all three variants have, and visual_only's clean figure stands for every
  condition."""
  import argparse  # pylint: disable=import-outside-toplevel
  from studies import robust_fusion  # pylint: disable=import-outside-toplevel
  args = argparse.Namespace(split="test", seed_list=[0, 1, 2], variant_list=["full", "full+robust", "visual_only"])
  all_kinds = robust_fusion.ALL
  top1 = {("full", 0.0): [0.50, 0.55, 0.52], ("full+robust", 0.0): [0.50, 0.54, 0.52],
          ("full", 1.0): [0.10, 0.08, 0.12], ("full+robust", 1.0): [0.36, 0.37, None]}
  results = {f"{v}/seed{s}/{all_kinds}/{level:g}": {"top1": t, "gate_mean": 0.5}
             for (v, level), values in top1.items() for s, t in enumerate(values) if t is not None}
  results.update({f"visual_only/seed{s}/{all_kinds}/0": {"top1": t} for s, t in enumerate([0.35, 0.37, 0.40])})
  assert robust_fusion.figures(results, args, "visual_only", "drop", 1.0) == pytest.approx([35.0, 37.0, 40.0])
  mean, half, n = robust_fusion.paired(results, args, "full+robust", "full", all_kinds, 0.0)
  assert n == 3 and mean == pytest.approx(-1 / 3)
  assert half == pytest.approx(ablations.mean_interval([0.0, -1.0, 0.0])[1])
  assert robust_fusion.paired(results, args, "full+robust", "visual_only", all_kinds, 1.0)[2] == 2  # seed 2 missing
  vs_full = robust_fusion.paired(results, args, "full+robust", "full", all_kinds, 0.0)
  assert robust_fusion.targets(results, args, all_kinds, 0.0, vs_full, None)[1] == "yes"  # -0.3 >= -1
  vs_vision = robust_fusion.paired(results, args, "full+robust", "visual_only", all_kinds, 1.0)
  assert vs_vision[0] == pytest.approx(0.5)  # (36 - 35 + 37 - 37) / 2 over the paired seeds 0 and 1
  assert robust_fusion.targets(results, args, all_kinds, 1.0, None, vs_vision)[1] == "yes"
