"""Which body part each synthetic class moves, as its motion program (motions.PROGRAMS) moves it, in COCO-18 joints.

The ground truth for "does the pose-guided query look where the gesture happens" (studies/query_alignment.py).
One-hand programs act with one hand chosen per clip (the dominant one 85 % of the time), which the class does not
say: their part is "acting_hand", the wrist and elbow of the side whose wrist travels further in the clip
(acting_side). Classes that share a program share a part (C2/C29, C23/C24/C26).
"""

import numpy as np

from clipmg_jax.data import keypoints as keypoints_lib

_J = {name: i for i, name in enumerate(keypoints_lib.COCO18_NAMES)}
PART_JOINTS = {
    "head": (_J["nose"], _J["right_eye"], _J["left_eye"], _J["right_ear"], _J["left_ear"]),
    "shoulders": (_J["neck"], _J["right_shoulder"], _J["left_shoulder"]),
    "head_and_shoulders": (_J["nose"], _J["right_eye"], _J["left_eye"], _J["right_ear"], _J["left_ear"],
                           _J["neck"], _J["right_shoulder"], _J["left_shoulder"]),
    "torso": (_J["neck"], _J["right_shoulder"], _J["left_shoulder"], _J["right_hip"], _J["left_hip"]),
    "both_hands": (_J["right_wrist"], _J["right_elbow"], _J["left_wrist"], _J["left_elbow"]),
    "acting_hand": (),  # resolved per clip by acting_side
}
_HAND = {0: (_J["right_wrist"], _J["right_elbow"]), 1: (_J["left_wrist"], _J["left_elbow"])}

# By 0-based class index (C1..C32), following motions.PROGRAMS.
MOVED_PART = {
    0: "head_and_shoulders",  # turtle neck: the head sinks, the shoulders rise
    1: "shoulders", 28: "shoulders",  # deep breath (bulging face / pressing lips)
    30: "shoulders",  # shaking shoulders
    27: "head",  # head up
    19: "torso", 20: "torso",  # moving torso, sitting straight
    **{c: "acting_hand" for c in (2, 3, 4, 6, 7, 8, 9, 10, 11, 12, 14, 15, 17, 21)},
    **{c: "both_hands" for c in (5, 13, 16, 18, 22, 23, 24, 25, 26, 29, 31)},
}


def acting_side(keypoints: np.ndarray) -> int:
  """0 (right) or 1 (left): the side whose wrist travels the larger path over the clip's detected frames.
  keypoints (T_p, 18, 3)."""
  travel = []
  for side in (0, 1):
    wrist = keypoints[:, _HAND[side][0]]
    seen = wrist[:, 2] > 0
    xy = wrist[seen, :2]
    travel.append(float(np.sum(np.linalg.norm(np.diff(xy, axis=0), axis=-1))) if len(xy) > 1 else 0.0)
  return int(np.argmax(travel))


def moved_joints(label: int, keypoints: np.ndarray) -> tuple[int, ...]:
  """The COCO-18 joints that class `label` moves, for this clip's keypoints (T_p, 18, 3)."""
  part = MOVED_PART[int(label)]
  return _HAND[acting_side(keypoints)] if part == "acting_hand" else PART_JOINTS[part]
