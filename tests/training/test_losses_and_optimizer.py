"""Losses for long-tailed labels and the optimizer's freezing, schedule and clipping."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from clipmg_jax.models import flops
from clipmg_jax.training import losses
from clipmg_jax.training import optimizer as optimizer_lib


def _opt_config(**kw):
  base = dict(learning_rate=1e-2, warmup_steps=10, final_lr_fraction=0.1, weight_decay=0.0, b1=0.9, b2=0.999,
              grad_clip_norm=0.0)
  base.update(kw)
  return ml_collections.ConfigDict(base)


def test_sqrt_inverse_weights_match_hand_values():
  counts = np.array([100, 25, 4, 0])
  w = losses.class_weights(counts, "sqrt_inverse")
  raw = np.array([1 / 10, 1 / 5, 1 / 2, 0.0])
  scale = counts.sum() / (counts * raw).sum()  # 129 / (10 + 5 + 2) = 129 / 17
  np.testing.assert_allclose(w, raw * scale, rtol=1e-6)
  assert np.isclose((counts * w).sum() / counts.sum(), 1.0)  # mean weight 1 over training examples


def test_weighted_loss_equals_manual_weighted_mean():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(6, 4)).astype(np.float32)
  labels = np.array([0, 1, 2, 3, 1, 0])
  weights = np.array([0.5, 1.0, 2.0, 3.0], np.float32)
  mask = np.array([1, 1, 1, 1, 1, 0], np.float32)
  got = losses.classification_loss(jnp.asarray(logits), jnp.asarray(labels), weights=jnp.asarray(weights),
                                   logit_offset=None, label_smoothing=0.0, example_mask=jnp.asarray(mask))
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  ce = -logp[np.arange(6), labels]
  w = weights[labels] * mask
  np.testing.assert_allclose(float(got), (w * ce).sum() / w.sum(), rtol=1e-5)


def test_logit_adjustment_and_label_smoothing_reference():
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(5, 3)).astype(np.float32)
  labels = np.array([0, 1, 2, 2, 0])
  counts = np.array([60, 30, 10])
  offset = 1.0 * losses.log_prior(counts)
  np.testing.assert_allclose(offset, np.log(counts / counts.sum()), rtol=1e-6)
  eps = 0.1
  got = losses.classification_loss(jnp.asarray(logits), jnp.asarray(labels), weights=None,
                                   logit_offset=jnp.asarray(offset), label_smoothing=eps)
  z = logits + offset
  logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
  target = np.full((5, 3), eps / 3) + (1 - eps) * np.eye(3)[labels]
  np.testing.assert_allclose(float(got), (-(target * logp).sum(-1)).mean(), rtol=1e-5)
  # Adjustment pushes the loss of rare-class targets up relative to the unadjusted loss.
  plain = losses.classification_loss(jnp.asarray(logits[2:3]), jnp.asarray(labels[2:3]), weights=None,
                                     logit_offset=None, label_smoothing=0.0)
  adjusted = losses.classification_loss(jnp.asarray(logits[2:3]), jnp.asarray(labels[2:3]), weights=None,
                                        logit_offset=jnp.asarray(offset), label_smoothing=0.0)
  assert float(adjusted) > float(plain)


def test_schedule_warmup_then_cosine():
  schedule = optimizer_lib.make_schedule(_opt_config(), total_steps=110)
  assert float(schedule(0)) == 0.0
  np.testing.assert_allclose(float(schedule(5)), 5e-3, rtol=1e-6)
  np.testing.assert_allclose(float(schedule(10)), 1e-2, rtol=1e-6)
  np.testing.assert_allclose(float(schedule(60)), 1e-3 + 0.5 * (1e-2 - 1e-3), rtol=1e-5)  # half-way cosine
  np.testing.assert_allclose(float(schedule(110)), 1e-3, rtol=1e-6)


def _params():
  return {"vit": {"resblocks_0": {"kernel": jnp.ones((3, 3)), "bias": jnp.ones((3,))},
                  "resblocks_1": {"kernel": jnp.ones((3, 3)), "bias": jnp.ones((3,))}},
          "head": {"kernel": jnp.ones((3, 2))}}


def test_frozen_params_have_no_optimizer_state_and_never_move():
  params = _params()
  mask = {"vit": {"resblocks_0": {"kernel": False, "bias": False},
                  "resblocks_1": {"kernel": True, "bias": True}}, "head": {"kernel": True}}
  tx, _ = optimizer_lib.make_optimizer(_opt_config(weight_decay=0.1, grad_clip_norm=1.0), 20, mask)
  state = tx.init(params)
  state_size = sum(x.size for x in jax.tree.leaves(state) if x.ndim > 0)
  trainable_size = flops.count_params(params, mask)
  assert trainable_size == 9 + 3 + 6
  assert state_size == 2 * trainable_size  # Adam's two moments, for trainable leaves only
  grads = jax.tree.map(lambda p: jnp.full_like(p, 0.3), params)
  p = params
  for _ in range(5):
    updates, state = tx.update(grads, state, p)
    p = optax.apply_updates(p, updates)
  assert np.array_equal(p["vit"]["resblocks_0"]["kernel"], params["vit"]["resblocks_0"]["kernel"])
  assert np.array_equal(p["vit"]["resblocks_0"]["bias"], params["vit"]["resblocks_0"]["bias"])
  assert not np.allclose(p["vit"]["resblocks_1"]["kernel"], 1.0)
  assert not np.allclose(p["head"]["kernel"], 1.0)


def test_gradient_clipping_scales_what_adam_sees():
  params = {"w": jnp.zeros((4,))}
  tx, _ = optimizer_lib.make_optimizer(_opt_config(grad_clip_norm=1.0, warmup_steps=0), 10, {"w": True})
  huge = {"w": jnp.array([3e4, 4e4, 0.0, 0.0])}  # global norm 5e4 -> clipped to [0.6, 0.8, 0, 0]
  _, state = tx.update(huge, tx.init(params), params)
  mus = [s.mu for s in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, optax.ScaleByAdamState))
         if isinstance(s, optax.ScaleByAdamState)]
  assert len(mus) == 1
  np.testing.assert_allclose(mus[0]["w"], 0.1 * np.array([0.6, 0.8, 0.0, 0.0]), rtol=1e-6)  # (1 - b1) * g


def test_weight_decay_only_on_matrices():
  mask = optimizer_lib.weight_decay_mask(_params())
  assert mask["vit"]["resblocks_0"]["kernel"] and not mask["vit"]["resblocks_0"]["bias"]
