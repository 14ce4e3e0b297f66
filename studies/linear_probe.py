r"""Linear probe of a frozen vision tower: do its features carry the captioned attributes, on people it never saw?

Features of the frozen tower, for every frame of the captioned corpus (clipmg_jax/data/synthetic/captions.py):
"mean", the mean of ln_post over the patch tokens (CLIP-MG's query without keypoints), and "regions", the means of
ln_post over a 3 x 3 grid of image regions (CLIP-MG pools the patch tokens by attention, so where a feature is
matters; the mean erases it). Raw pixels (8 x 8 pixel block means) are the baseline that needs no tower. For each
attribute, a softmax regression is fitted on the frames of the pretraining people and tested on the people held out
of pretraining (corpus.probe_subjects). The same probe on a randomly initialised tower of the same shape is the
baseline. Reports accuracy against the majority rate of the test people, and balanced accuracy (mean recall over the
values present) against 1 / their number. The figures go into a JSON file, by default beside the pretraining's own
files (probe_file).

  python -m studies.linear_probe --pretrain_workdir runs/pretrain_synthetic     # reads its corpus and export
"""

import argparse
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm

from clipmg_jax.data.synthetic import captions
from clipmg_jax.models import vit
from clipmg_jax.pretraining import contrastive
from clipmg_jax.run.folder import RunFolder
from clipmg_jax.weights import load_clip_vision


REGIONS = 3  # regions per side for the "regions" features


def _region_means(tokens: jax.Array, grid: int) -> jax.Array:
  """(B, grid * grid, D) patch tokens in row-major order -> (B, REGIONS^2 * D): the mean over each cell of a
  REGIONS x REGIONS split of the patch grid (cells differ by at most one patch per side)."""
  tokens = tokens.reshape(tokens.shape[0], grid, grid, -1)
  edges = np.linspace(0, grid, REGIONS + 1).round().astype(int)
  cells = [jnp.mean(tokens[:, edges[i]:edges[i + 1], edges[j]:edges[j + 1]], axis=(1, 2))
           for i in range(REGIONS) for j in range(REGIONS)]
  return jnp.concatenate(cells, axis=-1)


def features(model: vit.VisionTransformer, params, images: np.ndarray, batch: int = 256,
             kind: str = "mean") -> np.ndarray:
  """uint8 (N, S, S, 3) -> float32 (N, D) ("mean": the mean ln_post of the patch tokens) or (N, 9 D) ("regions":
  its means over a 3 x 3 grid of regions)."""
  if kind not in ("mean", "regions"):
    raise ValueError(f"features kind {kind!r}: expected 'mean' or 'regions'")

  @jax.jit
  def run(x):
    hidden = model.apply({"params": params}, vit.normalize_images(x))["last_hidden_state"]
    tokens = model.apply({"params": params}, hidden[:, 1:], method=lambda m, h: m.ln_post(h))
    return jnp.mean(tokens, axis=1) if kind == "mean" else _region_means(tokens, model.grid_size)
  out = [np.asarray(run(images[i:i + batch])) for i in tqdm.trange(0, len(images), batch, desc=f"{kind} features")]
  return np.concatenate(out)


def pixel_features(images: np.ndarray, block: int = 8) -> np.ndarray:
  """uint8 (N, S, S, 3) -> float32 (N, (S / block)^2 * 3): the mean of each block x block pixel square."""
  n, s = images.shape[:2]
  cells = s // block
  x = images[:, :cells * block, :cells * block].astype(np.float32)
  return x.reshape(n, cells, block, cells, block, 3).mean(axis=(2, 4)).reshape(n, -1)


def fit_softmax(x: np.ndarray, y: np.ndarray, num_classes: int, steps: int = 500, l2: float = 1e-4) -> np.ndarray:
  """Multinomial logistic regression on standardised features (full batch, Adam) -> (D + 1, K) weights."""
  x = jnp.asarray(np.concatenate([x, np.ones((len(x), 1), np.float32)], 1))
  y = jnp.asarray(y)
  w = jnp.zeros((x.shape[1], num_classes))
  tx = optax.adam(0.05)

  def loss(w):
    return optax.softmax_cross_entropy_with_integer_labels(x @ w, y).mean() + l2 * jnp.sum(w[:-1] ** 2)

  @jax.jit
  def step(w, opt):
    g = jax.grad(loss)(w)
    updates, opt = tx.update(g, opt)
    return optax.apply_updates(w, updates), opt

  opt = tx.init(w)
  for _ in range(steps):
    w, opt = step(w, opt)
  return np.asarray(w)


def probe(train_x, train_y, test_x, test_y) -> dict:
  """Accuracies of one attribute's probe on the test people."""
  mean, std = train_x.mean(0), train_x.std(0) + 1e-6
  k = int(max(train_y.max(), test_y.max())) + 1
  w = fit_softmax((train_x - mean) / std, train_y, k)
  z = (test_x - mean) / std
  pred = np.argmax(np.concatenate([z, np.ones((len(z), 1), np.float32)], 1) @ w, 1)
  present = np.unique(test_y)
  counts = np.bincount(test_y, minlength=k)
  return dict(accuracy=float(np.mean(pred == test_y)), majority=float(counts.max() / len(test_y)),
              balanced=float(np.mean([np.mean(pred[test_y == c] == c) for c in present])),
              balanced_chance=float(1.0 / len(present)), values_in_test=int(len(present)))


def probe_file(folder: RunFolder) -> pathlib.Path:
  """Where the probe of a pretraining run's tower is written by default (and where studies/pretrained_tower.sh
  reads it back)."""
  return folder.path / "linear_probe.json"


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--pretrain_workdir", required=True,
                      help="workdir of python -m clipmg_jax.pretrain (its config, corpus and exported tower)")
  parser.add_argument("--checkpoint", default="", help="tower to probe (default: the workdir's exported tower)")
  parser.add_argument("--output", default="", help="JSON results (default: linear_probe.json in the workdir)")
  args = parser.parse_args(argv)
  workdir = RunFolder(args.pretrain_workdir)
  saved_config = workdir.read_config()
  if saved_config is None:
    raise SystemExit(f"{workdir.config_file}: not found; run python -m clipmg_jax.pretrain --workdir {workdir} first")
  import ml_collections  # pylint: disable=import-outside-toplevel
  config = ml_collections.ConfigDict(saved_config)
  corpus = contrastive.load_corpus(config.corpus, config.data.image_size, workdir.corpus_file)
  train, test = contrastive.split_people(corpus, int(config.corpus.probe_subjects))
  if not len(test):
    raise SystemExit("corpus.probe_subjects is 0: no held-out people to test the probe on")
  model, pretrained = load_clip_vision(args.checkpoint or str(workdir.export_dir))
  random_init = model.init(jax.random.key(0), jnp.zeros((1, model.image_size, model.image_size, 3)))["params"]
  extracted = {"pixels": (pixel_features(train.images), pixel_features(test.images))}
  for name, params in (("pretrained", pretrained), ("random init", random_init)):
    for kind in ("mean", "regions"):
      extracted[f"{name}, {kind}"] = (features(model, params, train.images, kind=kind),
                                      features(model, params, test.images, kind=kind))
  results = {name: {a: probe(f_train, train.attributes[:, j], f_test, test.attributes[:, j])
                    for j, a in enumerate(captions.ATTRIBUTE_NAMES)}
             for name, (f_train, f_test) in tqdm.tqdm(extracted.items(), desc="probes")}
  out = pathlib.Path(args.output or probe_file(workdir))
  out.write_text(json.dumps(dict(train_images=len(train), test_images=len(test),
                                 test_people=sorted(set(test.subjects.tolist())), results=results), indent=1))
  print(f"{len(train)} frames of {len(set(train.subjects.tolist()))} pretraining people -> "
        f"{len(test)} frames of {len(set(test.subjects.tolist()))} held-out people")
  names = list(results)
  print("Balanced accuracy (mean recall over the values present in the test frames), %; plain accuracy in brackets")
  print("| attribute | values in test | chance | majority | " + " | ".join(names) + " |")
  print("|---|---:|---:|---:|" + "---:|" * len(names))
  for a in captions.ATTRIBUTE_NAMES:
    first = results[names[0]][a]
    cells = " | ".join(f"{100 * results[n][a]['balanced']:.1f} ({100 * results[n][a]['accuracy']:.1f})" for n in names)
    print(f"| {a} | {first['values_in_test']} | {100 * first['balanced_chance']:.1f} | {100 * first['majority']:.1f} | "
          f"{cells} |")
  print(f"wrote {out}")


if __name__ == "__main__":
  main()
