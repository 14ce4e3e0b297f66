"""The Python steps of studies/pretrained_tower.sh: the two preparations, each made once and shared by the runs after
it, and the steps that read or pack the pretraining runs' folders (through RunFolder, which names their files):

  python -m studies.pretrained_tower_prep corpus 408 24 runs/x/pretrain_plain runs/x/pretrain_jitter
  python -m studies.pretrained_tower_prep data runs/x/dataset 8              # cache dir, conversion workers
  python -m studies.pretrained_tower_prep best runs/x/pretrain_plain runs/x/pretrain_jitter   # prints the kept one
  python -m studies.pretrained_tower_prep keep runs/x/pretrain_jitter runs/x/results/tower.tgz
  python -m studies.pretrained_tower_prep pack runs/x runs/x/results/runs.tgz dataset results   # + names left out

corpus: the captioned corpus of configs/pretrain_synthetic.py with another number of people (people, held-out
people), rendered into the first pretraining workdir and copied into the others, where `python -m
clipmg_jax.pretrain` reuses it when its settings match. data: the benchmark's dataset exactly as configs/synthetic.py
makes it on first use (clipmg_jax/data/synthetic/prepare.py), with more conversion workers. best: of the workdirs
with a linear probe, the one whose "regions" features read the two hand regions best (mean balanced accuracy); the
scores go to stderr, the workdir (or nothing) to stdout. keep: the tower exported there, with the pretraining's
config and its probe. pack: a folder's runs without their bulk (checkpoints, TensorBoard events, exported towers,
corpora, generated data) and without the folders named after it.
(A file rather than inline code: corpus and data render in spawned worker processes, which re-import the main module.)
"""

import json
import pathlib
import shutil
import sys
import tarfile

from clipmg_jax.data.synthetic import prepare
from clipmg_jax.pretraining import contrastive
from clipmg_jax.run.folder import RunFolder
from configs import pretrain_synthetic
from configs import synthetic
from studies import linear_probe


def corpus(people: str, probe: str, *workdirs: str) -> None:
  config = pretrain_synthetic.get_config()
  config.corpus.num_subjects, config.corpus.probe_subjects = int(people), int(probe)
  first, *others = (RunFolder(w) for w in workdirs)
  first.path.mkdir(parents=True, exist_ok=True)
  made = contrastive.load_corpus(config.corpus, config.data.image_size, first.corpus_file, progress=False)
  print(f"{first.corpus_file}: {len(made)} frames of {len(set(made.subjects.tolist()))} people")
  for other in others:
    other.path.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(first.corpus_file, other.corpus_file)


def data(cache_dir: str, workers: str) -> None:
  config = synthetic.get_config()
  config.data.synthetic.cache_dir, config.data.synthetic.convert_workers = cache_dir, int(workers)
  print(f"shards: {prepare.make_shards(config.data, cache_dir).shards_dir}")


def best(*workdirs: str) -> None:
  scores = {}
  for workdir in workdirs:
    path = linear_probe.probe_file(RunFolder(workdir))
    if path.is_file():
      regions = json.loads(path.read_text())["results"]["pretrained, regions"]
      scores[workdir] = (regions["right_hand"]["balanced"] + regions["left_hand"]["balanced"]) / 2
  print(" hand-region scores:", {k: round(100 * v, 1) for k, v in scores.items()}, file=sys.stderr)
  print(max(scores, key=scores.get) if scores else "", end="")


def keep(workdir: str, out: str) -> None:
  folder = RunFolder(workdir)
  with tarfile.open(out, "w:gz") as archive:
    for path in (folder.export_dir, folder.config_file, linear_probe.probe_file(folder)):
      archive.add(path, arcname=path.name)


def pack(root: str, out: str, *skip: str) -> None:
  bulk = RunFolder(root)
  names = {bulk.checkpoints_dir.name, bulk.tensorboard_dir.name, bulk.export_dir.name,
           bulk.synthetic_data_dir.name, *skip}

  def keep_member(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    name = pathlib.PurePosixPath(info.name)
    return None if name.name in names or name.suffix == bulk.corpus_file.suffix else info

  with tarfile.open(out, "w:gz") as archive:
    archive.add(root, arcname=".", filter=keep_member)


COMMANDS = {"corpus": (corpus, 3), "data": (data, 2), "best": (best, 1), "keep": (keep, 2), "pack": (pack, 2)}

if __name__ == "__main__":
  if sys.argv[1:2] in (["-h"], ["--help"]):
    print(__doc__)
    sys.exit(0)
  # Each command's least number of arguments: corpus, best and pack take more.
  if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS or len(sys.argv) - 2 < COMMANDS[sys.argv[1]][1]:
    raise SystemExit(__doc__)
  COMMANDS[sys.argv[1]][0](*sys.argv[2:])
