"""The validation split: whole training subjects held out of training, for model selection.

iMiGUE has only train and test subjects. Choosing checkpoints or settings by test accuracy would report an
optimistic test number, so periodic evaluation and `--checkpoint=best` use a validation set drawn from the training
subjects instead, and the test split is read only for the final figures. Whole subjects are held out (never clips
of a subject that is also trained on), so validation measures the same cross-subject generalisation as the test.

Which subjects, in order of precedence:
  1. config.data.validation.subjects, when non-empty;
  2. `validation_subjects` of the dataset's split.json, recorded by the converter in manifest.json ("split");
  3. a seeded choice of config.data.validation.num_subjects among the subjects of the train split
     (np.random.default_rng(seed), without replacement; num_subjects=0: no validation split).
Every validation subject must be a subject of the train split, so no test clip can reach validation.
"""

import dataclasses
from typing import Mapping, Sequence

import ml_collections
import numpy as np


@dataclasses.dataclass(frozen=True)
class Validation:
  """subjects: the held-out training subjects, sorted (empty: no validation split). rule: how they were chosen."""
  subjects: tuple[int, ...]
  rule: str


def choose_subjects(train_subjects: Sequence[int], num_subjects: int, seed: int) -> tuple[int, ...]:
  """`num_subjects` of `train_subjects`, drawn without replacement by a generator seeded with `seed`; sorted.

  The draw is over the sorted ids, so it does not depend on the order they are given in.
  """
  pool = sorted(set(int(s) for s in train_subjects))
  if not 0 <= num_subjects < len(pool):
    raise ValueError(f"config.data.validation.num_subjects={num_subjects}: expected 0 <= n < {len(pool)}, the "
                     f"number of training subjects (at least one must stay for training)")
  chosen = np.random.default_rng(seed).choice(pool, size=num_subjects, replace=False)
  return tuple(sorted(int(s) for s in chosen))


def resolve(config: ml_collections.ConfigDict, manifest: Mapping, train_subjects: Sequence[int]) -> Validation:
  """The validation subjects for `config` (= config.data.validation) on a dataset; see the module docstring.

  Args:
    config: fields num_subjects, seed, subjects.
    manifest: the shards' manifest.json document (its optional "split" entry carries split.json's choice).
    train_subjects: the subjects that have records in the train split.
  Raises:
    ValueError naming the source when a chosen subject is not a training subject.
  """
  train = sorted(set(int(s) for s in train_subjects))
  from_split_json = (manifest.get("split") or {}).get("validation_subjects")
  if config.get("subjects"):
    subjects, rule = tuple(sorted(int(s) for s in config.subjects)), "config.data.validation.subjects"
  elif from_split_json:
    subjects, rule = tuple(sorted(int(s) for s in from_split_json)), "validation_subjects of the dataset's split.json"
  else:
    num, seed = int(config.get("num_subjects", 0)), int(config.get("seed", 0))
    subjects = choose_subjects(train, num, seed)
    rule = (f"seeded choice of {num} of the {len(train)} training subjects (config.data.validation.num_subjects="
            f"{num}, seed={seed})") if num else "none (config.data.validation.num_subjects=0)"
  foreign = sorted(set(subjects) - set(train))
  if foreign:
    raise ValueError(f"validation subjects {foreign} (from {rule}) are not subjects of the train split "
                     f"{train}: validation must come from training subjects")
  if subjects and len(subjects) == len(train):
    raise ValueError(f"validation subjects {list(subjects)} (from {rule}) are all the training subjects: none is "
                     f"left to train on")
  return Validation(subjects=subjects, rule=rule)
