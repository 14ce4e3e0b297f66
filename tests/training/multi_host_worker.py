"""One process of the multi-process tests (test_multi_host.py), started as a subprocess so that each has its own
JAX runtime, host device count (XLA_FLAGS) and place in the process group (JAX_COORDINATOR_ADDRESS,
JAX_NUM_PROCESSES, JAX_PROCESS_ID).

  python multi_host_worker.py train <spec.json>     train + evaluate (1 or N processes); writes <out>.json
  python multi_host_worker.py single <spec.json>    one process: the reference run (spec["reference"], as for
                                                    train), then restore spec["source"]'s checkpoint spec["step"]
                                                    on meshes of spec["devices"] devices and train on
  python multi_host_worker.py kill <spec.json>      join the group, run collectives; process 1 kills itself

The spec holds cache_dir (the synthetic dataset), workdir, out (result JSON path; "{process}" is replaced by
the process index) and, for restore, source (the workdir to restore from) and devices (mesh sizes to try).
"""

import json
import logging
import os
import pathlib
import shutil
import signal
import sys
import time

import jax
import numpy as np

from clipmg_jax.data import input_setup
from clipmg_jax.run import distributed
from clipmg_jax.training import checkpointing
from clipmg_jax.training import defaults
from clipmg_jax.training import evaluation
from clipmg_jax.training import sharding as sharding_lib
from clipmg_jax.training import trainer
from clipmg_jax.training import writers
# The repository root, for configs/: in PYTHONPATH when test_multi_host.py starts this file, pytest's pythonpath when
# it imports it.
from configs import synthetic as synthetic_config

TOTAL_STEPS = 6
# A tiny CLIP-MG on 32 x 32 crops over the real pipeline: 6 steps of global batch 8 (2 per device on 2 x 2),
# validation + checkpoint at step 3, checkpoints at 2, 4 and the final 6.
TINY = {
    "batch_size": 8, "eval_batch_size": 8, "total_steps": TOTAL_STEPS, "log_every_steps": 1,
    "eval_every_steps": 3, "checkpoint.every_steps": 2, "checkpoint.keep_last": 3, "optimizer.warmup_steps": 2,
    "model.vit.width": 16, "model.vit.layers": 2, "model.vit.heads": 2, "model.vit.mlp_dim": 32,
    "model.vit.image_size": 32, "model.trainable_blocks": 1, "model.heatmap.resolution": 8,
    "model.skeleton.features": (4, 8, 8), "model.skeleton.num_groups": 4, "model.skeleton.embed_dim": 16,
    "model.skeleton.strides": ((2, 2, 2), (2, 2, 2), (1, 1, 1)), "model.head.hidden_dim": 16,
    "data.image_size": 32, "data.worker_count": 0, "data.synthetic.preset": "tiny",
    "data.synthetic.convert_workers": 0,  # converting 4 tiny videos in-process beats starting worker processes
    "data.validation.num_subjects": 1, "init.allow_random_vit": True,
    # Attention key biases have exactly zero gradient in exact arithmetic (softmax ignores a per-query constant), so
    # runs on different meshes hold different rounding noise there, which Adam's g / (|g| + eps) turns into steps
    # of lr at eps = 1e-8. A larger eps keeps that below the tolerance (as in parity_worker.py).
    "optimizer.eps": 1e-3,
}


def tiny_config(cache_dir, **extra):
  config = synthetic_config.get_config()
  defaults.override(config, {**TINY, "data.synthetic.cache_dir": str(cache_dir), **extra})
  return config


class Recorder:
  """Instruments the trainer's seams: the clip ids of every training batch this process reads, every
  evaluation's figures, and who writes metrics.jsonl and eval.json."""

  def __init__(self):
    self.batches, self.evals, self.writers_enabled, self.results_written = [], [], [], 0
    recorder = self
    evaluate = trainer.Setup.evaluate

    def recorded_evaluate(setup, params, *, split="test", progress=True):
      result = evaluate(setup, params, split=split, progress=progress)
      recorder.evals.append(dict(evaluation.scalars(result), split=split, num_examples=result["num_examples"],
                                 confusion=result["confusion"]))
      return result
    trainer.Setup.evaluate = recorded_evaluate
    write_results = evaluation.write_results

    def recorded_write_results(*args, **kwargs):
      recorder.results_written += 1
      return write_results(*args, **kwargs)
    evaluation.write_results = recorded_write_results
    writer_init = writers.MetricWriter.__init__

    def recorded_writer_init(writer, workdir, *, enabled=True, **kwargs):
      recorder.writers_enabled.append(bool(enabled))
      writer_init(writer, workdir, enabled=enabled, **kwargs)
    writers.MetricWriter.__init__ = recorded_writer_init

  def watch(self, data):
    """Makes data.train_iterator's iterators record the clip ids of each batch they yield (the iterator stays a
    Grain iterator, so checkpointing sees the real thing)."""
    make = data.train_iterator
    recorder = self

    def train_iterator():
      it = make()
      base = type(it)

      def recorded_next(self):
        batch = base.__next__(self)
        recorder.batches.append(np.asarray(batch["clip_id"]).tolist())
        return batch
      it.__class__ = type("Recorded" + base.__name__, (base,), {"__next__": recorded_next})
      return it
    data.train_iterator = train_iterator
    return data


def params_of(workdir: pathlib.Path, step: int):
  """The saved parameters of checkpoint `step`, read onto one device whatever topology wrote them."""
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
  path = pathlib.Path(workdir) / "checkpoints" / str(step) / "state"
  checkpointer = ocp.StandardCheckpointer()
  metadata = checkpointer.metadata(path)
  tree = getattr(getattr(metadata, "item_metadata", metadata), "tree", metadata)
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), tree)
  return jax.tree.map(np.asarray, checkpointer.restore(path, target)["params"])


def max_diff(a, b) -> float:
  return max(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def run_train(spec: dict) -> dict:
  config = tiny_config(spec["cache_dir"], num_devices=spec.get("num_devices", 0))
  config.distributed = int(os.environ.get(distributed.ENV_NUM_PROCESSES, "1")) > 1
  distributed.initialize(config)
  recorder = recorder_for_run()
  data = recorder.watch(input_setup.make_data_source(config, spec["workdir"]))
  final = trainer.train_and_evaluate(config, spec["workdir"], data)
  return dict(process_index=jax.process_index(), process_count=jax.process_count(),
              devices=jax.device_count(), local_devices=jax.local_device_count(), batches=recorder.batches,
              evals=recorder.evals, final_top1=final["top1"], writers_enabled=recorder.writers_enabled,
              results_written=recorder.results_written)


RECORDER = None


def recorder_for_run() -> Recorder:
  """The process's Recorder (its patches installed once), emptied for a new run."""
  global RECORDER  # pylint: disable=global-statement
  if RECORDER is None:
    RECORDER = Recorder()
  RECORDER.batches, RECORDER.evals, RECORDER.writers_enabled, RECORDER.results_written = [], [], [], 0
  return RECORDER


def run_single(spec: dict) -> dict:
  return dict(reference=run_train(spec["reference"]), restore=run_restore(spec))


def run_restore(spec: dict) -> dict:
  """Restores checkpoint `step` of spec["source"] (another topology) on each mesh size, compares the parameters
  with the saved ones, then lets the trainer resume from it and train to the end."""
  step = spec["step"]
  saved = params_of(spec["source"], step)
  out = {}
  for n in spec["devices"]:
    workdir = pathlib.Path(spec["workdir"]) / f"devices_{n}"
    shutil.copytree(spec["source"], workdir)
    for later in (workdir / "checkpoints").iterdir():  # the checkpoint to restore becomes the latest
      if later.name.isdigit() and int(later.name) > step:
        shutil.rmtree(later)
    config = tiny_config(spec["cache_dir"], num_devices=n)
    recorder = recorder_for_run()
    data = recorder.watch(input_setup.make_data_source(config, workdir))
    setup = trainer.Setup(config, data)
    ckpt = checkpointing.Checkpointer(workdir / "checkpoints", global_batch_size=config.batch_size)
    it = data.train_iterator()
    state = ckpt.restore(setup.abstract_state, it)
    ckpt.close()
    devices = {len(x.sharding.device_set) for x in jax.tree.leaves(state.params)}
    restored_diff = max_diff(saved, state.params)
    next_batch = np.asarray(next(it)["clip_id"]).tolist()
    recorder.batches.clear()
    trainer.train_and_evaluate(config, workdir, data)
    out[str(n)] = dict(restored_diff=restored_diff, param_devices=sorted(devices), step=int(state.step),
                       next_batch=next_batch, batches=recorder.batches,
                       final_diff_to_source=max_diff(params_of(spec["source"], TOTAL_STEPS),
                                                     params_of(workdir, TOTAL_STEPS)))
  return out


def run_kill(spec: dict) -> dict:
  """Joins the group through distributed.initialize and sums a process-sharded array over and over; process 1
  kills itself (SIGKILL: no goodbye to the coordinator) after a few rounds."""
  config = tiny_config(spec["cache_dir"])
  config.distributed = True
  config.cluster.heartbeat_timeout_seconds = spec["heartbeat_timeout"]
  config.cluster.shutdown_timeout_seconds = 5
  distributed.initialize(config)
  mesh = sharding_lib.make_mesh()
  total = jax.jit(lambda x: x.sum())
  for i in range(100_000):
    batch = sharding_lib.place_batch({"x": np.ones((jax.local_device_count(),), np.float32)}, mesh)
    assert float(total(batch["x"])) == jax.device_count()
    if i == 3:
      print(f"process {jax.process_index()}: collectives running", flush=True)
      if jax.process_index() == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.05)
  return {}


def main():
  # As the command-line trainer does: INFO on stderr (distributed.initialize lowers it on processes other than 0).
  logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", force=True)
  mode, spec = sys.argv[1], json.loads(pathlib.Path(sys.argv[2]).read_text())
  result = {"train": run_train, "single": run_single, "kill": run_kill}[mode](spec)
  out = pathlib.Path(spec["out"].replace("{process}", str(jax.process_index())))
  out.write_text(json.dumps(result))
  distributed.shutdown()


if __name__ == "__main__":
  main()
