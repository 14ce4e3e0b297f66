"""OpenAI / open_clip checkpoints -> Flax: parity with an independent PyTorch reference and key validation.

The reference below follows OpenAI's `clip/model.py` VisionTransformer: its
attention is torch.nn.MultiheadAttention, whose packed in_proj_weight
(3D, D) is the layout OpenAI checkpoints store.
"""

import collections
import warnings

import jax
import numpy as np
import pytest

from clipmg_jax import weights

torch = pytest.importorskip("torch")
nn = torch.nn

TOL = 1e-4
SMALL = dict(width=128, layers=2, patch_size=16, image_size=64, output_dim=24)  # heads = width // 64
B16 = dict(width=768, layers=12, patch_size=16, image_size=224, output_dim=512)


class QuickGELU(nn.Module):

  def forward(self, x):
    return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):

  def __init__(self, width, heads):
    super().__init__()
    self.attn = nn.MultiheadAttention(width, heads)
    self.ln_1 = nn.LayerNorm(width)
    self.mlp = nn.Sequential(collections.OrderedDict([
        ("c_fc", nn.Linear(width, width * 4)), ("gelu", QuickGELU()), ("c_proj", nn.Linear(width * 4, width))]))
    self.ln_2 = nn.LayerNorm(width)

  def forward(self, x):  # (T, B, D), sequence first as in OpenAI's code
    y = self.ln_1(x)
    x = x + self.attn(y, y, y, need_weights=False)[0]
    return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):

  def __init__(self, width, layers, heads):
    super().__init__()
    self.resblocks = nn.Sequential(*[ResidualAttentionBlock(width, heads) for _ in range(layers)])

  def forward(self, x):
    return self.resblocks(x)


class VisualTransformer(nn.Module):

  def __init__(self, width, layers, patch_size, image_size, output_dim):
    super().__init__()
    scale = width**-0.5
    self.conv1 = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size, bias=False)
    self.class_embedding = nn.Parameter(scale * torch.randn(width))
    self.positional_embedding = nn.Parameter(scale * torch.randn((image_size // patch_size)**2 + 1, width))
    self.ln_pre = nn.LayerNorm(width)
    self.transformer = Transformer(width, layers, width // 64)
    self.ln_post = nn.LayerNorm(width)
    self.proj = nn.Parameter(scale * torch.randn(width, output_dim))

  def forward(self, x):  # (B, 3, H, W) -> last hidden (B, T, D), pooled (B, D), embedding (B, E)
    x = self.conv1(x).flatten(2).permute(0, 2, 1)
    cls = self.class_embedding.to(x.dtype) + torch.zeros(x.shape[0], 1, x.shape[-1], dtype=x.dtype)
    x = torch.cat([cls, x], dim=1) + self.positional_embedding
    x = self.ln_pre(x)
    x = self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
    pooled = self.ln_post(x[:, 0])
    return x, pooled, pooled @ self.proj


class Clip(nn.Module):
  """The visual tower plus a stand-in text tower with OpenAI's top-level key names."""

  def __init__(self, **visual):
    super().__init__()
    self.visual = VisualTransformer(**visual)
    self.transformer = Transformer(32, 1, 2)
    self.token_embedding = nn.Embedding(50, 32)
    self.positional_embedding = nn.Parameter(torch.randn(7, 32))
    self.ln_final = nn.LayerNorm(32)
    self.text_projection = nn.Parameter(torch.randn(32, 24))
    self.logit_scale = nn.Parameter(torch.ones([]))

  def forward(self, x):
    return self.visual(x)


def _reference(seed=0, **config):
  torch.manual_seed(seed)
  model = Clip(**config)
  gen = torch.Generator().manual_seed(seed + 1)
  with torch.no_grad():
    for p in model.parameters():  # LayerNorms and biases away from 1 / 0, so a swap would show
      p.add_(0.02 * torch.randn(p.shape, generator=gen))
  return model.eval()


def _images(n, size, seed=0):
  return np.random.RandomState(seed).randn(n, size, size, 3).astype(np.float32)


def _assert_parity(path, reference, images):
  model, params = weights.load_clip_vision(path)
  out = jax.jit(model.apply)({"params": params}, images)
  with torch.no_grad():
    hidden, pooled, embedding = (t.numpy() for t in reference.visual(torch.from_numpy(images).permute(0, 3, 1, 2)))
  assert out["last_hidden_state"].shape == hidden.shape
  assert np.abs(np.asarray(out["last_hidden_state"]) - hidden).max() <= TOL
  assert np.abs(np.asarray(out["pooled"]) - pooled).max() <= TOL
  assert np.abs(np.asarray(out["embedding"]) - embedding).max() <= TOL
  return model


def _save_torchscript(reference, size, path):
  example = torch.zeros(1, 3, size, size)
  with torch.no_grad(), warnings.catch_warnings():  # tracing MultiheadAttention warns about its shape checks
    warnings.simplefilter("ignore")
    torch.jit.save(torch.jit.trace(reference, example, check_trace=False), str(path))


def test_small_parity_torch_save_and_torchscript(tmp_path):
  reference = _reference(**SMALL)
  torch.save(reference.state_dict(), tmp_path / "clip.pt")
  model = _assert_parity(tmp_path / "clip.pt", reference, _images(3, 64))
  assert (model.width, model.layers, model.heads, model.patch_size, model.image_size, model.mlp_dim,
          model.proj_dim) == (128, 2, 2, 16, 64, 512, 24)
  _save_torchscript(reference, 64, tmp_path / "clip.jit")
  _assert_parity(tmp_path / "clip.jit", reference, _images(3, 64))
  ignored = {key for key, _ in weights.port_checkpoint(tmp_path / "clip.pt").ignored}
  assert {"token_embedding.weight", "positional_embedding", "logit_scale", "text_projection"} <= ignored


@pytest.mark.slow
def test_b16_parity_torch_save_and_torchscript(tmp_path):
  reference = _reference(**B16)
  images = _images(2, 224)
  torch.save(reference.state_dict(), tmp_path / "clip.pt")
  model = _assert_parity(tmp_path / "clip.pt", reference, images)
  assert (model.width, model.layers, model.heads, model.mlp_dim) == (768, 12, 12, 3072)
  (tmp_path / "clip.pt").unlink()
  _save_torchscript(reference, 224, tmp_path / "clip.jit")
  _assert_parity(tmp_path / "clip.jit", reference, images)


def test_visual_tower_alone_wrapped_and_half_precision(tmp_path):
  reference = _reference(**SMALL)
  torch.save(reference.visual.state_dict(), tmp_path / "visual.pt")  # no "visual." prefix
  _assert_parity(tmp_path / "visual.pt", reference, _images(2, 64))
  torch.save({"epoch": 3, "state_dict": reference.state_dict()}, tmp_path / "wrapped.pt")
  _assert_parity(tmp_path / "wrapped.pt", reference, _images(2, 64))
  # fp16 checkpoints (as OpenAI ships them) are widened exactly to float32.
  torch.save({k: v.half() for k, v in reference.state_dict().items()}, tmp_path / "half.pt")
  params = weights.port_checkpoint(tmp_path / "half.pt").params
  want = reference.visual.transformer.resblocks[1].attn.in_proj_weight.detach().half().float().numpy()
  np.testing.assert_array_equal(params["resblocks_1"]["attn"]["value"]["kernel"], want[256:].T)
  assert params["resblocks_1"]["attn"]["value"]["kernel"].dtype == np.float32


def test_wrong_in_proj_shape_names_key(tmp_path):
  state = _reference(**SMALL).state_dict()
  state["visual.transformer.resblocks.1.attn.in_proj_weight"] = torch.zeros(128, 128)
  torch.save(state, tmp_path / "bad.pt")
  with pytest.raises(weights.CheckpointError) as e:
    weights.load_clip_vision(tmp_path / "bad.pt")
  message = str(e.value)
  assert "'transformer.resblocks.1.attn.in_proj_weight'" in message
  assert "(128, 128)" in message and "(384, 128)" in message


def test_missing_and_unexpected_keys_are_named(tmp_path):
  state = _reference(**SMALL).state_dict()
  del state["visual.ln_post.bias"]
  state["visual.transformer.resblocks.0.ls_1.gamma"] = torch.zeros(128)
  torch.save(state, tmp_path / "bad.pt")
  with pytest.raises(weights.CheckpointError) as e:
    weights.load_clip_vision(tmp_path / "bad.pt")
  assert "missing key 'ln_post.bias' (expected shape (128,))" in str(e.value)
  assert "unexpected key 'transformer.resblocks.0.ls_1.gamma'" in str(e.value)


def test_unknown_layout_is_rejected(tmp_path):
  torch.save({"encoder.weight": torch.zeros(3)}, tmp_path / "other.pt")
  with pytest.raises(weights.CheckpointError, match="neither a Hugging Face"):
    weights.load_clip_vision(tmp_path / "other.pt")
