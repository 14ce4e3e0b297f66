"""Parameters and forward FLOPs of CLIP-MG per component, from XLA's cost analysis (nothing is run).

Prints the markdown table used in docs/method.md, for one clip (8 RGB frames, 32 pose frames).

  python -m benchmarks.model_flops                          # paper configuration, ViT-B/16
  python -m benchmarks.model_flops --vit tiny --variant pose_only
  python -m benchmarks.model_flops --override heatmap.resolution=64 --override skeleton.depths=1,1,1
"""

import argparse
import ast

from clipmg_jax.models import clipmg
from clipmg_jax.models import flops


def parse_override(text: str) -> tuple[str, object]:
  """'a.b=value' -> ('a.b', value); value is a Python literal (1,2 is a tuple) or else a string."""
  key, _, value = text.partition("=")
  try:
    return key, ast.literal_eval(value)
  except (ValueError, SyntaxError):
    return key, value


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--vit", default="B/16", help="ViT name from clipmg_jax.models.vit.VIT_CONFIGS")
  parser.add_argument("--variant", default="full", choices=clipmg.VARIANTS)
  parser.add_argument("--image_size", type=int, default=224, help="side of the RGB frames in pixels")
  parser.add_argument("--override", action="append", default=[],
                      help="model config override KEY=VALUE (dotted keys allowed); repeatable")
  args = parser.parse_args()
  overrides = dict(parse_override(o) for o in args.override)
  config = clipmg.get_model_config(args.vit, variant=args.variant, **overrides)
  rows = flops.component_table(config, image_size=args.image_size)
  print(flops.format_table(rows))
  by_name = {row["component"]: row["gflops"] for row in rows}
  vit = next((v for k, v in by_name.items() if k.startswith("ViT") and "forward" in k), None)
  cnn = by_name.get("3D-CNN skeleton encoder")
  if vit and cnn:
    print(f"\n3D-CNN / ViT forward FLOPs: {cnn / vit:.1%}")


if __name__ == "__main__":
  main()
