"""Hugging Face checkpoints -> Flax: parity with transformers.CLIPVisionModel and key/shape validation."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from clipmg_jax import weights
from clipmg_jax.models import vit

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
safetensors_torch = pytest.importorskip("safetensors.torch")

TOL = 1e-4
SMALL = dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=256, patch_size=16,
             image_size=64)
B16 = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072, patch_size=16,
           image_size=224)


def _perturb(module, seed):
  """Noise on every parameter, so LayerNorm scales/biases and zero-initialised biases are not trivially 1 or 0."""
  gen = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for p in module.parameters():
      p.add_(0.02 * torch.randn(p.shape, generator=gen))
  return module.eval()


def _hf_model(cls=None, seed=0, **config):
  torch.manual_seed(seed)
  cls = cls or transformers.CLIPVisionModel
  if cls is transformers.CLIPModel:
    cfg = transformers.CLIPConfig(
        vision_config=config,
        text_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64),
        projection_dim=24)
  else:
    cfg = transformers.CLIPVisionConfig(**config, projection_dim=24)
  return _perturb(cls(cfg), seed)


def _images(n, size, seed=0):
  return np.random.RandomState(seed).randn(n, size, size, 3).astype(np.float32)


def _torch_forward(model, images, **kwargs):
  x = torch.from_numpy(images).permute(0, 3, 1, 2)
  with torch.no_grad():
    if isinstance(model, transformers.CLIPModel):
      out = model.vision_model(pixel_values=x, **kwargs)
      return out.last_hidden_state.numpy(), out.pooler_output.numpy(), model.visual_projection(
          out.pooler_output).numpy()
    out = model(pixel_values=x, **kwargs)
    embeds = out.image_embeds.numpy() if hasattr(out, "image_embeds") else None
    if embeds is not None:
      return out.last_hidden_state.numpy(), model.vision_model.post_layernorm(out.last_hidden_state[:, 0]).numpy(), embeds
    return out.last_hidden_state.numpy(), out.pooler_output.numpy(), None


def _assert_parity(path, torch_model, images, **torch_kwargs):
  model, params = weights.load_clip_vision(path)
  out = jax.jit(model.apply)({"params": params}, images)
  hidden, pooled, embeds = _torch_forward(torch_model, images, **torch_kwargs)
  assert out["last_hidden_state"].shape == hidden.shape
  assert np.abs(np.asarray(out["last_hidden_state"]) - hidden).max() <= TOL
  assert np.abs(np.asarray(out["pooled"]) - pooled).max() <= TOL
  if embeds is not None:
    assert np.abs(np.asarray(out["embedding"]) - embeds).max() <= TOL
  else:
    assert "embedding" not in out
  return model, params


def test_small_parity_directory(tmp_path):
  torch_model = _hf_model(**SMALL)
  torch_model.save_pretrained(tmp_path)
  model, _ = _assert_parity(tmp_path, torch_model, _images(3, 64))
  assert (model.width, model.layers, model.heads, model.patch_size, model.image_size, model.mlp_dim,
          model.proj_dim) == (128, 2, 2, 16, 64, 256, None)


@pytest.mark.slow
def test_b16_parity_directory(tmp_path):
  torch_model = _hf_model(**B16)
  torch_model.save_pretrained(tmp_path)
  model, _ = _assert_parity(tmp_path, torch_model, _images(2, 224))
  assert dict(width=model.width, layers=model.layers, heads=model.heads, patch_size=model.patch_size,
              image_size=model.image_size, mlp_dim=model.mlp_dim) == {
                  k: v for k, v in vit.VIT_CONFIGS["B/16"].items() if k != "proj_dim"}


def test_weights_file_alone_and_pytorch_bin(tmp_path):
  """Without config.json the size comes from the shapes (heads = width // 64); torch.save files work too."""
  torch_model = _hf_model(**SMALL)
  torch_model.save_pretrained(tmp_path / "hf")
  _assert_parity(tmp_path / "hf" / "model.safetensors", torch_model, _images(2, 64))
  os.makedirs(tmp_path / "bin")
  torch.save(torch_model.state_dict(), tmp_path / "bin" / "pytorch_model.bin")
  (tmp_path / "bin" / "config.json").write_text((tmp_path / "hf" / "config.json").read_text())
  _assert_parity(tmp_path / "bin", torch_model, _images(2, 64))


def test_with_projection_prefixed_keys(tmp_path):
  torch_model = _hf_model(transformers.CLIPVisionModelWithProjection, **SMALL)
  torch_model.save_pretrained(tmp_path)
  keys = safetensors_torch.load_file(tmp_path / "model.safetensors").keys()
  assert all(k.startswith("vision_model.") or k == "visual_projection.weight" for k in keys)
  model, params = _assert_parity(tmp_path, torch_model, _images(2, 64))
  assert model.proj_dim == 24 and params["proj"].shape == (128, 24)


def test_full_clip_model_ignores_text_tower(tmp_path):
  torch_model = _hf_model(transformers.CLIPModel, **SMALL)
  torch_model.save_pretrained(tmp_path)
  _assert_parity(tmp_path, torch_model, _images(2, 64))
  ported = weights.port_checkpoint(tmp_path)
  ignored = [key for key, _ in ported.ignored]
  assert any(k.startswith("text_model.") for k in ignored) and "logit_scale" in ignored
  assert "text_projection.weight" in ignored


def test_interpolated_resolution_matches_hf(tmp_path):
  torch_model = _hf_model(**SMALL)
  torch_model.save_pretrained(tmp_path)
  images = np.random.RandomState(1).randn(2, 96, 80, 3).astype(np.float32)
  _assert_parity(tmp_path, torch_model, images, interpolate_pos_encoding=True)


def _rewrite(tmp_path, edit):
  torch_model = _hf_model(**SMALL)
  torch_model.save_pretrained(tmp_path)
  state = safetensors_torch.load_file(tmp_path / "model.safetensors")
  edit(state)
  safetensors_torch.save_file(state, tmp_path / "model.safetensors")


def test_wrong_shape_names_key_and_both_shapes(tmp_path):
  key = "encoder.layers.1.self_attn.k_proj.weight"
  _rewrite(tmp_path, lambda s: s.__setitem__(key, torch.zeros(128, 64)))
  with pytest.raises(weights.CheckpointError) as e:
    weights.load_clip_vision(tmp_path)
  assert f"'{key}'" in str(e.value) and "(128, 64)" in str(e.value) and "(128, 128)" in str(e.value)


def test_missing_and_unexpected_keys_are_named(tmp_path):
  def edit(state):
    del state["encoder.layers.0.mlp.fc2.bias"]
    state["encoder.layers.0.extra.weight"] = torch.zeros(3)

  _rewrite(tmp_path, edit)
  with pytest.raises(weights.CheckpointError) as e:
    weights.load_clip_vision(tmp_path)
  message = str(e.value)
  assert "missing key 'encoder.layers.0.mlp.fc2.bias'" in message and "(128,)" in message
  assert "unexpected key 'encoder.layers.0.extra.weight'" in message


def test_missing_block_is_named(tmp_path):
  _rewrite(tmp_path, lambda s: [s.pop(k) for k in list(s) if k.startswith("encoder.layers.1.")])
  with pytest.raises(weights.CheckpointError, match=r"missing key 'encoder\.layers\.1\.layer_norm1\.weight'"):
    weights.load_clip_vision(tmp_path)


def test_unsupported_activation_is_rejected(tmp_path):
  torch_model = _hf_model(**SMALL)
  torch_model.save_pretrained(tmp_path)
  config = json.loads((tmp_path / "config.json").read_text())
  config["hidden_act"] = "gelu"
  (tmp_path / "config.json").write_text(json.dumps(config))
  with pytest.raises(weights.CheckpointError, match="hidden_act"):
    weights.load_clip_vision(tmp_path)


def test_port_round_trip_without_torch(tmp_path):
  torch_model = _hf_model(transformers.CLIPVisionModelWithProjection, **SMALL)
  torch_model.save_pretrained(tmp_path / "hf")
  result = weights.port_clip(tmp_path / "hf", tmp_path / "ported")
  assert result.layout == "hf"
  _, params = weights.load_clip_vision(tmp_path / "ported")
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(result.params)):
    np.testing.assert_array_equal(a, b)
  # Loading the ported tree must not need torch: run it where importing torch fails.
  script = (
      "import sys; sys.modules['torch'] = None; sys.modules['transformers'] = None\n"
      "import numpy as np\n"
      "from clipmg_jax.weights import load_clip_vision\n"
      f"model, params = load_clip_vision({str(tmp_path / 'ported')!r})\n"
      "out = model.apply({'params': params}, np.zeros((1, 64, 64, 3), np.float32))\n"
      "print(out['embedding'].shape)\n")
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
  done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=False)
  assert done.returncode == 0, done.stderr
  assert "(1, 24)" in done.stdout


def test_ported_tree_is_validated(tmp_path):
  torch_model = _hf_model(**SMALL)
  torch_model.save_pretrained(tmp_path / "hf")
  result = weights.port_checkpoint(tmp_path / "hf")
  result.params["resblocks_1"]["mlp"]["c_fc"]["bias"] = np.zeros(7, np.float32)
  weights.save_ported(tmp_path / "ported", result.config, result.params)
  with pytest.raises(weights.CheckpointError, match=r"resblocks_1.*c_fc.*bias.*\(7,\).*\(256,\)"):
    weights.load_clip_vision(tmp_path / "ported")


def test_port_clip_command(tmp_path):
  torch_model = _hf_model(**SMALL)
  torch_model.save_pretrained(tmp_path / "hf")
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""), JAX_PLATFORMS="cpu")
  command = [sys.executable, os.path.join(root, "data_prep", "port_clip.py")]
  done = subprocess.run(command + ["--help"], capture_output=True, text=True, env=env, check=False)
  assert done.returncode == 0 and "--checkpoint" in done.stdout
  done = subprocess.run(command + [f"--checkpoint={tmp_path / 'hf'}", f"--out={tmp_path / 'out'}"],
                        capture_output=True, text=True, env=env, check=False)
  assert done.returncode == 0, done.stderr
  _assert_parity(tmp_path / "out", torch_model, _images(2, 64))
