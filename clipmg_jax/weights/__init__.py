"""Pretrained CLIP vision weights: Hugging Face and OpenAI/open_clip checkpoints -> Flax params."""

from clipmg_jax.weights.common import CheckpointError
from clipmg_jax.weights.loader import check_params
from clipmg_jax.weights.loader import load_clip_vision
from clipmg_jax.weights.loader import port_checkpoint
from clipmg_jax.weights.loader import port_clip
from clipmg_jax.weights.loader import PortedVision
from clipmg_jax.weights.ported import load_ported
from clipmg_jax.weights.ported import save_ported
