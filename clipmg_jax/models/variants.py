"""The model variants (what each one uses) and the argument of a config file (`configs/<file>.py:<arg>`).

USES is the one table of the variants: the model builds only the parts a variant uses (clipmg.py), the FLOP
counter measures only those (flops.py), and docs/method.md section 9 lists the same table.

The config argument:
  <variant>          the paper's model (or one of its ablations): no additions. The loss is the config's: plain
                     cross-entropy in configs/imigue.py (the paper's); configs/synthetic.py trains every variant
                     with square-root class weights and label smoothing 0.1.
  <variant>+extras   the same with the two additions beyond the paper, EXTRAS below (docs/method.md section 8).
The extras change nothing in `visual_only` and `pose_only` (both need the two towers), so `+extras` is accepted
there and is a no-op.
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

# Model config overrides (dotted keys of clipmg.get_model_config) that the extras switch on.
EXTRAS = {
    "head.pose_context": True,  # the gated skeleton feature on the head's own input channels
    "head.pose_aux_weight": 1.0,  # an auxiliary pose-only head whose loss joins the training loss
}


def uses(variant: str) -> Uses:
  """The row of USES; ValueError naming the variants for an unknown one."""
  if variant not in USES:
    raise ValueError(f"unknown model variant {variant!r}; expected one of {VARIANTS}")
  return USES[variant]


def parse(arg: str | None, default: str = "full") -> tuple[str, bool]:
  """`"no_gate+extras"` -> ("no_gate", True); `""`/None -> (default parsed). ValueError names the grammar."""
  arg = (arg or default).strip()
  extras = arg.endswith(EXTRAS_SUFFIX)
  variant = arg[:-len(EXTRAS_SUFFIX)] if extras else arg
  if variant not in USES:
    raise ValueError(f"config argument {arg!r}: expected <variant> or <variant>{EXTRAS_SUFFIX} with <variant> one "
                     f"of {VARIANTS}")
  return variant, extras


def model_overrides(arg: str | None, default: str = "full") -> dict:
  """Keyword overrides for clipmg.get_model_config: the variant, plus EXTRAS when the argument asks for them."""
  variant, extras = parse(arg, default)
  return {"variant": variant, **(EXTRAS if extras else {})}


def name(model_config) -> str | None:
  """The `<variant>[+extras]` a model config was made with (the argument model_overrides takes); None for a model
  config without a variant (a stand-in's)."""
  variant = model_config.get("variant") if model_config is not None else None
  if variant is None:
    return None

  def field(dotted):
    node = model_config
    for part in dotted.split("."):
      node = node.get(part) if node is not None else None
    return node
  return variant + (EXTRAS_SUFFIX if all(field(k) == v for k, v in EXTRAS.items()) else "")
