"""Renders the captioned corpus of configs/pretrain_synthetic.py with another number of people, into one .npz that
`python -m clipmg_jax.pretrain` then reuses (its settings match), so several pretraining runs share one rendering.

  python benchmarks/pretrained_tower_corpus.py runs/x/corpus.npz 408 24    # path, people, held-out people
"""

import pathlib
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from clipmg_jax.training import contrastive  # pylint: disable=wrong-import-position
from configs import pretrain_synthetic  # pylint: disable=wrong-import-position


def main(argv: list[str]) -> None:
  if len(argv) != 4:
    raise SystemExit(__doc__)
  config = pretrain_synthetic.get_config()
  config.corpus.num_subjects, config.corpus.probe_subjects = int(argv[2]), int(argv[3])
  corpus = contrastive.load_corpus(config.corpus, config.data.image_size, argv[1], progress=False)
  print(f"{argv[1]}: {len(corpus)} frames of {len(set(corpus.subjects.tolist()))} people")


if __name__ == "__main__":
  main(sys.argv)
