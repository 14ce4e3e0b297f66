"""The model variants (what each one uses) and the argument of a config file (`configs/<file>.py:<arg>`).

USES is the one table of the variants: the model builds only the parts a variant uses (clipmg.py), the FLOP
counter measures only those (flops.py), and docs/method.md section 9 lists the same table.

The config argument, `<variant>[+extras][+robust]` (the additions in any order, each at most once):
  <variant>          the paper's model (or one of its ablations): no additions. The loss is the config's: plain
                     cross-entropy in configs/imigue.py (the paper's); configs/synthetic.py trains every variant
                     with square-root class weights and label smoothing 0.1.
  +extras            the two additions beyond the paper that help on the synthetic benchmark, EXTRAS below
                     (docs/method.md section 8).
  +robust            robust fusion, ROBUST below (docs/method.md "Robust fusion"): a vision classifier of its own
                     beside the fused model, trained on every clip, whose logits take over as the clip's pose
                     reliability falls below a floor (where the gate also closes).
The additions change nothing in `visual_only` and `pose_only` (both need the two towers), so they are accepted there
and are no-ops.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Uses:
  """The parts of CLIP-MG a variant has; a part it does not use has no parameters in it."""
  vision: bool  # the CLIP ViT over the RGB frames (patch tokens)
  skeleton: bool  # heatmaps + 3D-CNN over the keypoints (the skeleton feature)
  guidance: bool  # pose-guided patch weights for the semantic query (otherwise the mean patch token)
  gate: bool  # the learned confidence gate (otherwise g = 1: always fully pose-driven)
  cross_attention: bool  # cross-attention of the query over the tokens (otherwise the query itself is classified)


USES = {
    "full": Uses(vision=True, skeleton=True, guidance=True, gate=True, cross_attention=True),
    "visual_only": Uses(vision=True, skeleton=False, guidance=False, gate=False, cross_attention=True),
    "pose_only": Uses(vision=False, skeleton=True, guidance=False, gate=False, cross_attention=False),
    "no_guidance": Uses(vision=True, skeleton=True, guidance=False, gate=True, cross_attention=True),
    "no_cross_attention": Uses(vision=True, skeleton=True, guidance=True, gate=True, cross_attention=False),
    "no_gate": Uses(vision=True, skeleton=True, guidance=True, gate=False, cross_attention=True),
}
VARIANTS = tuple(USES)

EXTRAS_SUFFIX = "+extras"
ROBUST_SUFFIX = "+robust"

# Model config overrides (dotted keys of clipmg.get_model_config) that the extras switch on.
EXTRAS = {
    "head.pose_context": True,  # the gated skeleton feature on the head's own input channels
    "head.pose_aux_weight": 1.0,  # an auxiliary pose-only head whose loss joins the training loss
}

# Model config overrides of +robust (docs/method.md "Robust fusion"; chosen on the validation split of the
# pretrained-tower benchmark among the candidates of docs/results.md "Robust fusion").
ROBUST = {
    "robust.vision_readout": "tower",  # a visual_only classifier (own trainable blocks, cross-attention, head)
    "robust.vision_aux_weight": 1.0,  # its loss, on every clip
    "robust.distill_weight": 1.0,  # and its cross-entropy to the fused model's class probabilities
    "robust.vision_lr_scale": 2.0,  # an optimizer group of its own (own gradient clip), at twice the learning rate
    "robust.reliability_floor": 0.25,  # below this pose reliability its logits take over (all of them at r = 0)
}

_ADDITIONS = {EXTRAS_SUFFIX: "extras", ROBUST_SUFFIX: "robust"}


@dataclasses.dataclass(frozen=True)
class Arg:
  """A parsed config argument: the variant and the additions asked for."""
  variant: str
  extras: bool = False
  robust: bool = False

  def __str__(self) -> str:
    return self.variant + (EXTRAS_SUFFIX if self.extras else "") + (ROBUST_SUFFIX if self.robust else "")


def uses(variant: str) -> Uses:
  """The row of USES; ValueError naming the variants for an unknown one."""
  if variant not in USES:
    raise ValueError(f"unknown model variant {variant!r}; expected one of {VARIANTS}")
  return USES[variant]


def parse(arg: str | None, default: str = "full") -> Arg:
  """`"no_gate+extras+robust"` -> Arg("no_gate", extras=True, robust=True); `""`/None -> the default parsed.
  ValueError names the grammar for an unknown variant or addition, or one given twice."""
  arg = (arg or default).strip()
  variant, *rest = arg.split("+")
  additions = ["+" + a for a in rest]
  if (variant not in USES or any(a not in _ADDITIONS for a in additions)
      or len(set(additions)) != len(additions)):
    raise ValueError(f"config argument {arg!r}: expected <variant>[{EXTRAS_SUFFIX}][{ROBUST_SUFFIX}] with "
                     f"<variant> one of {VARIANTS}")
  return Arg(variant, extras=EXTRAS_SUFFIX in additions, robust=ROBUST_SUFFIX in additions)


def model_overrides(arg: str | None, default: str = "full") -> dict:
  """Keyword overrides for clipmg.get_model_config: the variant, plus EXTRAS and ROBUST when asked for."""
  parsed = parse(arg, default)
  return {"variant": parsed.variant, **(EXTRAS if parsed.extras else {}), **(ROBUST if parsed.robust else {})}


def classifies_without_pose(model_config) -> bool:
  """Whether a model answers for a clip with no usable joint from vision alone: a vision tower, and robust fusion's
  reliability floor, which closes the gate exactly there (a `+robust` model, or visual_only, which reads no pose)."""
  variant = model_config.get("variant")
  if variant is None or not uses(variant).vision:
    return False
  return reliability_floor(model_config) > 0 or not uses(variant).skeleton


def reliability_floor(model_config) -> float:
  """robust.reliability_floor of a model config (0 without robust fusion)."""
  return float((model_config.get("robust") or {}).get("reliability_floor", 0.0))


def name(model_config) -> str | None:
  """The `<variant>[+extras][+robust]` a model config was made with (the argument model_overrides takes); None for a
  model config without a variant (a stand-in's)."""
  variant = model_config.get("variant") if model_config is not None else None
  if variant is None:
    return None

  def field(dotted):
    node = model_config
    for part in dotted.split("."):
      node = node.get(part) if node is not None else None
    return node

  has = lambda table: all(field(k) == v for k, v in table.items())
  return str(Arg(variant, extras=has(EXTRAS), robust=has(ROBUST)))
