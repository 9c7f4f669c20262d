"""The plain-torch ViT: timm key names and shapes, numerics against independent formulas,
position-embedding resampling, and (when timm is installed) equality with timm itself."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from napari_imilia.features.vit import (
    H0_MINI,
    H_OPTIMUS_0,
    PHIKON,
    PHIKON_V2,
    UNI,
    UNI2_H,
    VisionTransformer,
    describe_state_dict,
    expected_shapes,
    load_vit,
    resample_pos_embed,
)
from napari_imilia.features.vit.config import scaled_down
from napari_imilia.features.vit.model import Attention, Block, LayerScale, PackedSwiGLU

FAMILIES = {
    "h0-mini": H0_MINI,
    "h-optimus-0": H_OPTIMUS_0,
    "uni": UNI,
    "uni2-h": UNI2_H,
    "phikon": PHIKON,
    "phikon-v2": PHIKON_V2,
}


def _timm_key_names(depth: int, registers: bool, layer_scale: bool) -> set[str]:
    """The trunk keys of a timm VisionTransformer, written out by hand."""
    names = {"cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias"}
    names |= {"norm.weight", "norm.bias"} | ({"reg_token"} if registers else set())
    for i in range(depth):
        for part in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2"):
            names |= {f"blocks.{i}.{part}.weight", f"blocks.{i}.{part}.bias"}
        if layer_scale:
            names |= {f"blocks.{i}.ls1.gamma", f"blocks.{i}.ls2.gamma"}
    return names


def test_h0_mini_has_timm_keys_shapes_and_parameter_count():
    shapes = expected_shapes(H0_MINI)
    assert set(shapes) == _timm_key_names(12, registers=True, layer_scale=True)
    assert shapes["pos_embed"] == (1, 256, 768)  # patch rows only (timm no_embed_class)
    assert shapes["reg_token"] == (1, 4, 768)
    assert shapes["cls_token"] == (1, 1, 768)
    assert shapes["patch_embed.proj.weight"] == (768, 3, 14, 14)
    assert shapes["blocks.11.mlp.fc1.weight"] == (4096, 768)  # packed SwiGLU: 2 x 2048
    assert shapes["blocks.11.mlp.fc2.weight"] == (768, 2048)
    assert shapes["blocks.0.ls1.gamma"] == (768,)
    d, hidden = 768, 4096
    per_block = 4 * d + (3 * d * d + 3 * d) + (d * d + d) + 2 * d
    per_block += (d * hidden + hidden) + (hidden // 2 * d + d)
    stem = d + 4 * d + 256 * d + (d * 3 * 14 * 14 + d) + 2 * d
    assert sum(s.numel() for s in shapes.values()) == stem + 12 * per_block == 85_739_520


@pytest.mark.parametrize(
    ("name", "pos_shape", "fc1", "params_millions"),
    [
        ("h-optimus-0", (1, 256, 1536), (8192, 1536), 1134.8),
        ("uni", (1, 197, 1024), (4096, 1024), 303.4),
        ("uni2-h", (1, 256, 1536), (8192, 1536), 681.4),
        ("phikon", (1, 197, 768), (3072, 768), 85.8),
        ("phikon-v2", (1, 197, 1024), (4096, 1024), 303.4),
    ],
)
def test_family_shapes(name, pos_shape, fc1, params_millions):
    config = FAMILIES[name]
    shapes = expected_shapes(config)
    assert set(shapes) == _timm_key_names(
        config.depth, config.num_reg_tokens > 0, config.layer_scale_init is not None
    )
    assert tuple(shapes["pos_embed"]) == pos_shape
    assert tuple(shapes["blocks.0.mlp.fc1.weight"]) == fc1
    total = sum(s.numel() for s in shapes.values()) / 1e6
    assert total == pytest.approx(params_millions, abs=0.1)


def test_describe_state_dict_names_the_architecture():
    with torch.device("meta"):
        states = {name: VisionTransformer(config).state_dict() for name, config in FAMILIES.items()}
    for name, config in FAMILIES.items():  # UNI2-h calls its 1536-d ViT "H", shapes say "g"
        found, expected = describe_state_dict(states[name]), config.describe()
        assert found.split(" ", 1)[1] == expected.split(" ", 1)[1]
    assert describe_state_dict(states["uni"]).startswith("ViT-L/16 (1024-d, 24 blocks, 0 register")
    assert describe_state_dict({"weight": torch.zeros(3)}) is None
    # the full-size forward of one 224 px H0-mini tile is in test_extractors.py (one such test)


# ---------------------------------------------------------------- independent formulas


def _layer_norm(x, weight, bias, eps):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


def _naive_attention(x, qkv_w, qkv_b, proj_w, proj_b, heads):
    dim = x.shape[-1]
    head_dim = dim // heads
    q, k, v = (x @ qkv_w.T + qkv_b).split(dim, dim=-1)
    outs = []
    for h in range(heads):
        sl = slice(h * head_dim, (h + 1) * head_dim)
        scores = q[..., sl] @ k[..., sl].transpose(1, 2) / math.sqrt(head_dim)
        outs.append(torch.softmax(scores, dim=-1) @ v[..., sl])
    return torch.cat(outs, dim=-1) @ proj_w.T + proj_b


def _naive_mlp(x, sd, prefix, kind):
    z = x @ sd[f"{prefix}.fc1.weight"].T + sd[f"{prefix}.fc1.bias"]
    if kind == "gelu":
        z = 0.5 * z * (1.0 + torch.erf(z / math.sqrt(2.0)))
    else:
        half = z.shape[-1] // 2
        a, b = z[..., :half], z[..., half:]
        z = a * torch.sigmoid(a) * b
    return z @ sd[f"{prefix}.fc2.weight"].T + sd[f"{prefix}.fc2.bias"]


def naive_vit(sd, config, images):
    """A from-scratch float64 ViT over a timm state dict (unfold patches, explicit softmax)."""
    sd = {k: v.double() for k, v in sd.items()}
    p, d = config.patch_size_px, config.embed_dim
    batch = images.shape[0]
    patches = images.double().unfold(2, p, p).unfold(3, p, p)  # B, 3, h, w, p, p
    grid_h, grid_w = patches.shape[2], patches.shape[3]
    flat = patches.permute(0, 2, 3, 1, 4, 5).reshape(batch, grid_h * grid_w, 3 * p * p)
    x = flat @ sd["patch_embed.proj.weight"].reshape(d, -1).T + sd["patch_embed.proj.bias"]
    prefix = [sd["cls_token"].expand(batch, -1, -1)]
    if config.num_reg_tokens:
        prefix.append(sd["reg_token"].expand(batch, -1, -1))
    if config.pos_embed_includes_prefix:
        x = torch.cat([*prefix, x], dim=1) + sd["pos_embed"]
    else:
        x = torch.cat([*prefix, x + sd["pos_embed"]], dim=1)
    eps = config.norm_eps
    for i in range(config.depth):
        b = f"blocks.{i}"
        y = _layer_norm(x, sd[f"{b}.norm1.weight"], sd[f"{b}.norm1.bias"], eps)
        attn = _naive_attention(
            y,
            sd[f"{b}.attn.qkv.weight"],
            sd[f"{b}.attn.qkv.bias"],
            sd[f"{b}.attn.proj.weight"],
            sd[f"{b}.attn.proj.bias"],
            config.num_heads,
        )
        x = x + attn * sd.get(f"{b}.ls1.gamma", 1.0)
        y = _layer_norm(x, sd[f"{b}.norm2.weight"], sd[f"{b}.norm2.bias"], eps)
        x = x + _naive_mlp(y, sd, f"{b}.mlp", config.mlp_kind) * sd.get(f"{b}.ls2.gamma", 1.0)
    return _layer_norm(x, sd["norm.weight"], sd["norm.bias"], eps)


def test_attention_matches_naive_formula():
    torch.manual_seed(0)
    attn = Attention(24, num_heads=3)
    x = torch.randn(2, 7, 24)
    expected = _naive_attention(
        x, attn.qkv.weight, attn.qkv.bias, attn.proj.weight, attn.proj.bias, heads=3
    )
    torch.testing.assert_close(attn(x), expected, atol=1e-5, rtol=1e-5)


def test_packed_swiglu_gates_the_first_half():
    torch.manual_seed(0)
    mlp = PackedSwiGLU(16, packed_hidden_dim=20)
    assert mlp.fc2.in_features == 10
    x = torch.randn(3, 5, 16)
    sd = {f"m.{k}": v for k, v in mlp.state_dict().items()}
    torch.testing.assert_close(mlp(x), _naive_mlp(x, sd, "m", "swiglu"), atol=1e-5, rtol=1e-5)
    z = mlp.fc1(x)
    wrong = mlp.fc2(z[..., :10] * F.silu(z[..., 10:]))  # activation on the other half
    assert not torch.allclose(mlp(x), wrong, atol=1e-3)


def test_layer_scale_and_block_match_naive_formula():
    torch.manual_seed(0)
    config = scaled_down(H0_MINI, embed_dim=16, depth=1, num_heads=2)
    block = Block(config)
    with torch.no_grad():
        for param in block.parameters():
            param.normal_(0, 0.3)
    ls = LayerScale(4, 0.5)
    torch.testing.assert_close(ls(torch.ones(2, 4)), torch.full((2, 4), 0.5))
    x = torch.randn(2, 5, 16)
    sd = {f"blocks.0.{k}": v for k, v in block.state_dict().items()}
    b = "blocks.0"
    y = _layer_norm(x, sd[f"{b}.norm1.weight"], sd[f"{b}.norm1.bias"], config.norm_eps)
    qkv_w, qkv_b = sd[f"{b}.attn.qkv.weight"], sd[f"{b}.attn.qkv.bias"]
    proj_w, proj_b = sd[f"{b}.attn.proj.weight"], sd[f"{b}.attn.proj.bias"]
    attn = _naive_attention(y, qkv_w, qkv_b, proj_w, proj_b, heads=2)
    x1 = x + attn * sd[f"{b}.ls1.gamma"]
    y = _layer_norm(x1, sd[f"{b}.norm2.weight"], sd[f"{b}.norm2.bias"], config.norm_eps)
    expected = x1 + _naive_mlp(y, sd, f"{b}.mlp", "swiglu") * sd[f"{b}.ls2.gamma"]
    torch.testing.assert_close(block(x), expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_whole_model_matches_naive_vit(family):
    config = scaled_down(FAMILIES[family])
    model = VisionTransformer(config).init_random(seed=3).eval()
    images = torch.randn(2, 3, config.img_size_px, config.img_size_px)
    tokens, grid = model.forward_features(images)
    assert grid == (config.grid_size, config.grid_size)
    expected = naive_vit(model.state_dict(), config, images)
    torch.testing.assert_close(tokens.double(), expected, atol=2e-4, rtol=2e-4)
    out = model(images)
    n_prefix = config.num_prefix_tokens
    torch.testing.assert_close(out.cls_token, tokens[:, 0])
    torch.testing.assert_close(out.registers, tokens[:, 1:n_prefix])
    torch.testing.assert_close(
        out.patch_tokens.reshape(2, -1, config.embed_dim), tokens[:, n_prefix:]
    )


# ---------------------------------------------------------------- position embeddings


def test_pos_embed_resampling_is_identity_at_native_size():
    pos = torch.randn(1, 16, 8)
    assert resample_pos_embed(pos, (4, 4), (4, 4)) is pos
    config = scaled_down(UNI)
    model = VisionTransformer(config).init_random(seed=5).eval()
    images = torch.randn(1, 3, config.img_size_px, config.img_size_px)
    # the native forward equals the from-scratch reference, which never resamples
    expected = naive_vit(model.state_dict(), config, images)
    got = model.forward_features(images)[0].double()
    torch.testing.assert_close(got, expected, atol=2e-4, rtol=2e-4)


def test_pos_embed_resampling_for_other_sizes():
    ramp = torch.arange(4.0).repeat(4).reshape(1, 16, 1)  # value = column index
    up = resample_pos_embed(ramp, (4, 4), (8, 8)).reshape(8, 8)
    assert torch.all(up[:, 1:] >= up[:, :-1] - 1e-6)  # still increasing along columns
    torch.testing.assert_close(up[0], up[5])  # rows stay identical
    const = resample_pos_embed(torch.full((1, 16, 3), 2.5), (4, 4), (6, 3))
    torch.testing.assert_close(const, torch.full((1, 18, 3), 2.5))
    for family in ("h0-mini", "uni"):
        config = scaled_down(FAMILIES[family])
        model = VisionTransformer(config).init_random(seed=2).eval()
        p = config.patch_size_px
        out = model(torch.randn(1, 3, 5 * p + 3, 3 * p))  # floors like a stride-p conv
        assert out.patch_tokens.shape == (1, 5, 3, config.embed_dim)
        assert torch.isfinite(out.patch_tokens).all()


def test_load_vit_round_trip_is_exact(tmp_path):
    from safetensors.torch import save_file

    config = scaled_down(H0_MINI)
    model = VisionTransformer(config).init_random(seed=9).eval()
    save_file(model.state_dict(), str(tmp_path / "w.safetensors"))
    loaded = load_vit(tmp_path / "w.safetensors", config, model_name="tiny")
    images = torch.randn(2, 3, 56, 56)
    with torch.inference_mode():
        got, expected = loaded(images).patch_tokens, model(images).patch_tokens
    torch.testing.assert_close(got, expected, atol=0, rtol=0)


# ---------------------------------------------------------------- against timm itself


@pytest.mark.parametrize("family", ["h0-mini", "uni"])
def test_matches_timm(family, tmp_path):
    """Our trunk equals timm's forward_features on the same random weights (any device)."""
    timm = pytest.importorskip("timm")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if family == "h0-mini":
        ref = timm.create_model(
            "vit_base_patch14_reg4_dinov2",
            pretrained=False,
            img_size=224,
            init_values=1e-5,
            mlp_ratio=2.66667 * 2,
            mlp_layer=timm.layers.SwiGLUPacked,
            act_layer=torch.nn.SiLU,
            num_classes=0,
            dynamic_img_size=True,
        )
        config = H0_MINI
    else:
        ref = timm.create_model(
            "vit_large_patch16_224",
            pretrained=False,
            img_size=224,
            init_values=1e-5,
            num_classes=0,
            dynamic_img_size=True,
        )
        config = UNI
    ours = VisionTransformer(config).init_random(seed=4)
    ref.load_state_dict(ours.state_dict(), strict=True)  # the very same key set and shapes
    from safetensors.torch import save_file

    save_file(ref.state_dict(), str(tmp_path / "timm.safetensors"))
    ours = load_vit(tmp_path / "timm.safetensors", config, model_name=family)
    ref, ours = ref.to(device).eval(), ours.to(device).eval()
    generator = torch.Generator().manual_seed(0)
    for grid in (config.grid_size, 20):  # native size, then a resampled position grid
        side = grid * config.patch_size_px
        images = torch.randn(1, 3, side, side, generator=generator).to(device)
        with torch.inference_mode():
            expected = ref.forward_features(images).float().cpu()
            got = ours.forward_features(images)[0].float().cpu()
        np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-4, rtol=1e-4)
