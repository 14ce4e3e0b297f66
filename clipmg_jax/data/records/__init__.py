"""Stage 2, conversion: raw clips -> TFRecord shards of clip records (example_codec) with offset indexes
(tfrecord), written atomically (shard_writer), listed with their per-record subjects and labels and every skipped
clip in manifest.json (manifest). layouts.py plans a raw dataset's clips (one entry per raw layout), clip_record.py
makes one clip's record, convert.py writes the records in shards, resumably (data_prep/convert.py is its command
line); random_shards.py writes small random shards in the same layout for tests and benchmarks. Next: loader/ reads
the shards."""
