"""The two preparations of studies/pretrained_tower.sh, each made once and shared by the runs after it:

  python -m studies.pretrained_tower_prep corpus runs/x/corpus.npz 408 24   # path, people, held-out people
  python -m studies.pretrained_tower_prep data runs/x/synthetic_data 8      # cache dir, conversion workers

corpus: the captioned corpus of configs/pretrain_synthetic.py with another number of people, in the .npz that
`python -m clipmg_jax.pretrain` reuses when its settings match. data: the benchmark's dataset exactly as
configs/synthetic.py makes it on first use (clipmg_jax/data/synthetic/prepare.py), with more conversion workers.
(A file rather than inline code: both render in spawned worker processes, which re-import the main module.)
"""

from clipmg_jax.data.synthetic import prepare
from clipmg_jax.pretraining import contrastive
from configs import pretrain_synthetic
from configs import synthetic


def corpus(path: str, people: str, probe: str) -> None:
  config = pretrain_synthetic.get_config()
  config.corpus.num_subjects, config.corpus.probe_subjects = int(people), int(probe)
  made = contrastive.load_corpus(config.corpus, config.data.image_size, path, progress=False)
  print(f"{path}: {len(made)} frames of {len(set(made.subjects.tolist()))} people")


def data(cache_dir: str, workers: str) -> None:
  config = synthetic.get_config()
  config.data.synthetic.cache_dir, config.data.synthetic.convert_workers = cache_dir, int(workers)
  print(f"shards: {prepare.make_shards(config.data, cache_dir).shards_dir}")


if __name__ == "__main__":
  commands = {"corpus": (corpus, 3), "data": (data, 2)}
  if len(sys.argv) < 2 or sys.argv[1] not in commands or len(sys.argv) - 2 != commands[sys.argv[1]][1]:
    raise SystemExit(__doc__)
  commands[sys.argv[1]][0](*sys.argv[2:])
