"""Multi-host training with real processes on this machine (CPU; 127.0.0.1 coordinator, gloo collectives).

Two processes x 2 host devices train the tiny CLIP-MG over the real pipeline and shards, with a validation run and
checkpoints in between; one process x 4 devices does the same run as the reference, then restores the 2 x 2
checkpoint on 1 x 1 and 1 x 4 meshes and trains on. Checked: every training record read exactly once per epoch by
the processes together, parameters and evaluations equal to the one-process run, files written by process 0
only, restore on another topology (state and input position), and a killed process reported by the survivor.
"""

import json
import os
import pathlib
import socket
import subprocess
import sys
import time

import grain
import numpy as np
import pytest

import multi_host_worker as worker
from clipmg_jax.data import input_setup
from clipmg_jax.data.loader import pipeline
from clipmg_jax.data.records import example_codec
from clipmg_jax.data.records import manifest as manifest_lib
from clipmg_jax.data.synthetic import prepare as synthetic_prepare
from clipmg_jax.run import distributed
from clipmg_jax.training import data_position

WORKER = pathlib.Path(worker.__file__)
REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
TIMEOUT = 600


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def launch(mode: str, spec: dict, tmp: pathlib.Path, *, processes: int, devices: int) -> list[tuple]:
  """Starts `processes` workers (each with `devices` host devices); returns (Popen, stderr path) pairs."""
  spec_path = tmp / f"{mode}_spec.json"
  spec_path.write_text(json.dumps(spec))
  port = free_port()
  started = []
  for i in range(processes):
    # These tiny runs are compile-bound: with XLA's backend optimisation passes off the file takes 166 s instead of
    # 255 s on a 2-core CPU. Every run here, the reference included, uses the same flags.
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices} "
                         "--xla_backend_optimization_level=0",
               PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
               # The processes compile the same programs: share them through JAX's persistent cache.
               JAX_COMPILATION_CACHE_DIR=str(tmp.parent / "jax_cache"),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    if processes > 1:
      env.update({distributed.ENV_ADDRESS: f"127.0.0.1:{port}", distributed.ENV_NUM_PROCESSES: str(processes),
                  distributed.ENV_PROCESS_ID: str(i)})
    log = tmp / f"{mode}_{i}.log"
    with open(log, "w", encoding="utf-8") as f:
      proc = subprocess.Popen([sys.executable, str(WORKER), mode, str(spec_path)], env=env, stdout=f,
                              stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    started.append((proc, log))
  return started


def wait_all(started: list[tuple], timeout: float = TIMEOUT) -> list[str]:
  """Waits for every worker; fails with the logs' tails when one fails or they exceed `timeout` together."""
  deadline = time.monotonic() + timeout
  for proc, _ in started:
    try:
      proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
      for p, _ in started:
        p.kill()
      break
  logs = [log.read_text() for _, log in started]
  for (proc, _), text in zip(started, logs):
    assert proc.returncode == 0, f"worker exited with {proc.returncode}:\n{text[-4000:]}"
  return logs


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> pathlib.Path:
  """The tiny synthetic dataset, generated and converted once through the trainer's data setup."""
  cache = tmp_path_factory.mktemp("multi_host_data")
  input_setup.make_data_source(worker.tiny_config(cache), cache / "unused_workdir")
  return cache


@pytest.fixture(scope="module")
def two_hosts(cache_dir, tmp_path_factory) -> dict:
  tmp = tmp_path_factory.mktemp("two_hosts")
  spec = dict(cache_dir=str(cache_dir), workdir=str(tmp / "workdir"), out=str(tmp / "result_{process}.json"))
  logs = wait_all(launch("train", spec, tmp, processes=2, devices=2))
  results = [json.loads((tmp / f"result_{i}.json").read_text()) for i in range(2)]
  return dict(results=results, logs=logs, workdir=tmp / "workdir")


@pytest.fixture(scope="module")
def one_host(cache_dir, two_hosts, tmp_path_factory) -> dict:
  """The one-process reference run on 4 devices, and the restores of the 2 x 2 checkpoint of step 4."""
  tmp = tmp_path_factory.mktemp("one_host")
  reference = dict(cache_dir=str(cache_dir), workdir=str(tmp / "reference"), num_devices=4)
  spec = dict(reference=reference, cache_dir=str(cache_dir), workdir=str(tmp / "restored"),
              source=str(two_hosts["workdir"]), step=4, devices=[1, 4], out=str(tmp / "result.json"))
  wait_all(launch("single", spec, tmp, processes=1, devices=4))
  result = json.loads((tmp / "result.json").read_text())
  return dict(result, workdir=tmp / "reference")


def global_stream(process_batches: list[list[list[int]]]) -> list[tuple[int, int]]:
  """(process, clip id) in the order of the global batches: batch b is process 0's rows, then process 1's, ..."""
  stream = []
  for rows in zip(*process_batches):
    for p, row in enumerate(rows):
      stream.extend((p, clip) for clip in row)
  return stream


def epoch_coverage_problems(process_batches: list[list[list[int]]], expected: list[int]) -> list[str]:
  """What is wrong with how the processes' training batches cover each complete epoch of `expected` clip ids:
  a clip read twice (by one process or by two), a clip missed, or a clip that is not a training record."""
  stream = global_stream(process_batches)
  n, expected_set, problems = len(expected), set(expected), []
  if len(stream) < n:
    return [f"the run read {len(stream)} examples, less than one epoch of {n}"]
  for epoch in range(len(stream) // n):
    readers = {}
    for p, clip in stream[epoch * n:(epoch + 1) * n]:
      readers.setdefault(clip, []).append(p)
    for clip, who in sorted(readers.items()):
      if len(who) > 1:
        problems.append(f"epoch {epoch}: clip {clip} read {len(who)} times, by processes {who}")
      if clip not in expected_set:
        problems.append(f"epoch {epoch}: clip {clip} is not a training record")
    problems += [f"epoch {epoch}: clip {c} never read" for c in sorted(expected_set - set(readers))]
  return problems


def training_clip_ids(cache_dir: pathlib.Path) -> list[int]:
  """The clip ids of the records trained on (training subjects less the validation ones), from the shards."""
  config = worker.tiny_config(cache_dir)
  data = synthetic_prepare.resolve_paths(config.data, cache_dir / "unused_workdir")
  manifest = manifest_lib.read(data.shards_dir)
  _, records, _, _ = input_setup.split_validation(data, manifest)
  source = pipeline.make_source(data, data.train_split)
  return [example_codec.decode(source[int(i)]).clip_id for i in records]


# ---------------------------------------------------------------------------------------------- the checker itself


def test_coverage_check_flags_duplicates_and_misses():
  expected = list(range(8))
  good = [[[0, 1], [4, 5]], [[2, 3], [6, 7]]]  # 2 processes x 2 global batches of 4
  assert epoch_coverage_problems(good, expected) == []
  both_read_the_same = [[[0, 1], [4, 5]], [[0, 1], [6, 7]]]  # process 1 re-reads process 0's first rows
  problems = epoch_coverage_problems(both_read_the_same, expected)
  assert "epoch 0: clip 0 read 2 times, by processes [0, 1]" in problems
  assert "epoch 0: clip 2 never read" in problems
  one_process_twice = [[[0, 0], [4, 5]], [[2, 3], [6, 7]]]
  assert "epoch 0: clip 0 read 2 times, by processes [0, 0]" in epoch_coverage_problems(one_process_twice, expected)


def test_coverage_check_catches_a_process_reading_the_wrong_share(cache_dir):
  """Two real pipelines that both believe they are process 0 of 2: the check must reject their reads."""
  config = worker.tiny_config(cache_dir)
  data = synthetic_prepare.resolve_paths(config.data, cache_dir / "unused_workdir")
  expected = training_clip_ids(cache_dir)
  manifest = manifest_lib.read(data.shards_dir)
  records = input_setup.split_validation(data, manifest)[1]
  steps = -(-len(expected) // config.batch_size)

  def reads(process_index):
    it = iter(pipeline.make_dataset(data, "train", seed=config.seed, process_index=process_index,
                                    process_count=2, records=records))
    return [next(it)["clip_id"].tolist() for _ in range(steps)]

  assert epoch_coverage_problems([reads(0), reads(1)], expected) == []
  wrong = epoch_coverage_problems([reads(0), reads(0)], expected)
  assert any("by processes [0, 1]" in p for p in wrong) and any("never read" in p for p in wrong)


# -------------------------------------------------------------------------------------------- two real processes


@pytest.mark.slow
def test_two_processes_read_every_record_once_per_epoch(two_hosts, one_host, cache_dir):
  r0, r1 = two_hosts["results"]
  assert (r0["process_count"], r0["devices"], r0["local_devices"]) == (2, 4, 2)
  assert (r0["process_index"], r1["process_index"]) == (0, 1)
  batches = [r0["batches"], r1["batches"]]
  assert [len(b) for b in batches] == [worker.TOTAL_STEPS] * 2
  assert all(len(row) == worker.TINY["batch_size"] // 2 for b in batches for row in b)
  expected = training_clip_ids(cache_dir)
  assert len(set(expected)) == len(expected)  # clip ids identify the records
  assert len(global_stream(batches)) >= len(expected)  # the run covers a whole epoch (37 of its 48 examples)
  assert epoch_coverage_problems(batches, expected) == []
  # The global batches are the one-process run's, row for row.
  reference = one_host["reference"]["batches"]
  assert [clip for _, clip in global_stream(batches)] == [clip for row in reference for clip in row]


@pytest.mark.slow
def test_two_processes_match_one_process(two_hosts, one_host):
  two, one = two_hosts["workdir"], one_host["workdir"]
  assert worker.max_diff(worker.params_of(two, 4), worker.params_of(two, worker.TOTAL_STEPS)) > 1e-4  # it trained
  assert worker.max_diff(worker.params_of(two, worker.TOTAL_STEPS), worker.params_of(one, worker.TOTAL_STEPS)) <= 1e-5


@pytest.mark.slow
def test_evaluation_is_the_same_on_every_process_and_equals_one_process(two_hosts, one_host):
  r0, r1 = two_hosts["results"]
  reference = one_host["reference"]["evals"]
  assert [e["split"] for e in r0["evals"]] == ["validation", "validation", "test"]  # step 3, final, test
  assert r0["evals"] == r1["evals"]  # bit-identical on both processes
  for mine, ref in zip(r0["evals"], reference, strict=True):
    assert mine["confusion"] == ref["confusion"] and mine["num_examples"] == ref["num_examples"]
    for key, value in ref.items():
      if isinstance(value, float):
        assert mine[key] == pytest.approx(value, abs=1e-6), key


@pytest.mark.slow
def test_only_process_zero_writes_and_logs(two_hosts):
  r0, r1 = two_hosts["results"]
  assert (r0["writers_enabled"], r0["results_written"]) == ([True], 1)
  assert (r1["writers_enabled"], r1["results_written"]) == ([False], 0)
  lines = [json.loads(l) for l in (two_hosts["workdir"] / "metrics.jsonl").read_text().splitlines()]
  keys = [(l["step"], l["split"]) for l in lines]
  assert len(keys) == len(set(keys)) and [s for s, split in keys if split == "train"] == list(range(1, 7))
  assert json.loads((two_hosts["workdir"] / "eval.json").read_text())["step"] == worker.TOTAL_STEPS
  # One readable log: process 0 logs its progress, process 1 warnings and errors only.
  assert "final eval at step 6" in two_hosts["logs"][0]
  assert "INFO root:" in two_hosts["logs"][0] and "INFO root:" not in two_hosts["logs"][1]
  assert "validation: top1" in two_hosts["logs"][0] and "validation: top1" not in two_hosts["logs"][1]


# ---------------------------------------------------------------------------------------- restore on a new topology


@pytest.mark.slow
@pytest.mark.parametrize("devices", [1, 4])
def test_checkpoint_of_2x2_restores_on_one_process(one_host, devices):
  r = one_host["restore"][str(devices)]
  reference = one_host["reference"]["batches"]
  assert r["step"] == 4 and r["param_devices"] == [devices]
  assert r["restored_diff"] == 0.0  # bit-equal
  # The input position carried over from 2 processes exactly: the next batches are those of steps 5 and 6.
  assert r["next_batch"] == reference[4]
  assert r["batches"] == reference[4:]
  assert r["final_diff_to_source"] <= 1e-5  # training went on as the 2 x 2 run did


def _toy_batches(process_index: int, process_count: int, global_batch: int = 8):
  """The training pipeline's structure (shuffle, repeat, per-element RNG, process share, batch) on integers."""
  ds = grain.MapDataset.range(20).seed(3).shuffle().repeat(None)
  ds = ds.random_map(lambda x, rng: x * 1000 + int(rng.integers(1000)))  # augmentation tied to the position
  local = global_batch // process_count
  ds = pipeline.process_share(ds, process_index, process_count, local).batch(local, drop_remainder=True)
  return iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=1, prefetch_buffer_size=1)))


def _global(iterators, n):
  return [np.concatenate([next(it) for it in iterators]).tolist() for _ in range(n)]


def test_global_batches_do_not_depend_on_the_process_count():
  one = _global([_toy_batches(0, 1)], 6)
  for count in (2, 4):
    assert _global([_toy_batches(p, count) for p in range(count)], 6) == one


@pytest.mark.parametrize("saved,new,new_batch,expected_next,repeated", [
    ((2, 8), (1, 8), 8, 3, 0),   # fewer processes: exact
    ((2, 8), (4, 8), 8, 3, 0),   # more processes: exact
    ((2, 8), (1, 4), 4, 6, 0),   # half the batch: 24 examples read = 6 batches of 4, exact
    ((2, 8), (1, 16), 16, 1, 8),  # double the batch: 24 read, resume at 16 (8 examples read again)
])
def test_input_position_carries_over_to_another_layout(tmp_path, saved, new, new_batch, expected_next, repeated):
  (saved_count, saved_global), (count, _) = saved, new
  olds = [_toy_batches(p, saved_count, saved_global) for p in range(saved_count)]
  for it in olds:
    for _ in range(3):
      next(it)
  for p, it in enumerate(olds):
    (tmp_path / f"process_{p}-of-{saved_count}.json").write_text(json.dumps(it.get_state()))
  assert data_position.resume_batch([3] * saved_count, saved_global, new_batch) == (expected_next, repeated)
  news = [_toy_batches(p, count, new_batch) for p in range(count)]
  for it in news:
    assert data_position.restore(tmp_path, it, process_count=count, global_batch=new_batch,
                                 saved_global_batch=saved_global)
  stream = [x for batch in _global([_toy_batches(0, 1, 1)], 64) for x in batch]  # the example stream
  assert _global(news, 2) == [stream[(expected_next + k) * new_batch:(expected_next + k + 1) * new_batch]
                              for k in range(2)]


def test_input_position_rule_refuses_inconsistent_or_missing_states(tmp_path):
  with pytest.raises(data_position.DataPositionError, match="different batch counts"):
    data_position.resume_batch([3, 4], 8, 8)
  (tmp_path / "process_0-of-2.json").write_text(json.dumps({"next_index": 3}))
  with pytest.raises(data_position.DataPositionError, match=r"process\(es\) \[1\] of 2"):
    data_position.restore(tmp_path, _toy_batches(0, 1), process_count=1, global_batch=8)
  # The same layout is left to Grain's own restore.
  (tmp_path / "process_1-of-2.json").write_text(json.dumps({"next_index": 3}))
  assert not data_position.restore(tmp_path, _toy_batches(0, 2), process_count=2, global_batch=8)


# ------------------------------------------------------------------------------------------------ a lost process


@pytest.mark.slow
def test_a_killed_process_is_reported_by_the_other_within_the_heartbeat_timeout(cache_dir, tmp_path):
  heartbeat = 4
  spec = dict(cache_dir=str(cache_dir), heartbeat_timeout=heartbeat, out=str(tmp_path / "unused_{process}.json"))
  (p0, log0), (p1, _) = launch("kill", spec, tmp_path, processes=2, devices=2)
  try:
    assert p1.wait(timeout=TIMEOUT) == -9  # process 1 killed itself mid-run
    killed = time.monotonic()
    p0.wait(timeout=heartbeat + 120)  # a hang fails here
    waited = time.monotonic() - killed
  finally:
    for p in (p0, p1):
      if p.poll() is None:
        p.kill()
  text = log0.read_text()
  assert "process 0: collectives running" in text
  assert p0.returncode != 0, text[-3000:]
  assert "stopped sending heartbeats" in text and "1" in text.split("stopped sending heartbeats")[1][:20]
  assert waited < heartbeat + 60, waited


def test_cluster_settings_come_from_config_then_environment(monkeypatch):
  monkeypatch.setenv(distributed.ENV_ADDRESS, "10.0.0.1:1234")
  monkeypatch.setenv(distributed.ENV_NUM_PROCESSES, "4")
  monkeypatch.setenv(distributed.ENV_PROCESS_ID, "2")
  cluster = distributed.cluster_config()
  assert distributed.initialize_arguments(cluster) == dict(
      coordinator_address="10.0.0.1:1234", num_processes=4, process_id=2, initialization_timeout=300,
      heartbeat_timeout_seconds=100, shutdown_timeout_seconds=300)
  cluster.process_id, cluster.heartbeat_timeout_seconds = 3, 10
  args = distributed.initialize_arguments(cluster)
  assert args["process_id"] == 3 and args["heartbeat_timeout_seconds"] == 10
  for name in (distributed.ENV_ADDRESS, distributed.ENV_NUM_PROCESSES, distributed.ENV_PROCESS_ID):
    monkeypatch.delenv(name)
  assert "coordinator_address" not in distributed.initialize_arguments(distributed.cluster_config())  # auto-detect
  monkeypatch.setenv(distributed.ENV_NUM_PROCESSES, "two")
  with pytest.raises(ValueError, match="JAX_NUM_PROCESSES='two'"):
    distributed.initialize_arguments(distributed.cluster_config())
  cluster.num_processes = 2
  with pytest.raises(ValueError, match=r"process id 3 is not in \[0, 2\)"):
    distributed.initialize_arguments(cluster)
