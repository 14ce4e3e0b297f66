"""The argument of a config file (`configs/<file>.py:<arg>`): a model variant, optionally with the extras.

  <variant>          the paper's model (or one of its ablations): plain cross-entropy, no additions.
  <variant>+extras   the same with the two additions beyond the paper, EXTRAS below (docs/method.md section 8).

The variants are clipmg.VARIANTS. The extras change nothing in `visual_only` and `pose_only` (both need the two
towers), so `+extras` is accepted there and is a no-op.
"""

from clipmg_jax.models import clipmg

EXTRAS_SUFFIX = "+extras"

# Model config overrides (dotted keys of clipmg.get_model_config) that the extras switch on.
EXTRAS = {
    "head.pose_context": True,  # the gated skeleton feature on the head's own input channels
    "head.pose_aux_weight": 1.0,  # an auxiliary pose-only head whose loss joins the training loss
}


def parse(arg: str | None, default: str = "full") -> tuple[str, bool]:
  """`"no_gate+extras"` -> ("no_gate", True); `""`/None -> (default parsed). ValueError names the grammar."""
  arg = (arg or default).strip()
  extras = arg.endswith(EXTRAS_SUFFIX)
  variant = arg[:-len(EXTRAS_SUFFIX)] if extras else arg
  if variant not in clipmg.VARIANTS:
    raise ValueError(f"config argument {arg!r}: expected <variant> or <variant>{EXTRAS_SUFFIX} with <variant> one "
                     f"of {clipmg.VARIANTS}")
  return variant, extras


def model_overrides(arg: str | None, default: str = "full") -> dict:
  """Keyword overrides for clipmg.get_model_config: the variant, plus EXTRAS when the argument asks for them."""
  variant, extras = parse(arg, default)
  return {"variant": variant, **(EXTRAS if extras else {})}
