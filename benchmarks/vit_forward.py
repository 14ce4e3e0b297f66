r"""ViT-B/16 forward on 8 frames of 224x224: jitted JAX vs transformers PyTorch eager, same CPU, same run.

Prints the median (and fastest) wall time of each, their ratio (JAX / PyTorch),
the process CPU seconds per forward (less sensitive to other jobs on a shared
machine; PyTorch's OpenMP threads also count their spin-waiting), and the
achieved FLOP/s of each as a fraction of a large fp32 matmul measured in the
same run (by the same framework, and by the faster of the two).

Both frameworks use the same number of threads (--threads, default: every
core this process may run on). Both models hold the same random weights
(ported through clipmg_jax.weights), so the outputs are compared too.

  python -m benchmarks.vit_forward              # B/16, 8 frames
  python -m benchmarks.vit_forward --vit=tiny   # quick check of the script
"""

import argparse
import os
import statistics
import sys
import tempfile
import time


def parse_args(argv):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--vit", default="B/16", help="name in clipmg_jax.models.vit.VIT_CONFIGS (default B/16)")
  parser.add_argument("--frames", type=int, default=8, help="images per forward pass (default 8)")
  parser.add_argument("--repeats", type=int, default=5, help="timed forward passes per framework (default 5)")
  parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                      help="threads for both frameworks (default: usable cores)")
  parser.add_argument("--torch_attention", default="sdpa", choices=["sdpa", "eager"],
                      help="transformers attention implementation (default sdpa, its default and the faster one)")
  parser.add_argument("--matmul_sizes", default="1024,2048,4096",
                      help="sides of the square fp32 reference matmuls; each framework's fastest rate is its peak")
  return parser.parse_args(argv)


def timed(fn):
  """(wall seconds, process CPU seconds) of one call."""
  wall, cpu = time.perf_counter(), time.process_time()
  fn()
  return time.perf_counter() - wall, time.process_time() - cpu


def best_seconds(fn, repeats, warmup=2):
  """Fastest wall time of fn() over `repeats` calls after `warmup` untimed calls (peak rate of a kernel)."""
  for _ in range(warmup):
    fn()
  return min(timed(fn)[0] for _ in range(repeats))


def main(argv):
  args = parse_args(argv)
  # XLA:CPU sizes its thread pool from the CPU affinity mask when it starts, so restrict the mask (before jax
  # is imported) and give PyTorch the same number of threads.
  cores = sorted(os.sched_getaffinity(0))
  if args.threads < len(cores):
    os.sched_setaffinity(0, cores[:args.threads])
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top

  from clipmg_jax.models import vit  # pylint: disable=g-import-not-at-top
  from clipmg_jax.weights import load_clip_vision  # pylint: disable=g-import-not-at-top

  torch.set_num_threads(args.threads)
  cfg = vit.VIT_CONFIGS[args.vit]
  hf_config = transformers.CLIPVisionConfig(
      hidden_size=cfg["width"], num_hidden_layers=cfg["layers"], num_attention_heads=cfg["heads"],
      intermediate_size=cfg["mlp_dim"], patch_size=cfg["patch_size"], image_size=cfg["image_size"],
      attn_implementation=args.torch_attention)
  torch.manual_seed(0)
  torch_model = transformers.CLIPVisionModel(hf_config).eval()
  with tempfile.TemporaryDirectory() as tmp:
    torch_model.save_pretrained(tmp)
    model, params = load_clip_vision(tmp)

  size = cfg["image_size"]
  images = np.random.RandomState(0).randn(args.frames, size, size, 3).astype(np.float32)
  images_torch = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
  images_jax = jnp.asarray(images)

  forward = jax.jit(lambda p, x: model.apply({"params": p}, x)["last_hidden_state"])

  def run_jax():
    return forward(params, images_jax).block_until_ready()

  def run_torch():
    with torch.inference_mode():
      return torch_model(pixel_values=images_torch).last_hidden_state

  diff = float(np.abs(np.asarray(run_jax()) - run_torch().numpy()).max())
  # Alternate the two so that both see the same background load on a shared machine.
  runs = {"jax": [], "torch": []}
  for _ in range(args.repeats):
    runs["torch"].append(timed(run_torch))
    runs["jax"].append(timed(run_jax))
  t_jax, t_torch = (statistics.median(w for w, _ in runs[k]) for k in ("jax", "torch"))
  min_jax, min_torch = (min(w for w, _ in runs[k]) for k in ("jax", "torch"))
  cpu_jax, cpu_torch = (statistics.median(c for _, c in runs[k]) for k in ("jax", "torch"))

  # Reference peak: the best rate over a few square fp32 matmuls (no single size is fastest for both libraries).
  peak_jax = peak_torch = 0.0
  matmul_rates = []
  matmul_jax = jax.jit(lambda x: x @ x)
  for n in (int(v) for v in args.matmul_sizes.split(",")):
    a = np.random.RandomState(1).randn(n, n).astype(np.float32)
    a_torch, a_jax = torch.from_numpy(a), jnp.asarray(a)
    rate_jax = 2.0 * n**3 / best_seconds(lambda: matmul_jax(a_jax).block_until_ready(), 3)
    rate_torch = 2.0 * n**3 / best_seconds(lambda: torch.mm(a_torch, a_torch), 3)
    matmul_rates.append(f"{n}: JAX {rate_jax / 1e9:.0f}, PyTorch {rate_torch / 1e9:.0f}")
    peak_jax, peak_torch = max(peak_jax, rate_jax), max(peak_torch, rate_torch)
  peak = max(peak_jax, peak_torch)

  model_flops = vit.forward_flops(cfg, args.frames)
  print(f"machine: {os.uname().machine}, {args.threads} threads, jax {jax.__version__} "
        f"(XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}), torch {torch.__version__}, "
        f"transformers {transformers.__version__} (attn {torch_model.config._attn_implementation})")
  print(f"ViT-{args.vit} forward, {args.frames} x {size}x{size}: {model_flops / 1e9:.1f} GFLOP; "
        f"max |JAX - PyTorch| on last_hidden_state = {diff:.2e}")
  print(f"fp32 square matmul GFLOP/s ({'; '.join(matmul_rates)}) -> peak JAX {peak_jax / 1e9:.1f}, "
        f"PyTorch {peak_torch / 1e9:.1f}")
  for name, t, fastest, cpu, own in [("JAX (jit)", t_jax, min_jax, cpu_jax, peak_jax),
                                     ("PyTorch eager", t_torch, min_torch, cpu_torch, peak_torch)]:
    rate = model_flops / t
    print(f"{name:14s} median {t * 1e3:7.1f} ms (min {fastest * 1e3:7.1f}, CPU {cpu:5.2f} s)  "
          f"{rate / 1e9:6.1f} GFLOP/s = {rate / own:.2f} of its own matmul, {rate / peak:.2f} of the best matmul")
  print(f"ratio JAX / PyTorch time: {t_jax / t_torch:.3f} (median), {min_jax / min_torch:.3f} (min)")


if __name__ == "__main__":
  main(sys.argv[1:])
