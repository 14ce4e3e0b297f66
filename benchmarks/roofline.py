"""The roofline of one compiled program: how fast a chip could run it at best, from the compiler's own counts.

A step cannot take less than its FLOPs at the chip's peak FLOP/s, nor less than its bytes of memory traffic at the
chip's peak bandwidth (Williams, Waterman & Patterson, "Roofline", CACM 2009). Both counts come from XLA's cost
analysis of the compiled program (clipmg_jax.training.aot.cost_of: "flops" and "bytes accessed", after fusion), so
the bound is the compiled program's, not the model's: FLOPs the compiler adds (recomputation, padding) are in it.
The larger of the two times binds. Communication between chips is not in the bound.

Everything here is arithmetic on given numbers: benchmarks/tpu_roofline.py applies it to the TPU compiles, and
benchmarks/train_step.py --roofline checks it against a measured step on the CPU.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Bound:
  """The roofline of one step on one chip: seconds at the compute peak and at the memory peak, the larger binds."""
  compute_seconds: float
  memory_seconds: float

  @property
  def seconds(self) -> float:
    return max(self.compute_seconds, self.memory_seconds)

  @property
  def binds(self) -> str:
    return "compute" if self.compute_seconds >= self.memory_seconds else "memory"

  @property
  def intensity_ratio(self) -> float:
    """How far from the ridge: compute time over memory time (> 1: compute-bound)."""
    return self.compute_seconds / self.memory_seconds


def bound(flops: float, bytes_accessed: float, peak_flops: float, peak_bytes_per_second: float) -> Bound:
  """The roofline of a program doing `flops` and moving `bytes_accessed` on a chip with these peaks."""
  if min(flops, bytes_accessed) < 0 or min(peak_flops, peak_bytes_per_second) <= 0:
    raise ValueError(f"roofline needs counts >= 0 and peaks > 0, got flops={flops}, bytes={bytes_accessed}, "
                     f"peaks {peak_flops} FLOP/s and {peak_bytes_per_second} B/s")
  return Bound(flops / peak_flops, bytes_accessed / peak_bytes_per_second)


def linear(at_small: float, at_large: float, small: int, large: int) -> tuple[float, float]:
  """(fixed, per clip) of a count measured at two batches, assuming it is linear in the batch."""
  per_clip = (at_large - at_small) / (large - small)
  return at_small - per_clip * small, per_clip


def implied_mfu(model_flops_per_clip: float, clips: float, seconds: float, peak_flops: float) -> float:
  """The model-FLOPs utilisation a step of `clips` taking `seconds` would reach (model FLOPs as the model defines
  them, clipmg_jax.models.flops, not the compiled program's)."""
  return model_flops_per_clip * clips / seconds / peak_flops


def run_cost(clips: float, clips_per_second_per_chip: float, chips: int, price_per_chip_hour: float) -> dict:
  """Wall hours on `chips` chips, chip-hours and cost of training on `clips` clips at a per-chip rate."""
  chip_hours = clips / clips_per_second_per_chip / 3600
  return dict(chip_hours=chip_hours, hours=chip_hours / chips, cost=chip_hours * price_per_chip_hour)
