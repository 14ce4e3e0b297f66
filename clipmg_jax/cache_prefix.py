r"""Computes a run's frozen ViT prefix once: the prefix cache that training and evaluation can read instead of frames.

  python -m clipmg_jax.cache_prefix --config configs/synthetic_pretrained.py --workdir runs/sp --out caches/sp_k4 \
      --views 4
  python -m clipmg_jax.train --config configs/synthetic_pretrained.py --workdir runs/sp_cached \
      --config.data.prefix_cache=caches/sp_k4

For every clip of the training split (validation subjects included) K = --views views' tokens — view 0 the
evaluation transform, views 1..K-1 random crops and flips drawn with --seed — and for the evaluation split the
evaluation view: the input of the first trainable ViT block (class token included when blocks follow), bfloat16 by
default, in TFRecord shards with a manifest.json recording the tower's parameter digest, the depth, the views, their
seed and the source shards' identity. A run whose tower, depth, data or view settings differ is refused. Use the
training config (and overrides) of the runs that will read it; --workdir is only needed where the config's dataset
is made by the trainer (the synthetic configs): the run folder whose synthetic_data/ holds it (made when absent).
When to use it and what it costs: docs/training.md "Prefix cache".
"""

from absl import flags

from clipmg_jax import command
from clipmg_jax.run import output_paths
from clipmg_jax.training import prefix_cache

_CONFIG = command.config_flag("The training config file of the runs that will read the cache; `file.py:arg` and "
                              "--config.<field> overrides as for training.")
_OUT = flags.DEFINE_string("out", None, "The cache's folder (created; config.data.prefix_cache of the runs).")
flags.mark_flag_as_required("out")
_WORKDIR = flags.DEFINE_string("workdir", None, "Synthetic configs: the run folder whose synthetic_data/ holds the "
                               "dataset (default: the cache's folder). Unused when config.data.shards_dir is set.")
_VIEWS = flags.DEFINE_integer("views", 1, "Views per training clip: view 0 is the evaluation view, the others "
                              "training augmentations.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the augmented views (recorded in the manifest).")
_DTYPE = flags.DEFINE_enum("dtype", "bfloat16", ["bfloat16", "float32"], "Stored token dtype.")
_BATCH = flags.DEFINE_integer("batch_size", 8, "Views per forward pass of the prefix.")
_PER_SHARD = flags.DEFINE_integer("records_per_shard", 256, "Views per shard.")
_MAX_CLIPS = flags.DEFINE_integer("max_clips", None, "Only the first clips of each split (to time the build; such "
                                  "a cache is refused for training).")


def main(config, session):
  del session  # reads the config's dataset; writes only the cache's own folder (--out)
  output_paths.check_folder(_OUT.value, flag="out", inputs={"workdir": _WORKDIR.value,
                                                            "config.data.shards_dir": config.data.get("shards_dir")})
  document = prefix_cache.build(config, _OUT.value, workdir=_WORKDIR.value, views=_VIEWS.value, seed=_SEED.value,
                                dtype=_DTYPE.value, batch_size=_BATCH.value, records_per_shard=_PER_SHARD.value,
                                max_clips=_MAX_CLIPS.value)
  build = document["build"]
  print(f"{_OUT.value}: {build['views']} views in {build['seconds']:.1f} s ({build['seconds_per_view']:.3f} s per "
        f"view), tokens {document['tokens_shape']} {document['dtype']}, tower {document['tower']['digest'][:12]}, "
        f"{document['tower']['frozen_blocks']} frozen blocks")


if __name__ == "__main__":
  command.run(main, config=_CONFIG, output_flag="out",
              rerun="the cache is built again from the start (a half-built one is never read)")
