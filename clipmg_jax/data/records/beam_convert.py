"""The conversion as an Apache Beam pipeline (the `beam` extra): the same shards, offset indexes and manifest.json as
convert.convert, from the same plan and the same record making, with the work spread by a Beam runner (the
DirectRunner on one machine; Dataflow, Flink or Spark across many).

Only the distribution differs from convert.py; everything else is its code:
  launcher     convert.prepare (the layout's plan, the shards), convert.reusable (finished shards are kept)
  pipeline     one work item per video of the shards to convert (its clips of every shard), so that its stored frames
               are decoded in one pass (clip_record.FramesByVideo) -> each clip's record or skip (convert.convert_clip)
               keyed by its shard -> grouped by shard, put back in the shard's clip order and written with its
               completion record (convert.finish_shard)
  launcher     the shards' completion records (convert.load_done) -> manifest.json (Conversion.finish)
so the records, their order and sharding, the skips with their reasons and the manifest are those of convert.convert.
The raw files and out_dir are paths every worker and the launcher can open (a shared file system).
"""

import dataclasses
import os
from typing import Iterator, Sequence

import apache_beam as beam
from apache_beam.options import pipeline_options as beam_options

from clipmg_jax.data.records import clip_record
from clipmg_jax.data.records import convert
from clipmg_jax.data.records import layouts


@dataclasses.dataclass(frozen=True)
class VideoItem:
  """One work item: the clips to convert of one video (of one MiGA sample), each with its shard and position."""
  key: str
  clips: tuple[tuple[str, int, layouts.ClipTask], ...]  # (shard name, position in the shard, clip)


def video_items(shards: Sequence[convert.ShardTask]) -> list[VideoItem]:
  """The clips of `shards` grouped by the video (or skeleton sample) they are read from, in shard order."""
  by_video: dict[str, list] = {}
  for shard in shards:
    for position, clip in enumerate(shard.clips):
      key = "\0".join((clip.layout, clip.skeleton, clip.video_id, clip.video))
      by_video.setdefault(key, []).append((shard.name, position, clip))
  return [VideoItem(key, tuple(clips)) for key, clips in by_video.items()]


def convert_video(item: VideoItem, options: clip_record.ConvertOptions) -> Iterator[tuple[str, tuple]]:
  """(shard name, (position, stat lines of the clip's raw files taken before reading them, ClipResult)) of each
  clip of the item, its frames decoded together."""
  frames = clip_record.FramesByVideo([clip for _, _, clip in item.clips], options)
  cache = {}
  for shard_name, position, clip in item.clips:
    lines = convert.stat_lines(layouts.get(clip.layout).raw_files(clip))
    yield shard_name, (position, lines, convert.convert_clip(clip, options, cache, frames))


def shard_results(values) -> tuple[list[convert.ClipResult], str]:
  """A shard's grouped values (and its None marker) -> (its clips' results in shard order, inputs digest)."""
  ordered = sorted((value for value in values if value is not None), key=lambda value: value[0])
  lines = [line for _, clip_lines, _ in ordered for line in clip_lines]
  return [result for _, _, result in ordered], convert.inputs_digest(lines)


def write_shard(element, tasks: dict[str, convert.ShardTask]) -> dict:
  """Writes one shard from its grouped (shard name, values) (convert.finish_shard checks that every clip is there, in order)."""
  name, values = element
  results, inputs = shard_results(values)
  return convert.finish_shard(tasks[name], results, inputs)


def build_pipeline(pipeline: beam.Pipeline, todo: Sequence[convert.ShardTask],
                   options: clip_record.ConvertOptions) -> None:
  """Adds the conversion of the shards `todo` to `pipeline`."""
  tasks = {shard.name: shard for shard in todo}
  results = (pipeline
             | "videos" >> beam.Create(video_items(todo))
             | "spread" >> beam.Reshuffle()
             | "convert clips" >> beam.FlatMap(convert_video, options))
  # One marker per shard, so that a shard whose clips are all skipped (or an empty split's shard) is written too.
  markers = pipeline | "shards" >> beam.Create([(name, None) for name in tasks])
  _ = ((results, markers)
       | "with markers" >> beam.Flatten()
       | "by shard" >> beam.GroupByKey()
       | "write shards" >> beam.Map(write_shard, tasks))


def convert_beam(raw_root: str | os.PathLike | None, out_dir: str | os.PathLike, *, layout: str = "imigue",
                 labels_csv=None, skeleton_dir=None, videos_dir=None,
                 options: clip_record.ConvertOptions = clip_record.ConvertOptions(),
                 pipeline_args: Sequence[str] = ("--runner=DirectRunner",)) -> dict:
  """convert.convert on a Beam runner: `pipeline_args` are Beam's pipeline options (--runner=..., the runner's
  own). Runs the pipeline to its end and returns the manifest; resumes as convert.convert does."""
  conversion = convert.prepare(raw_root, out_dir, layout=layout, labels_csv=labels_csv, skeleton_dir=skeleton_dir,
                               videos_dir=videos_dir, options=options)
  summaries, todo, _ = convert.reusable(conversion.shards)
  if todo:
    with beam.Pipeline(options=beam_options.PipelineOptions(list(pipeline_args))) as pipeline:
      build_pipeline(pipeline, todo, conversion.options)
  for shard in todo:
    done = convert.load_done(shard)
    if done is None:
      raise RuntimeError(f"the pipeline finished without a complete shard {shard.name} in {out_dir} (or its raw "
                         "files changed meanwhile): run the same command again to redo it")
    summaries[shard.name] = done
  return conversion.finish(summaries)
