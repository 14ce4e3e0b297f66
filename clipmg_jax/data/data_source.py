"""What the trainer needs from the data side, as one small object (so tests can pass an in-memory one)."""

import dataclasses
from typing import Any, Callable, Iterable, Iterator

import numpy as np


@dataclasses.dataclass
class DataSource:
  """train_iterator: () -> an endless iterator of host batches (this process's share of the global batch:
    frames uint8 (b,T,H,W,3), keypoints float32 (b,Tp,18,3), label/subject/clip_id int32 (b,)), with
    get_state()/set_state() (a Grain DatasetIterator) so that its position is checkpointed with the model.
  eval_batches: () -> a finite iterable over the test split, batches of at most eval_batch_size rows. The trainer
    reads it only after the last step (and clipmg_jax.evaluate), never to choose anything.
  validation_batches: () -> the same over the validation split (whole training subjects the train iterator never
    yields), for periodic evaluation and checkpoint selection; None when there is no validation split.
  class_names: C names, index = class index.
  train_class_counts: int (C,) training examples per class (for class-balanced losses), or None.
  image_size: side of the square frames in pixels.
  data_config: the config's data block as resolved by the data set-up (paths of the synthetic dataset filled in,
    the validation subjects chosen): what the run read, and what its config.json records (input_setup.run_config);
    None for a source that reads no dataset.
  """
  train_iterator: Callable[[], Iterator[dict[str, np.ndarray]]]
  eval_batches: Callable[[], Iterable[dict[str, np.ndarray]]]
  class_names: list[str]
  train_class_counts: np.ndarray | None
  image_size: int
  eval_batch_size: int
  info: dict[str, Any] = dataclasses.field(default_factory=dict)
  validation_batches: Callable[[], Iterable[dict[str, np.ndarray]]] | None = None
  data_config: Any = None
