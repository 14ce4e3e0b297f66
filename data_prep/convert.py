"""Converts a raw iMiGUE-layout (or MiGA skeleton) dataset into sharded TFRecord files for training.

Examples:
  # The public iMiGUE release as downloaded: <root>/Label/labels_20200831.csv and
  # <root>/Data/skeleton/raw/<video>/<video>_<frame:012d>_keypoints.json, plus the videos you obtained as
  # <root>/videos/<video>.mp4 (without them the records are skeleton-only):
  python data_prep/convert.py --raw_root /data/iMiGUE --out_dir /data/imigue_shards --num_workers 8

  # The synthetic dataset (data_prep/make_synthetic.py; flat layout labels.csv, skeleton/, videos/):
  python data_prep/convert.py --raw_root /data/synthetic --out_dir /data/synthetic_shards

  # The real annotation table with the shared OpenPose sample (no videos: skeleton-only records):
  python data_prep/convert.py --raw_root ../shared/imigue --labels_csv ../shared/imigue/labels_20200831.csv \
      --skeleton_dir ../shared/imigue/skeleton_sample --out_dir /tmp/imigue_skeleton_shards

  # MiGA challenge skeletons: <root>/<split>/<sample>/<sample>_light_hand.csv + <sample>_label.csv
  python data_prep/convert.py --layout miga --raw_root /data/miga --out_dir /data/miga_shards

  # On Apache Beam (pip install -e ".[beam]"): the same shards and manifest, one work item per video; the words of
  # --beam_options are Beam's pipeline options (docs/data.md "Converting at scale": Dataflow, Flink, Spark):
  python data_prep/convert.py --raw_root /data/iMiGUE --out_dir /data/imigue_shards --runner beam \
      --beam_options "--runner=DirectRunner --direct_num_workers=8 --direct_running_mode=multi_processing"

The layout found under --raw_root (release or flat) is logged and recorded in the manifest; --labels_csv and
--skeleton_dir override its parts. Writes <out_dir>/<split>-XXXXX-of-YYYYY.tfrecord (+ .index) and
<out_dir>/manifest.json (counts per split and class, shards with each record's subject and label, the subject split,
every skipped clip with its reason). Interrupted, or stopped by a full disk (one message naming --out_dir)? Run the
same command again: finished shards are kept. Raw files that cannot be read stop it before any shard is written,
with one message naming the file (RawDataError); a clip whose own files are bad is skipped and listed instead.
Record schema and sampling rules: docs/data.md.
"""

import argparse
import json
import logging
import os
import shlex

from clipmg_jax.data.records import clip_record
from clipmg_jax.data.records import convert
from clipmg_jax.data.records import layouts


def parse_args(argv=None) -> argparse.Namespace:
  defaults = clip_record.ConvertOptions()
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--raw_root", required=True, help="dataset root (imigue: the release layout Label/"
                      "labels_20200831.csv + Data/skeleton/raw/, or the flat one labels.csv + skeleton/; videos/, "
                      "optional split.json and classes.json; miga: <split>/<sample>/ folders)")
  parser.add_argument("--out_dir", required=True, help="output folder for shards and manifest.json")
  parser.add_argument("--layout", choices=tuple(layouts.LAYOUTS), default="imigue", help="raw layout (default imigue)")
  parser.add_argument("--labels_csv", default=None, help="labels table (default: the layout's, "
                      "<raw_root>/Label/labels_20200831.csv or <raw_root>/labels.csv)")
  parser.add_argument("--skeleton_dir", default=None, help="OpenPose JSON root holding <video>/ folders (default: the "
                      "layout's, <raw_root>/Data/skeleton/raw or <raw_root>/skeleton)")
  parser.add_argument("--videos_dir", default=None, help="videos folder (default <raw_root>/videos); "
                      "if it does not exist the conversion is skeleton-only")
  parser.add_argument("--skeleton_only", action="store_true", help="store keypoints only, no JPEG frames")
  parser.add_argument("--max_stored_frames", type=int, default=defaults.max_stored_frames,
                      help=f"JPEG frames stored per clip, uniformly pre-sampled (default {defaults.max_stored_frames})")
  parser.add_argument("--short_side", type=int, default=defaults.short_side,
                      help=f"short side of stored frames in pixels, never enlarged (default {defaults.short_side})")
  parser.add_argument("--jpeg_quality", type=int, default=defaults.jpeg_quality, help="JPEG quality (default 90)")
  parser.add_argument("--skeleton_frame_size", default="x".join(map(str, defaults.skeleton_frame_size)),
                      help="HEIGHTxWIDTH of the source video frames for skeleton-only records, pixels "
                           "(default 720x1280, iMiGUE's)")
  parser.add_argument("--clips_per_shard", type=int, default=defaults.clips_per_shard,
                      help=f"clips per shard (default {defaults.clips_per_shard})")
  parser.add_argument("--num_workers", type=int, default=min(4, os.cpu_count() or 1),
                      help="parallel conversion processes, 0 = in this process (default: CPUs, at most 4); "
                           "--runner local only")
  parser.add_argument("--runner", choices=("local", "beam"), default="local",
                      help="local: shards in --num_workers processes (default); beam: an Apache Beam pipeline, one "
                           "work item per video, on the runner --beam_options names (needs the beam extra)")
  parser.add_argument("--beam_options", default="--runner=DirectRunner",
                      help="Beam pipeline options, one string (default --runner=DirectRunner); --runner beam only")
  return parser.parse_args(argv)


def main(argv=None):
  args = parse_args(argv)
  # Imported here, not at the top: the conversion's spawned workers import this file again, and the commands'
  # failure mapping imports JAX and the training modules, which they do not need.
  from clipmg_jax import cli_errors  # pylint: disable=import-outside-toplevel
  # A full disk or raw files that cannot be read: one message (naming --out_dir or the file), exit status 1.
  with cli_errors.known_failures(args.out_dir, folder_flag="out_dir", rerun="finished shards are kept"):
    _convert(args)


def _convert(args: argparse.Namespace) -> None:
  # force: importing the libraries above may have configured the root logger already.
  logging.basicConfig(level=logging.INFO, format="%(message)s", force=True)  # the layout found, skipped clips
  try:
    height, width = (int(v) for v in args.skeleton_frame_size.lower().split("x"))
  except ValueError:
    raise SystemExit(f"--skeleton_frame_size: expected HEIGHTxWIDTH such as 720x1280, got {args.skeleton_frame_size!r}")
  options = clip_record.ConvertOptions(max_stored_frames=args.max_stored_frames, short_side=args.short_side,
                                       jpeg_quality=args.jpeg_quality, skeleton_only=args.skeleton_only,
                                       skeleton_frame_size=(height, width), clips_per_shard=args.clips_per_shard)
  paths = dict(layout=args.layout, labels_csv=args.labels_csv, skeleton_dir=args.skeleton_dir,
               videos_dir=args.videos_dir, options=options)
  if args.runner == "beam":
    try:
      from clipmg_jax.data.records import beam_convert  # pylint: disable=import-outside-toplevel
    except ImportError as e:
      raise SystemExit(f"--runner beam needs Apache Beam ({e}): pip install -e '.[beam]'") from None
    manifest = beam_convert.convert_beam(args.raw_root, args.out_dir, pipeline_args=shlex.split(args.beam_options),
                                         **paths)
  else:
    manifest = convert.convert(args.raw_root, args.out_dir, num_workers=args.num_workers, **paths)
  counts = {split: entry["num_clips"] for split, entry in manifest["splits"].items()}
  layout = manifest["source"].get("raw_layout", manifest["source"]["layout"])
  print(f"wrote {args.out_dir} (raw layout: {layout}): clips per split {counts}; skipped {manifest['num_skipped']} "
        f"{json.dumps(manifest['skipped_by_kind'])}")


if __name__ == "__main__":
  main()
