"""Stage 3, loading: shards -> batches, with Grain. shard_source reads records by index; validation chooses the
training subjects held out for validation; pipeline decodes, samples frames (data/sampling.py), augments
(augment: crop, flip, applied to frames and keypoints together), pads evaluation splits (batch) and batches per
process. Next: clipmg_jax/data/input_setup.py makes the trainer's DataSource from these datasets."""
