"""One record of a prefix cache: a clip view's frozen-prefix tokens with the keypoints, label and ids that go with it.

A cache (clipmg_jax/training/prefix_cache.py writes it, clipmg_jax/data/loader/token_pipeline.py reads it) stores
these records in TFRecord shards with offset indexes, like the clip shards. The record carries its own keypoints:
they belong to the view (the view's sampled pose frames, cropped and flipped with its frames), so they cannot be
joined back from the source record without redrawing the view, and at 32 x 18 x 3 float32 (6.9 kB) they are 0.3 % of
a ViT-B/16 view's tokens.

Layout (little-endian): magic `CMGTOK1\\0`, uint32 header length, a UTF-8 JSON header {"tokens": [shape, dtype],
"keypoints": shape, "label", "subject", "clip_id", "view"}, then the tokens' bytes, then the keypoints' float32
bytes. Reading is one np.frombuffer per array, no copy of the tokens.
"""

import dataclasses
import json
import struct

import ml_dtypes
import numpy as np

MAGIC = b"CMGTOK1\0"
DTYPES = {"bfloat16": np.dtype(ml_dtypes.bfloat16), "float32": np.dtype(np.float32)}


@dataclasses.dataclass
class TokenRecord:
  tokens: np.ndarray  # (T, N, D) bfloat16 or float32: the input of the first trainable ViT block per frame
  keypoints: np.ndarray  # float32 (T_p, 18, 3) in pixels of the view's S x S frames
  label: int
  subject: int
  clip_id: int
  view: int  # 0 = the evaluation view, 1.. = training augmentations


def dtype_name(dtype) -> str:
  for name, value in DTYPES.items():
    if np.dtype(dtype) == value:
      return name
  raise ValueError(f"tokens of dtype {dtype} cannot be stored: expected one of {sorted(DTYPES)}")


def encode(record: TokenRecord) -> bytes:
  tokens = np.ascontiguousarray(record.tokens)
  keypoints = np.ascontiguousarray(record.keypoints, np.float32)
  header = json.dumps({"tokens": [list(tokens.shape), dtype_name(tokens.dtype)], "keypoints": list(keypoints.shape),
                       "label": int(record.label), "subject": int(record.subject), "clip_id": int(record.clip_id),
                       "view": int(record.view)}).encode()
  return b"".join((MAGIC, struct.pack("<I", len(header)), header, tokens.tobytes(), keypoints.tobytes()))


def decode(data: bytes) -> TokenRecord:
  """ValueError (naming what is wrong) for bytes that are not a whole token record."""
  if data[:len(MAGIC)] != MAGIC:
    raise ValueError(f"not a prefix-cache token record (magic {data[:len(MAGIC)]!r}, expected {MAGIC!r})")
  (size,) = struct.unpack_from("<I", data, len(MAGIC))
  start = len(MAGIC) + 4
  header = json.loads(data[start:start + size])
  (shape, dtype), kp_shape = header["tokens"], header["keypoints"]
  dtype = DTYPES[dtype]
  offset = start + size
  n_tokens = int(np.prod(shape)) * dtype.itemsize
  n_kp = int(np.prod(kp_shape)) * 4
  if len(data) != offset + n_tokens + n_kp:
    raise ValueError(f"token record of {len(data)} bytes, its header describes {offset + n_tokens + n_kp}")
  tokens = np.frombuffer(data, dtype, int(np.prod(shape)), offset).reshape(shape)
  keypoints = np.frombuffer(data, np.float32, int(np.prod(kp_shape)), offset + n_tokens).reshape(kp_shape)
  return TokenRecord(tokens=tokens, keypoints=keypoints, label=header["label"], subject=header["subject"],
                     clip_id=header["clip_id"], view=header["view"])
