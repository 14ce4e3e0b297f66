"""The roofline arithmetic (benchmarks/roofline.py) and the TPU table built on it (benchmarks/tpu_roofline.py), on
compile rows made up here: the bound, which side binds, the linear fit, the single-host twin and the costs."""

import json

import pytest

from benchmarks import roofline
from benchmarks import tpu_roofline


def test_the_slower_side_binds():
  compute_bound = roofline.bound(flops=2e12, bytes_accessed=1e9, peak_flops=1e12, peak_bytes_per_second=1e12)
  assert (compute_bound.seconds, compute_bound.binds) == (2.0, "compute")
  memory_bound = roofline.bound(flops=1e9, bytes_accessed=3e9, peak_flops=1e12, peak_bytes_per_second=1e9)
  assert (memory_bound.seconds, memory_bound.binds) == (3.0, "memory")
  assert memory_bound.intensity_ratio == pytest.approx(1e-3 / 3)
  with pytest.raises(ValueError, match="peaks > 0"):
    roofline.bound(1.0, 1.0, 0.0, 1.0)


def test_linear_fit_and_costs():
  assert roofline.linear(10.0, 16.0, 2, 4) == (4.0, 3.0)
  cost = roofline.run_cost(clips=7200, clips_per_second_per_chip=1.0, chips=4, price_per_chip_hour=2.5)
  assert cost == dict(chip_hours=2.0, hours=0.5, cost=5.0)
  # A step at the compute bound whose compiled FLOPs are the model's reaches MFU 1.
  b = roofline.bound(8e12, 1.0, 1e12, 1e12)
  assert roofline.implied_mfu(1e12, 8, b.seconds, 1e12) == pytest.approx(1.0)


def _row(kind, devices, processes, per_chip, tflops, gbytes):
  return dict(devices=devices, processes=processes, devices_per_chip=per_chip, device_kind=kind, global_batch=0,
              tflops_per_device=tflops, compile_seconds=1.0, memory={},
              cost={"flops": tflops * 1e12, "bytes accessed": gbytes * 1e9})


def test_table_uses_the_fit_and_the_single_host_twin(tmp_path, monkeypatch):
  # Per device: FLOPs 0.5 TF per clip and nothing fixed; bytes 1 GB fixed + 2 GB per clip.
  compiles = {
      "v5e:2x2|full|train|2|0": _row("TPU v5 lite", 4, 1, 1, 1.0, 5.0),
      "v5e:2x2|full|train|4|0": _row("TPU v5 lite", 4, 1, 1, 2.0, 9.0),
      "v5e:4x4|full|train|2|0": _row("TPU v5 lite", 16, 4, 1, 1.0, 8.0),  # 3 GB more fixed (collectives, say)
  }
  summary = [dict(topology=t, variant="full", device_kind="TPU v5 lite", chips=chips, hosts=hosts, clips_per_chip=2,
                  largest_clips_per_chip=40) for t, chips, hosts in
             (("v5e:2x2", 4, 1), ("v5e:4x4", 16, 4), ("v5e:8x8", 64, 16))]  # the last one not compiled
  (tmp_path / "c.json").write_text(json.dumps(dict(compiles=compiles)))
  (tmp_path / "m.json").write_text(json.dumps(dict(summary=summary)))
  monkeypatch.setattr(tpu_roofline, "model_flops_per_clip", lambda config, variant: 0.25e12)
  args = tpu_roofline.parse_args(["--compiles", str(tmp_path / "c.json"), "--memory_table", str(tmp_path / "m.json"),
                                  "--assumed_mfu", "0.5"])
  rows = {r["topology"]: r for r in tpu_roofline.analyse(args)}
  single, multi, borrowed = rows["v5e:2x2"], rows["v5e:4x4"], rows["v5e:8x8"]
  # At 40 clips: 20 TFLOP at 197 TFLOP/s = 101.5 ms; 81 GB at 819 GB/s = 98.9 ms: compute binds, barely.
  assert single["largest"]["tflop_per_chip"] == pytest.approx(20.0)
  assert single["largest"]["gb_accessed_per_chip"] == pytest.approx(81.0)
  assert single["largest"]["binds"] == "compute"
  assert single["largest"]["bound_ms"] == pytest.approx(20e12 / 197e12 * 1e3)
  assert single["largest"]["mfu_at_bound"] == pytest.approx(0.5)  # the model counts half the compiled FLOPs
  assert single["compiled"]["gb_accessed_per_chip"] == pytest.approx(5.0)
  # The pod slice: its own bytes at 2 clips, the twin's slope: 84 GB at 40 clips (102.6 ms), so memory binds there.
  assert multi["counts_from"] == "own batch, twin's slope"
  assert multi["largest"]["gb_accessed_per_chip"] == pytest.approx(84.0)
  assert multi["largest"]["binds"] == "memory"
  # A slice with no compile of its own is the single-host program's, and has no compiled-batch row.
  assert borrowed["counts_from"] == "single-host twin's program" and "compiled" not in borrowed
  assert borrowed["largest"]["bound_ms"] == single["largest"]["bound_ms"]
  # Cost: at MFU 0.5 a chip does 0.5 x 197e12 / 0.25e12 = 394 clips/s; the memory-bound pod slice's bound allows
  # only 10 TFLOP per 102.6 ms of 197 TFLOP/s (MFU 0.495), and the assumption is capped there.
  assert single["cost"]["at_assumed_mfu"]["mfu"] == pytest.approx(0.5)
  assert multi["cost"]["at_assumed_mfu"]["mfu"] == pytest.approx(multi["largest"]["mfu_at_bound"])
  assert multi["largest"]["mfu_at_bound"] < 0.5
  run = single["cost"]["at_assumed_mfu"]["run"]
  clips = tpu_roofline.TRAIN_CLIPS * tpu_roofline.EPOCHS
  assert run["chip_hours"] == pytest.approx(clips / 394 / 3600)
  assert run["hours"] == pytest.approx(run["chip_hours"] / 4)
  assert run["cost"] == pytest.approx(run["chip_hours"] * 1.20)
  capped = multi["cost"]["at_assumed_mfu"]["run"]
  assert capped["chip_hours"] == pytest.approx(multi["cost"]["at_bound"]["run"]["chip_hours"])
  at_bound = single["cost"]["at_bound"]["epoch"]
  assert at_bound["chip_hours"] == pytest.approx(tpu_roofline.TRAIN_CLIPS / single["largest"]["clips_per_second_per_chip"]
                                                 / 3600)
  assert "on paper, not run" in tpu_roofline.markdown(list(rows.values()), args).lower()
