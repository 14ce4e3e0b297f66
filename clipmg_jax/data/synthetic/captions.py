"""A captioned image corpus for contrastive pretraining of the vision tower, drawn by the synthetic generator.

Each example is one rendered frame of a synthetic person (their own seed, so other people than the benchmark's)
and a caption built from what was drawn in it: where each hand is and what it touches, whether the hands are
together, a held pen, interlaced fingers, the face (cheeks, lips, eyes, head pitch), shoulders and torso, and the
clothes, hair and backdrop. The attributes are read from the same control state and clean joints the renderer
draws from, so a caption is true of its frame by construction.

A caption is a list of phrases, one per attribute, each from a fixed vocabulary (`VOCABULARY`): the text side of
the pretraining embeds these phrase tokens (clipmg_jax/models/contrastive.py). `make_corpus` is deterministic in
its arguments; `num_subjects` and `clips_per_subject` size it.
"""

import dataclasses
import multiprocessing

import numpy as np
from PIL import Image

from clipmg_jax.data.loader import augment
from clipmg_jax.data.synthetic import body, render
from clipmg_jax.data.synthetic import writer as synthetic_writer
from clipmg_jax.data.synthetic.plan import SizeConfig, plan_dataset, rng_for

# Seed of the pretraining people: the benchmark's dataset uses seed 0, and subjects' looks and every video are
# drawn from generators keyed by the seed, so these are other people in other videos.
PRETRAIN_SEED = 1000
_SAMPLE = 3  # generator purpose (plan.py uses 0-2): which frames are taken and how they are cropped

HAND_REGIONS = ("resting on the desk", "at the centre of the desk", "far out on the desk", "on top of the head",
                "at the forehead", "at the ear", "at the cheek", "at the mouth", "at the neck", "on the chest",
                "across the body", "on the other arm", "at the hip", "in the air", "behind the back")
COLOURS = {"black": (20, 20, 20), "white": (235, 235, 235), "grey": (128, 128, 128), "red": (200, 40, 40),
           "green": (40, 160, 60), "blue": (40, 70, 200), "yellow": (220, 200, 40), "brown": (130, 80, 40),
           "purple": (130, 50, 160), "teal": (30, 150, 150), "orange": (230, 130, 30), "pink": (230, 150, 180)}
HAIR_STYLES = ("short hair", "long hair", "a bald head", "a cap")

# Attribute -> its values (phrases). Binary attributes name both values, so every caption has one phrase each.
ATTRIBUTES = {
    "right_hand": tuple(f"right hand {r}" for r in HAND_REGIONS),
    "left_hand": tuple(f"left hand {r}" for r in HAND_REGIONS),
    "hands": ("hands apart", "hands together"),
    "fingers": ("fingers loose", "fingers interlaced"),
    "holding": ("empty hands", "holding a pen"),
    "cheeks": ("cheeks relaxed", "cheeks puffed"),
    "lips": ("red lips", "lips pressed"),
    "eyes": ("eyes open", "eyes closed"),
    "head": ("head level", "head tilted up", "head sunk into the shoulders"),
    "shoulders": ("shoulders relaxed", "shoulders raised"),
    "torso": ("torso centred", "leaning to the image left", "leaning to the image right", "sitting up straight"),
    "jacket": ("no jacket", "a jacket"),
    "shirt": tuple(f"a {c} shirt" for c in COLOURS),
    "hair": HAIR_STYLES,
    "backdrop": tuple(f"a {c} backdrop" for c in COLOURS),
}
ATTRIBUTE_NAMES = tuple(ATTRIBUTES)
# What the body does, as opposed to who it is (clothes, hair, backdrop). Pretraining captions name these only: a
# person's looks are the same in all of their frames and, named in the caption, let a batch be matched by
# appearance alone, which teaches the tower to tell people apart instead of gestures (docs/results.md).
GESTURE_ATTRIBUTES = ("right_hand", "left_hand", "hands", "fingers", "holding", "cheeks", "lips", "eyes", "head",
                      "shoulders", "torso")
# Token 0 pads; phrase k of the flattened table is token k + 1.
VOCABULARY = ("<pad>",) + tuple(p for values in ATTRIBUTES.values() for p in values)
_TOKEN = {p: i for i, p in enumerate(VOCABULARY)}


def colour_name(rgb) -> str:
  """The nearest named colour (RGB Euclidean)."""
  names = list(COLOURS)
  return names[int(np.argmin([np.linalg.norm(np.subtract(rgb, COLOURS[n])) for n in names]))]


def _hand_region(side: int, wrist, other_elbow, other_shoulder, head, neck, r: float, sw: float, behind: bool,
                 rest_wrist) -> int:
  """Index in HAND_REGIONS of where a wrist is, from its position relative to the head (radii r) and the neck
  (shoulder widths sw). side 0 = the subject's right (image left)."""
  if behind:
    return HAND_REGIONS.index("behind the back")
  outward = -1.0 if side == 0 else 1.0
  hx, hy = (wrist - head) / r
  if abs(hx) < 1.4 and -1.6 < hy < 1.3:  # at the head
    if hy < -0.8:
      name = "on top of the head"
    elif abs(hx) > 0.8:
      name = "at the ear"
    elif hy < 0.1:
      name = "at the forehead"
    elif hy < 0.6:
      name = "at the cheek"
    else:
      name = "at the mouth"
    return HAND_REGIONS.index(name)
  if np.linalg.norm(wrist - (other_elbow + other_shoulder) / 2) < 0.18 * sw:
    return HAND_REGIONS.index("on the other arm")
  nx, ny = (wrist - neck) / sw
  own = nx * outward  # > 0: towards the hand's own side
  if ny < 0.3:
    name = "at the neck" if abs(nx) < 0.2 else "in the air"
  elif ny < 0.66:
    name = "on the chest" if abs(nx) < 0.15 else ("across the body" if own < 0 else "in the air")
  elif ny < 0.78:
    name = "across the body" if own < -0.1 else ("at the hip" if own > 0.4 else "on the chest")
  elif np.linalg.norm(wrist - rest_wrist) < 0.12 * sw:
    name = "resting on the desk"
  else:
    name = "at the centre of the desk" if abs(nx) < 0.2 else (
        "far out on the desk" if own > 0.45 else "resting on the desk")
  return HAND_REGIONS.index(name)


def frame_attributes(subject, state: body.State, clean: dict, t: int) -> dict[str, int]:
  """Attribute name -> index of its value in ATTRIBUTES[name], for frame t of a video's state and clean pose."""
  sw, r = subject.shoulder_width, subject.head_radius
  joints = clean["body25"][t]
  head = clean["head"][t]
  neck = joints[body.NECK]
  rest = body.rest_points(subject)["wrists"]
  arms = ((body.RSHO, body.RELB, body.RWRI), (body.LSHO, body.LELB, body.LWRI))
  regions = []
  for side in (0, 1):
    other = arms[1 - side]
    regions.append(_hand_region(side, joints[arms[side][2]], joints[other[1]], joints[other[0]], head, neck, r, sw,
                                bool(state.behind[t, side]), rest[side] + state.torso[t] * 0.3))
  together = np.linalg.norm(joints[body.RWRI] - joints[body.LWRI]) < 0.3 * sw
  head_state = 1 if state.pitch[t] > 0.35 else (2 if state.head[t, 1] > 0.15 * r else 0)
  torso_x, torso_y = state.torso[t] / sw
  torso = 3 if torso_y < -0.05 else (1 if torso_x < -0.045 else (2 if torso_x > 0.045 else 0))
  return dict(
      right_hand=regions[0], left_hand=regions[1], hands=int(together),
      fingers=int(state.crossed_fingers[t] > 0.5), holding=int(state.object[t] > 0.5),
      cheeks=int(state.cheeks[t] > 0.3), lips=int(state.lips_pressed[t] > 0.5), eyes=int(state.eyes_closed[t] > 0.5),
      head=head_state, shoulders=int(state.shoulder_raise[t].mean() < -0.025 * sw), torso=torso,
      jacket=int(subject.jacket is not None), shirt=list(COLOURS).index(colour_name(subject.shirt)),
      hair=subject.hair_style, backdrop=list(COLOURS).index(colour_name(subject.backdrop)))


def caption(attributes: dict[str, int], names=ATTRIBUTE_NAMES) -> str:
  """The caption text: one phrase per attribute of `names`, comma-separated."""
  return ", ".join(ATTRIBUTES[name][attributes[name]] for name in names)


def tokenize(text: str) -> np.ndarray:
  """Caption text -> int32 phrase tokens (len(ATTRIBUTE_NAMES),), 0-padded. An unknown phrase is an error naming
  it."""
  phrases = [p.strip() for p in text.split(",") if p.strip()]
  unknown = [p for p in phrases if p not in _TOKEN]
  if unknown:
    raise ValueError(f"caption {text!r}: phrases {unknown} are not in captions.VOCABULARY")
  tokens = np.zeros(len(ATTRIBUTE_NAMES), np.int32)
  tokens[:len(phrases)] = [_TOKEN[p] for p in phrases[:len(tokens)]]
  return tokens


@dataclasses.dataclass
class Corpus:
  """images uint8 (N, S, S, 3); tokens int32 (N, A) (phrase tokens, one per attribute); attributes int32 (N, A)
  (value index of each attribute, columns in ATTRIBUTE_NAMES order); subjects int32 (N,) person of each image."""
  images: np.ndarray
  tokens: np.ndarray
  attributes: np.ndarray
  subjects: np.ndarray

  def __len__(self) -> int:
    return len(self.images)

  def select(self, mask: np.ndarray) -> "Corpus":
    return Corpus(*(getattr(self, f.name)[mask] for f in dataclasses.fields(self)))

  def captions(self, names=ATTRIBUTE_NAMES) -> list[str]:
    return [caption(dict(zip(ATTRIBUTE_NAMES, row)), names) for row in self.attributes.tolist()]

  def caption_tokens(self, names=ATTRIBUTE_NAMES) -> np.ndarray:
    """int32 (N, len(names)): the tokens of the captions naming only the attributes `names`."""
    return self.tokens[:, [ATTRIBUTE_NAMES.index(n) for n in names]]


def _render_video(args) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """One planned video's frames (uint8 (n, S, S, 3)), attributes (int32 (n, A)) and subjects (int32 (n,)); its own
  generators are keyed by the video id, so the result does not depend on which process renders it."""
  seed, planned, size, frames_per_clip, idle_frames_per_clip, image_size, crop_scale = args
  subject = synthetic_writer.subject_for(seed, planned.subject_id, size)
  state = synthetic_writer.video_state(seed, planned, subject, size)
  clean = body.pose(subject, state)
  rng = rng_for(seed, _SAMPLE, planned.video_id)
  frames = []
  previous_end = 0
  for clip in planned.clips:
    # The middle 40 % of a clip, where its envelope holds the gesture (the ramps look like idle frames).
    length = clip.end_frame - clip.start_frame + 1
    lo, hi = clip.start_frame + int(0.3 * length), clip.end_frame - int(0.3 * length)
    frames += rng.integers(lo, hi + 1, frames_per_clip).tolist()
    if clip.start_frame > previous_end:
      frames += rng.integers(previous_end, clip.start_frame, idle_frames_per_clip).tolist()
    previous_end = clip.end_frame + 1
  background = render.backdrop(subject)
  channels = {name: getattr(state, name) for name in ("lips_pressed", "cheeks", "crossed_fingers", "object",
                                                      "eyes_closed")}
  images, attributes = [], []
  for t in frames:
    frame = render.render_frame(background, subject, clean["body25"][t], clean["face"][t], state.behind[t],
                                channels, t, size.cue_scale)
    x0, y0, w, h = augment.random_resized_crop_box(size.height, size.width, rng, scale=crop_scale)
    images.append(np.asarray(Image.fromarray(frame).resize((image_size, image_size), Image.BILINEAR,
                                                           box=(x0, y0, x0 + w, y0 + h))))
    attributes.append([frame_attributes(subject, state, clean, t)[n] for n in ATTRIBUTE_NAMES])
  return (np.stack(images), np.asarray(attributes, np.int32).reshape(len(frames), len(ATTRIBUTE_NAMES)),
          np.full(len(frames), planned.subject_id, np.int32))


def make_corpus(*, seed: int = PRETRAIN_SEED, num_subjects: int = 40, clips_per_subject: int = 24,
                frames_per_clip: int = 3, idle_frames_per_clip: int = 1, image_size: int = 112,
                crop_scale: tuple[float, float] = (0.6, 1.0), progress: bool = False, workers: int = 1) -> Corpus:
  """Renders the corpus: one video per person, with the clips the dataset plan gives it (clips_per_subject is the
  mean: at the default config's 408 people, 2-67 clips per video, median 21, of 2-26 classes), `frames_per_clip` frames taken inside
  the middle of each clip and `idle_frames_per_clip` between clips; each frame is cropped like a training clip (random
  area in `crop_scale`, aspect 3/4-4/3) and resized to image_size. Deterministic in its arguments; `workers` > 1
  renders the videos in that many processes (same result: each video has its own generators)."""
  size = SizeConfig(num_subjects=num_subjects, videos_per_subject=1, num_clips=num_subjects * clips_per_subject,
                    min_clips_per_class=max(1, num_subjects * clips_per_subject // 64))
  videos, _, _ = plan_dataset(seed, size)
  jobs = [(seed, planned, size, frames_per_clip, idle_frames_per_clip, image_size, tuple(crop_scale))
          for planned in videos]
  pool = multiprocessing.get_context("spawn").Pool(workers) if workers > 1 and len(jobs) > 1 else None
  try:
    results = pool.imap(_render_video, jobs) if pool else map(_render_video, jobs)
    if progress:
      import tqdm  # pylint: disable=import-outside-toplevel
      results = tqdm.tqdm(results, total=len(jobs), desc="caption corpus", unit="video")
    images, attributes, subjects = (np.concatenate(part) for part in zip(*list(results)))
  finally:
    if pool:
      pool.close()
  offsets = np.cumsum([0] + [len(v) for v in ATTRIBUTES.values()])[:-1] + 1
  return Corpus(images=images, tokens=(attributes + offsets[None]).astype(np.int32), attributes=attributes,
                subjects=subjects)
