"""Synthetic subjects: appearance (skin, clothes, hair, backdrop) and body proportions, in pixels of the frame."""

import dataclasses

import numpy as np

# Palettes in RGB 0-255. Skin tones span light to dark; backdrops are press-conference walls.
SKIN_TONES = ((255, 219, 172), (241, 194, 125), (224, 172, 105), (198, 134, 66), (141, 85, 36), (92, 56, 30),
              (234, 192, 160), (175, 120, 85))
HAIR_COLOURS = ((20, 15, 10), (60, 40, 20), (120, 80, 40), (200, 170, 100), (150, 150, 150), (110, 30, 20))
NATIONALITIES = ("United States", "Spain", "Switzerland", "Serbia", "Japan", "Germany", "France", "Australia",
                 "Canada", "Argentina")


@dataclasses.dataclass(frozen=True)
class Subject:
  """One synthetic person and the room they sit in. Lengths are pixels of the (width, height) frame."""
  subject_id: int
  gender: str
  nationality: str
  width: int
  height: int
  # Proportions.
  centre_x: float  # x of the neck at rest.
  neck_y: float  # y of the neck at rest.
  shoulder_width: float  # distance between the shoulders.
  head_radius: float  # half the head width.
  neck_length: float  # neck joint to head centre.
  upper_arm: float
  forearm: float
  right_handed: bool
  # Appearance.
  skin: tuple
  shirt: tuple
  jacket: tuple | None  # a jacket over the shirt, or None.
  hair: tuple
  hair_style: int  # 0 short, 1 long, 2 bald, 3 cap.
  cap: tuple
  backdrop: tuple
  backdrop_logo: tuple
  logo_size: int  # side of the sponsor tiles on the backdrop.
  desk: tuple

  @property
  def desk_y(self) -> float:
    """y of the desk's top edge."""
    return self.neck_y + 0.82 * self.shoulder_width


def _colour(rng: np.random.Generator, low: int = 20, high: int = 235) -> tuple:
  return tuple(int(v) for v in rng.integers(low, high, size=3))


def _distinct_from(rng, avoid, min_distance=90, **kwargs) -> tuple:
  """A random colour at least `min_distance` (RGB Euclidean) from every colour in `avoid`."""
  for _ in range(100):
    c = _colour(rng, **kwargs)
    if all(np.linalg.norm(np.subtract(c, a)) >= min_distance for a in avoid):
      return c
  return c


def sample_subject(rng: np.random.Generator, subject_id: int, width: int, height: int) -> Subject:
  """A random subject sized for a (width, height) frame, seated at a desk, upper body in view."""
  shoulder_width = width * rng.uniform(0.26, 0.34)
  skin = SKIN_TONES[rng.integers(len(SKIN_TONES))]
  backdrop = _distinct_from(rng, [skin], low=40, high=220)
  shirt = _distinct_from(rng, [skin, backdrop])
  jacket = _distinct_from(rng, [skin, backdrop, shirt], min_distance=60) if rng.random() < 0.5 else None
  return Subject(
      subject_id=subject_id,
      gender=("F", "M")[int(rng.random() < 0.6)],
      nationality=NATIONALITIES[rng.integers(len(NATIONALITIES))],
      width=width, height=height,
      centre_x=width * rng.uniform(0.42, 0.58),
      neck_y=height * rng.uniform(0.40, 0.46),
      shoulder_width=shoulder_width,
      head_radius=shoulder_width * rng.uniform(0.20, 0.25),
      neck_length=shoulder_width * rng.uniform(0.40, 0.50),
      upper_arm=shoulder_width * rng.uniform(0.58, 0.68),
      forearm=shoulder_width * rng.uniform(0.52, 0.60),
      right_handed=bool(rng.random() < 0.75),
      skin=skin, shirt=shirt, jacket=jacket,
      hair=HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))],
      hair_style=int(rng.choice(4, p=(0.45, 0.3, 0.1, 0.15))),
      cap=_distinct_from(rng, [skin, backdrop]),
      backdrop=backdrop,
      backdrop_logo=_distinct_from(rng, [backdrop], min_distance=40),
      logo_size=int(rng.integers(width // 12, width // 6)),
      desk=_distinct_from(rng, [skin, shirt], min_distance=60, low=30, high=200),
  )
