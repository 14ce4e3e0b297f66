r"""Converts a pretrained CLIP vision checkpoint once into a Flax params tree, so training needs no torch.

Reads a Hugging Face directory (config.json + model.safetensors or
pytorch_model.bin), a weights file alone, or an OpenAI / open_clip state dict
(torch.save or TorchScript archive); validates every key and shape; writes
OUT/params.msgpack and OUT/vit_config.json, which
`clipmg_jax.weights.load_clip_vision(OUT)` reads back.

  python data_prep/port_clip.py --checkpoint=/path/to/clip-vit-base-patch16 --out=/path/to/vit_b16_flax
  python data_prep/port_clip.py --checkpoint=ViT-B-16.pt --out=/path/to/vit_b16_flax
"""

import argparse
import sys

from clipmg_jax.weights import port_clip


def main(argv):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--checkpoint", required=True,
                      help="Hugging Face directory or weights file, or OpenAI/open_clip .pt/.bin (torch.save or "
                      "TorchScript)")
  parser.add_argument("--out", required=True, help="output directory for params.msgpack and vit_config.json")
  args = parser.parse_args(argv)
  result = port_clip(args.checkpoint, args.out)
  n_params = sum(v.size for v in _leaves(result.params))
  print(f"ported {args.checkpoint} ({result.layout} layout) -> {args.out}")
  print(f"ViT {result.config}: {n_params / 1e6:.2f}M parameters")
  if result.ignored:
    shown = ", ".join(k for k, _ in result.ignored[:5])
    print(f"ignored {len(result.ignored)} tensors outside the vision tower: {shown}"
          f"{' ...' if len(result.ignored) > 5 else ''}")


def _leaves(tree):
  if isinstance(tree, dict):
    for value in tree.values():
      yield from _leaves(value)
  else:
    yield tree


if __name__ == "__main__":
  main(sys.argv[1:])
