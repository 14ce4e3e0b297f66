"""Pose that fails: keypoints corrupted on the host, at evaluation time (seeded per clip) and, for robust fusion, in
training (seeded per clip and step).

The paper's gate is meant to fall back on vision "when pose is unreliable". This module makes pose unreliable in
the four ways a pose estimator fails, each scaled by one level p in [0, 1]:

  drop        each joint is lost with probability p (confidence 0 at (0, 0), as a missed detection is stored)
  jitter      Gaussian noise of standard deviation p * jitter_px pixels on x and y of every detected joint
  confidence  every confidence is multiplied by 1 - p (joints fall under the model's confidence threshold)
  frames      each pose frame is lost with probability p (all its joints dropped), as when the person is missed

Evaluation (`config.eval_corruption`: level, kinds, jitter_px, seed; read by `python -m clipmg_jax.evaluate` and
`studies/pose_corruption.py`): the random numbers of a clip come from (seed, clip_id) alone, so every variant,
batch size and process count sees the same corrupted keypoints for the same clip. Level 0 returns the batch
unchanged (the plain evaluation, bit for bit); level 1 with "drop" (or "frames") leaves no joint at all.

Training (`config.train_corruption`, off by default, and not part of `+robust`): before each train step, each clip of the
batch loses its whole pose stream with probability pose_dropout (every joint dropped: nobody detected), or else is
corrupted with probability `probability` by the same kinds at a level drawn uniformly from [0, max_level]. The
random numbers come from (config.seed, step, clip_id) alone, so a resumed run draws what the uninterrupted one drew,
whatever the batch size per process. With pose_dropout and probability 0 the batch is passed on untouched.
"""

from typing import Iterable, Iterator

import ml_collections
import numpy as np

KINDS = ("drop", "jitter", "confidence", "frames")


def default_config() -> ml_collections.ConfigDict:
  """The fields of config.eval_corruption (level 0: off)."""
  return ml_collections.ConfigDict(dict(
      level=0.0,  # p in [0, 1]: how much of each kind
      kinds=",".join(KINDS),  # comma-separated subset of KINDS, applied in that order
      jitter_px=8.0,  # standard deviation of the jitter at p = 1, in pixels of the model's input frame
      seed=0,
  ))


def parse_kinds(kinds: str) -> tuple[str, ...]:
  """"drop,jitter" -> ("drop", "jitter"); ValueError naming the kinds for an unknown one."""
  names = tuple(k.strip() for k in str(kinds).split(",") if k.strip())
  unknown = [k for k in names if k not in KINDS]
  if unknown or not names:
    raise ValueError(f"eval_corruption.kinds={kinds!r}: expected a comma-separated subset of {KINDS}")
  return names


def check(corruption: ml_collections.ConfigDict) -> None:
  """ValueError naming the field for a level outside [0, 1], a negative jitter or an unknown kind."""
  if not 0.0 <= float(corruption.level) <= 1.0:
    raise ValueError(f"eval_corruption.level={corruption.level}: expected a fraction in [0, 1]")
  if float(corruption.jitter_px) < 0:
    raise ValueError(f"eval_corruption.jitter_px={corruption.jitter_px}: expected >= 0 pixels")
  parse_kinds(corruption.kinds)


def corrupt_clip(keypoints: np.ndarray, clip_id: int, level: float, kinds: tuple[str, ...], jitter_px: float,
                 seed: int) -> np.ndarray:
  """One clip's keypoints (T_p, J, 3) corrupted at `level`, with random numbers from (seed, clip_id); a new float32
  array (the input is not changed). A lost joint becomes (0, 0, 0), as the converter stores a missed detection; at
  level 0 every value is kept as it was."""
  rng = np.random.default_rng([int(seed), int(clip_id) & _ID_MASK])
  return _corrupt(keypoints, rng, level, kinds, jitter_px)


_ID_MASK = 0xFFFFFFFFFFFF  # clip ids as non-negative seed words (padding rows have -1)


def _corrupt(keypoints: np.ndarray, rng: np.random.Generator, level: float, kinds: tuple[str, ...],
             jitter_px: float) -> np.ndarray:
  out = np.array(keypoints, np.float32, copy=True)
  # Every kind draws its numbers whether or not it is asked for, so that a clip's drops do not depend on which
  # other kinds are on (the same joints are lost under "drop" and under "drop,jitter").
  lost_joint = rng.random(out.shape[:2]) < level
  noise = rng.standard_normal(out[..., :2].shape).astype(np.float32)
  lost_frame = rng.random(out.shape[0]) < level
  if "drop" in kinds:
    out[lost_joint] = 0.0
  if "jitter" in kinds:
    keep = (out[..., 2] > 0)[..., None]
    out[..., :2] = np.where(keep, out[..., :2] + np.float32(level * jitter_px) * noise, out[..., :2])
  if "confidence" in kinds:
    out[..., 2] *= np.float32(1.0 - level)
  if "frames" in kinds:
    out[lost_frame] = 0.0
  return out


def train_config() -> ml_collections.ConfigDict:
  """The fields of config.train_corruption (all off)."""
  return ml_collections.ConfigDict(dict(
      pose_dropout=0.0,  # probability that a clip's whole pose stream is dropped
      probability=0.0,  # else, probability that its keypoints are corrupted at a level in [0, max_level]
      max_level=1.0,
      kinds=",".join(KINDS),  # comma-separated subset of KINDS
      jitter_px=8.0,  # standard deviation of the jitter at level 1, in pixels of the model's input frame
  ))


def check_training(corruption: ml_collections.ConfigDict) -> None:
  """ValueError naming the field for a probability or level outside [0, 1], a negative jitter or an unknown kind."""
  for field in ("pose_dropout", "probability", "max_level"):
    if not 0.0 <= float(corruption[field]) <= 1.0:
      raise ValueError(f"train_corruption.{field}={corruption[field]}: expected a fraction in [0, 1]")
  if float(corruption.jitter_px) < 0:
    raise ValueError(f"train_corruption.jitter_px={corruption.jitter_px}: expected >= 0 pixels")
  parse_kinds(corruption.kinds)


def training_is_on(corruption: ml_collections.ConfigDict | None) -> bool:
  return corruption is not None and (float(corruption.pose_dropout) > 0 or float(corruption.probability) > 0)


def corrupt_training_batch(batch: dict[str, np.ndarray], corruption: ml_collections.ConfigDict | None, *, seed: int,
                           step: int) -> dict[str, np.ndarray]:
  """The training batch of `step` with each clip's keypoints dropped or corrupted (module docstring); the batch
  itself when the training corruption is off."""
  if not training_is_on(corruption):
    return batch
  kinds = parse_kinds(corruption.kinds)
  dropout, probability = float(corruption.pose_dropout), float(corruption.probability)
  max_level, jitter_px = float(corruption.max_level), float(corruption.jitter_px)
  out = []
  for keypoints, clip_id in zip(np.asarray(batch["keypoints"]), np.asarray(batch["clip_id"])):
    rng = np.random.default_rng([int(seed), int(step), int(clip_id) & _ID_MASK])
    drop, corrupt, level = rng.random(3)
    if drop < dropout:
      out.append(np.zeros_like(keypoints, np.float32))
    elif corrupt < probability:
      out.append(_corrupt(keypoints, rng, level * max_level, kinds, jitter_px))
    else:
      out.append(np.asarray(keypoints, np.float32))
  return dict(batch, keypoints=np.stack(out))


def corrupt_batch(batch: dict[str, np.ndarray], corruption: ml_collections.ConfigDict) -> dict[str, np.ndarray]:
  """The batch with its "keypoints" (B, T_p, J, 3) corrupted clip by clip (by "clip_id"); the batch itself when
  the level is 0."""
  level = float(corruption.level)
  if level == 0.0:
    return batch
  kinds = parse_kinds(corruption.kinds)
  keypoints = np.stack([
      corrupt_clip(k, c, level, kinds, float(corruption.jitter_px), int(corruption.seed))
      for k, c in zip(np.asarray(batch["keypoints"]), np.asarray(batch["clip_id"]))])
  return dict(batch, keypoints=keypoints)


def corrupted(batches: Iterable[dict[str, np.ndarray]],
              corruption: ml_collections.ConfigDict | None) -> Iterator[dict[str, np.ndarray]]:
  """The batches with corrupt_batch applied (unchanged without a corruption config or at level 0)."""
  if corruption is None or float(corruption.level) == 0.0:
    yield from batches
    return
  check(corruption)
  for batch in batches:
    yield corrupt_batch(batch, corruption)


def results_suffix(described: dict | None) -> str:
  """What a corrupted evaluation adds to its files' names: "_pose50" with every kind, "_pose50_jitter" (or
  "_pose50_drop-frames") with some, so that two kinds at one level never share a file; "" when off."""
  if not described:
    return ""
  kinds = described["kinds"]
  return f"_pose{round(100 * described['level'])}" + ("" if set(kinds) == set(KINDS) else "_" + "-".join(kinds))


def describe(corruption: ml_collections.ConfigDict | None) -> dict | None:
  """What eval.json records of a corruption (None when off)."""
  if corruption is None or float(corruption.level) == 0.0:
    return None
  return {"level": float(corruption.level), "kinds": list(parse_kinds(corruption.kinds)),
          "jitter_px": float(corruption.jitter_px), "seed": int(corruption.seed)}
