"""A synthetic iMiGUE-like dataset written in the real raw layout (labels.csv, OpenPose JSON, H.264 videos).

Seated people at a press-conference desk perform the 32 iMiGUE classes inside longer videos with idle stretches.
Modules: subjects (appearance, proportions), body (control state -> joints), motions (idle + one program per
class), noise (pose-estimator failure modes), render (PIL drawing from the same joints), plan (sizes, split, class
counts), writer (files). Entry point: generate(root, preset=..., seed=...).
"""

from clipmg_jax.data.synthetic.plan import PRESETS, SizeConfig, class_counts, plan_dataset, size_overrides  # noqa: F401
from clipmg_jax.data.synthetic.writer import generate  # noqa: F401
