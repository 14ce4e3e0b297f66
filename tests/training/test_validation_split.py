"""The validation split: whole training subjects, never trained on, and the only split that periodic evaluation and
checkpoint selection see; the test split is read once, after the last step."""

import json
import pathlib

import numpy as np
import pytest

import training_stand_ins as stand_ins
from clipmg_jax.data import input_setup
from clipmg_jax.data.data_source import DataSource
from clipmg_jax.data.loader import shard_source
from clipmg_jax.data.loader import validation
from clipmg_jax.training import checkpointing
from clipmg_jax.training import runs
from clipmg_jax.training import trainer
from clipmg_jax.figures import results as result_figures
from configs import synthetic as synthetic_config


def test_seeded_choice_is_fixed_and_from_the_training_subjects():
  train = [5, 2, 9, 7, 3]
  chosen = validation.choose_subjects(train, 2, seed=0)
  assert chosen == validation.choose_subjects(list(reversed(train)), 2, seed=0)  # order of the input is irrelevant
  assert len(chosen) == 2 and set(chosen) <= set(train)
  with pytest.raises(ValueError, match="num_subjects=5"):
    validation.choose_subjects(train, 5, seed=0)  # none would be left to train on


def test_precedence_and_foreign_subjects():
  cfg = synthetic_config.get_config().data.validation
  seeded = validation.resolve(cfg, {}, [1, 2, 3, 4])
  assert len(seeded.subjects) == 2 and "seeded" in seeded.rule
  from_json = validation.resolve(cfg, {"split": {"validation_subjects": [3]}}, [1, 2, 3, 4])
  assert from_json.subjects == (3,) and "split.json" in from_json.rule
  cfg.subjects = (4, 1)
  assert validation.resolve(cfg, {"split": {"validation_subjects": [3]}}, [1, 2, 3, 4]).subjects == (1, 4)
  cfg.subjects = (4, 8)  # 8 is not a training subject (say, a test subject)
  with pytest.raises(ValueError, match=r"\[8\].*not subjects of the train split"):
    validation.resolve(cfg, {}, [1, 2, 3, 4])


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
  """The tiny synthetic dataset (4 subjects: 2 train, 2 test), converted through the trainer's data setup."""
  cache = tmp_path_factory.mktemp("synthetic_cache")
  config = synthetic_config.get_config()
  config.data.synthetic.preset = "tiny"
  config.data.synthetic.cache_dir = str(cache)
  config.data.validation.num_subjects = 1
  config.data.worker_count = 0
  config.data.image_size = 32
  config.batch_size = 8
  config.eval_batch_size = 8
  data = input_setup.make_data_source(config, cache / "workdir")
  return config, data


def _clips(batches) -> tuple[set, set]:
  ids, subjects = set(), set()
  for batch in batches:
    keep = np.asarray(batch["mask"], bool)
    ids |= set(np.asarray(batch["clip_id"])[keep].tolist())
    subjects |= set(np.asarray(batch["subject"])[keep].tolist())
  return ids, subjects


def test_validation_is_whole_training_subjects_never_trained_on(synthetic):
  config, data = synthetic
  manifest = json.loads((pathlib.Path(data.data_config.shards_dir) / "manifest.json").read_text())
  split = manifest["split"]
  val_subjects = set(data.info["validation"]["subjects"])
  # recorded in the run's config (input_setup.run_config, what config.json holds), the config given left as it was
  assert tuple(input_setup.run_config(config, data).data.validation.subjects) == tuple(sorted(val_subjects))
  assert not config.data.validation.subjects
  assert len(val_subjects) == 1 and val_subjects <= set(split["train_subjects"])

  val_ids, val_seen = _clips(data.validation_batches())
  test_ids, test_seen = _clips(data.eval_batches())
  assert val_seen == val_subjects
  assert not val_ids & test_ids and not val_seen & test_seen  # no test clip reaches validation

  table = shard_source.record_table(data.data_config.shards_dir, config.data.train_split)
  n_train = int(np.sum(~np.isin(table["subject"], list(val_subjects))))
  assert len(val_ids) == data.info["validation"]["num_clips"] == len(table["subject"]) - n_train
  it = data.train_iterator()
  train_ids, train_seen = _clips(next(it) for _ in range(3 * n_train // config.batch_size + 3))  # ~3 epochs
  assert not train_seen & val_subjects and not train_ids & val_ids  # validation clips are not trained on
  assert not train_ids & test_ids
  assert len(train_ids) == n_train  # every other training clip is
  held_out = np.isin(table["subject"], list(val_subjects))
  np.testing.assert_array_equal(data.train_class_counts, np.bincount(table["label"][~held_out], minlength=32))


def _watch_test_reads(data: DataSource, metrics_path: pathlib.Path) -> tuple[DataSource, list]:
  """data with its test split wrapped: each read appends the training steps logged so far (log_every_steps=1)."""
  reads = []

  def eval_batches():
    lines = metrics_path.read_text().splitlines() if metrics_path.is_file() else []
    reads.append(sum(json.loads(l)["split"] == "train" for l in lines))
    return data.eval_batches()

  return DataSource(**{**data.__dict__, "eval_batches": eval_batches}), reads


def test_periodic_evaluation_and_selection_never_see_the_test_split(tmp_path):
  data, test_reads = _watch_test_reads(stand_ins.tiny_data(), tmp_path / "metrics.jsonl")
  config = stand_ins.tiny_config(total_steps=6, eval_every_steps=2, **{"checkpoint.every_steps": 2,
                                                                      "checkpoint.keep_last": 5})
  trainer.train_and_evaluate(config, tmp_path, data, stand_ins.tiny_model())
  assert test_reads == [6]  # once, after the last of the 6 training steps

  lines = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  val = {l["step"]: l for l in lines if l["split"] == "validation"}
  assert sorted(val) == [2, 4, 6]
  assert [l["step"] for l in lines if l["split"] == "test"] == [6]
  assert {l["split"] for l in lines} == {"train", "validation", "test"}

  ckpt = checkpointing.Checkpointer(tmp_path / "checkpoints", keep_last=5)
  for step in (2, 4, 6):  # every ranked checkpoint carries its validation metrics, and only those
    saved = ckpt.manager.metrics(step)
    assert saved[checkpointing.VALIDATION_MARK] == 1.0
    assert saved["top1"] == pytest.approx(val[step]["top1"])
  ckpt.close()
  result = json.loads((tmp_path / "eval.json").read_text())
  assert result["split"] == "test" and result["checkpoint"] == "final" and "none" in result["selection"]
  assert result["num_examples"] == 20 and result["validation"]["subjects"] == [10, 11]

  best = runs.evaluate_checkpoint(config, tmp_path, "best", data=data, model=stand_ins.tiny_model(),
                                  plots=result_figures.write_evaluation_plots)
  chosen = max((val[s]["top1"], s) for s in val)[1]
  result = json.loads((tmp_path / f"eval_best_{chosen}.json").read_text())
  assert result["step"] == chosen and result["split"] == "test" == best["split"]
  assert "highest validation top-1" in result["selection"]
  assert json.loads((tmp_path / "eval.json").read_text())["checkpoint"] == "final"  # the run's own, kept
  assert (tmp_path / f"confusion_best_{chosen}.png").is_file()
  # A corrupted-pose evaluation has files of its own and says what it did to the keypoints.
  config.eval_corruption.level = 0.5
  runs.evaluate_checkpoint(config, tmp_path, "best", data=data, model=stand_ins.tiny_model())
  corrupted = json.loads((tmp_path / f"eval_best_{chosen}_pose50.json").read_text())
  assert corrupted["pose_corruption"]["level"] == 0.5 and "pose_corruption" not in result


def test_without_validation_there_is_no_periodic_evaluation(tmp_path):
  config = stand_ins.tiny_config(total_steps=4, eval_every_steps=2)
  trainer.train_and_evaluate(config, tmp_path, stand_ins.tiny_data(n_val=0), stand_ins.tiny_model())
  lines = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert {l["split"] for l in lines} == {"train", "test"}
  runs.evaluate_checkpoint(config, tmp_path, "best", data=stand_ins.tiny_data(n_val=0), model=stand_ins.tiny_model())
  assert json.loads((tmp_path / "eval_best_4.json").read_text())["selection"].startswith("latest: no checkpoint")
