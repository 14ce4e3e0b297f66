"""The captioned pretraining corpus: captions say what the renderer drew, deterministically, as valid tokens."""

import numpy as np
import pytest

from clipmg_jax.data.synthetic import body, captions, motions, subjects
from clipmg_jax.data.synthetic.plan import rng_for


def _attributes_mid_gesture(label: int, seed: int = 3) -> dict:
  """Attribute values (as phrases) of the middle frame of a 40-frame clip of class `label` (0-based)."""
  subject = subjects.sample_subject(rng_for(seed, 1, 1), 1, 320, 240)
  state = motions.idle(subject, 60, 25, rng_for(seed, 2))
  motions.apply_gesture(label, subject, state, 10, 49, rng_for(seed, 3))
  values = captions.frame_attributes(subject, state, body.pose(subject, state), 30)
  return {name: captions.ATTRIBUTES[name][v] for name, v in values.items()}


def test_captions_follow_the_drawn_state():
  pen = _attributes_mid_gesture(25)  # C26 manipulating objects: hands together holding the pen
  assert pen["holding"] == "holding a pen" and pen["hands"] == "hands together"
  assert pen["fingers"] == "fingers loose"
  assert _attributes_mid_gesture(23)["fingers"] == "fingers interlaced"  # C24 crossing fingers
  covering = _attributes_mid_gesture(5)  # C6 covering face: both hands at the face
  assert covering["right_hand"].split(" hand ")[1] in ("at the mouth", "at the cheek")
  assert covering["left_hand"].split(" hand ")[1] in ("at the mouth", "at the cheek")
  behind = _attributes_mid_gesture(18)  # C19 arms behind the back
  assert behind["right_hand"] == "right hand behind the back" and behind["left_hand"] == "left hand behind the back"
  assert _attributes_mid_gesture(1)["cheeks"] == "cheeks puffed"  # C2 bulging face
  assert _attributes_mid_gesture(28)["lips"] == "lips pressed"  # C29 pressing lips
  assert _attributes_mid_gesture(27)["head"] == "head tilted up"  # C28 head up
  idle = _attributes_mid_gesture(30)  # C31 shaking shoulders: hands stay on the desk
  assert idle["holding"] == "empty hands" and idle["cheeks"] == "cheeks relaxed"


def test_corpus_is_deterministic_and_its_tokens_are_its_captions():
  # 3 people; the plan's floor of one clip per class gives 32 clips, on two videos (people 1 and 3). Rendered once
  # in this process and once by 2 worker processes, a video each: the same corpus.
  a = captions.make_corpus(seed=7, num_subjects=3, clips_per_subject=1, image_size=32)
  b = captions.make_corpus(seed=7, num_subjects=3, clips_per_subject=1, image_size=32, workers=2)
  for field in ("images", "tokens", "attributes", "subjects"):
    np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
  assert a.images.shape[1:] == (32, 32, 3) and a.images.dtype == np.uint8
  assert set(a.subjects.tolist()) == {1, 3} and len(a) == 32 * 4  # 3 frames in each clip, 1 before it
  np.testing.assert_array_equal(np.stack([captions.tokenize(c) for c in a.captions()]), a.tokens)
  assert a.tokens.min() >= 1 and a.tokens.max() < len(captions.VOCABULARY)


def test_unknown_phrase_is_named():
  with pytest.raises(ValueError, match="'hands waving'"):
    captions.tokenize("right hand at the mouth, hands waving")


def test_pretraining_captions_leave_out_the_looks():
  corpus = captions.Corpus(images=np.zeros((1, 2, 2, 3), np.uint8), tokens=np.zeros((1, 15), np.int32),
                           attributes=np.zeros((1, 15), np.int32), subjects=np.ones(1, np.int32))
  corpus.tokens[:] = captions.tokenize(corpus.captions()[0])
  text = corpus.captions(captions.GESTURE_ATTRIBUTES)[0]
  assert "shirt" not in text and "backdrop" not in text and "right hand" in text
  np.testing.assert_array_equal(corpus.caption_tokens(captions.GESTURE_ATTRIBUTES)[0],
                                captions.tokenize(text)[:len(captions.GESTURE_ATTRIBUTES)])
