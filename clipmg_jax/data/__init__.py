"""The data side, in the order data flows through it; its output is the batch dictionary the model side consumes.

  raw/        readers of a dataset's own files: iMiGUE classes, split and labels (imigue), OpenPose JSON
              (openpose), MiGA skeleton CSVs (miga), videos (video); every reader names the bad file (read_errors).
  records/    conversion to what training reads: the clip record (example_codec), TFRecord framing with an offset
              index (tfrecord), atomic shard writing (shard_writer), manifest.json (manifest), the raw layouts
              (layouts), one clip's record (clip_record), and the parallel, resumable converter (convert) from raw/
              to shards.
  loader/     the Grain pipeline over the shards: record source (shard_source), validation subjects (validation),
              augmentation (augment), padding rows (batch), and the pipeline itself (pipeline) -> batches.
  synthetic/  a synthetic iMiGUE-like dataset in the raw layout, and its shards made on first use (prepare).
  tfds_imigue/ a TFDS builder producing the same records as records/clip_record.

Shared by the stages: keypoints (COCO-18 layout, the pixel map of a resized box) and sampling (which frames of a
clip are stored at conversion and which are fed to the model). Last: input_setup.py wraps the pipeline into the
trainer's DataSource (data_source.py), after the data checks (frame_size.py; a prefix cache's, loader/token_cache.py);
pose_corruption.py corrupts keypoints on purpose (evaluation's sweep, training's train_corruption).
"""
