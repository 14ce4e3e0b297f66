r"""Writes a synthetic iMiGUE-like dataset in the real iMiGUE raw layout.

  <out>/labels.csv, <out>/skeleton/<video>/<video>_<frame:012d>_keypoints.json, <out>/videos/<video>.mp4,
  <out>/split.json, <out>/classes.json

Seated people at a press-conference desk perform the 32 iMiGUE classes inside longer videos. The output is a
deterministic function of --seed and the size flags (not of --workers).

Examples:
  python data_prep/make_synthetic.py --out /tmp/synthetic                  # "small": well under a minute
  python data_prep/make_synthetic.py --out /tmp/synthetic --preset demo    # end-to-end demo: ~1-2 minutes
  python data_prep/make_synthetic.py --out /tmp/s --num_clips 600 --width 256 --height 192
"""

import argparse
import dataclasses
import json

from clipmg_jax.data import synthetic


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--out", required=True,
                      help="dataset root to write (created if needed; use an empty folder: same-named files are replaced)")
  parser.add_argument("--preset", default="small", choices=sorted(synthetic.PRESETS),
                      help="size preset: tiny (tests, seconds), small (default), demo (end-to-end training demo)")
  parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed writes the same dataset")
  parser.add_argument("--workers", type=int, default=None, help="parallel processes (default: CPU count, max 4)")
  int_knobs = {"num_subjects": "people (split 37:35 train:test like iMiGUE)",
               "videos_per_subject": "videos per person", "num_clips": "labelled clips in all (approximately)",
               "width": "frame width in pixels (even)", "height": "frame height in pixels (even)",
               "fps": "frames per second", "min_clips_per_class": "floor on the clips of every class"}
  for name, text in int_knobs.items():
    parser.add_argument(f"--{name}", type=int, default=None, help=f"{text}; default from the preset")
  parser.add_argument("--tail_power", type=float, default=None,
                      help="class counts ~ iMiGUE counts ** tail_power (1: as long-tailed as iMiGUE, 0: balanced)")
  parser.add_argument("--cue_scale", type=float, default=None,
                      help="size of the RGB-only cues (cheeks, pressed lips, interlaced fingers, pen); default 2")
  args = parser.parse_args(argv)
  fields = {f.name for f in dataclasses.fields(synthetic.SizeConfig)}
  overrides = {k: v for k, v in vars(args).items() if k in fields and v is not None}
  summary = synthetic.generate(args.out, preset=args.preset, seed=args.seed, workers=args.workers, **overrides)
  print(json.dumps(summary, indent=1))


if __name__ == "__main__":
  main()
