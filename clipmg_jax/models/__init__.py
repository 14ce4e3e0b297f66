"""Models: the CLIP vision tower, the skeleton branch and the CLIP-MG classifier."""

from clipmg_jax.models.clipmg import ClipMG
from clipmg_jax.models.clipmg import VARIANTS
from clipmg_jax.models.clipmg_config import get_model_config
from clipmg_jax.models.clipmg_params import trainable_mask
from clipmg_jax.models.clipmg_params import with_pretrained_vit
from clipmg_jax.models.pose_guidance import patch_weights
from clipmg_jax.models.skeleton import render_heatmaps
from clipmg_jax.models.skeleton import SkeletonEncoder
from clipmg_jax.models.vit import CLIP_MEAN
from clipmg_jax.models.vit import CLIP_STD
from clipmg_jax.models.vit import normalize_images
from clipmg_jax.models.vit import VisionTransformer
from clipmg_jax.models.vit import VIT_CONFIGS
