"""FLOP/parameter counter: agrees with analytic counts and with the model's own parameter tree."""

import jax
import jax.numpy as jnp

from clipmg_jax.models import clipmg
from clipmg_jax.models import flops
from clipmg_jax.models import variants
from clipmg_jax.models import vit


def test_vit_flops_match_the_analytic_matmul_count():
  measured = flops.vit_forward_flops("B/16", num_frames=8, image_size=224)
  fields = dict(vit.VIT_CONFIGS["B/16"], proj_dim=None)
  analytic = vit.forward_flops(fields, batch=8)  # matmuls only; cost analysis adds norms, softmax, GELU
  assert analytic <= measured <= 1.02 * analytic


def test_count_flops_of_a_matmul():
  spec = jax.ShapeDtypeStruct((32, 48), jnp.float32)
  other = jax.ShapeDtypeStruct((48, 16), jnp.float32)
  assert flops.count_flops(jnp.dot, spec, other) == 2 * 32 * 48 * 16


def test_component_table_is_consistent_with_the_model():
  # With the extras, so that the table has every row (the auxiliary pose head among them).
  config = clipmg.get_model_config("tiny", heatmap=dict(resolution=32), **variants.EXTRAS)
  rows = {row["component"]: row for row in flops.component_table(config)}
  total = rows["model total (forward)"]
  parts = [r for name, r in rows.items() if not name.startswith("model total") and "forward, 8 frames" not in name]
  model = clipmg.ClipMG(config)
  shapes = jax.eval_shape(lambda f, k: model.init(jax.random.key(0), f, k),
                          jax.ShapeDtypeStruct((1, 8, 224, 224, 3), jnp.float32),
                          jax.ShapeDtypeStruct((1, 32, 18, 3), jnp.float32))["params"]
  assert total["params"] == flops.count_params(shapes) == sum(r["params"] for r in parts)
  # Components are measured separately; the whole forward adds only glue on top of them. The auxiliary pose head
  # has parameters but runs in training only.
  assert "auxiliary pose head (training only)" in rows
  forward = sum(r["gflops"] for r in parts if "training only" not in r["component"])
  assert forward <= total["gflops"] <= 1.05 * forward
  assert rows["model total (forward + backward; frozen prefix under stop_gradient)"]["gflops"] > total["gflops"]
