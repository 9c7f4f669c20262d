"""Extractor registry, ViT weight loading (timm / DINOv2 / Hugging Face files), refusals of bad
checkpoints, and the weight-free imilia-stain-stats descriptor."""

from __future__ import annotations

import contextlib
import dataclasses
import re

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from napari_imilia.errors import CheckpointError, ImiliaError
from napari_imilia.features.extractors import (
    FEATURE_NAMES,
    FOUNDATION_SPECS,
    ViTExtractor,
    create_extractor,
    list_extractors,
    register_extractor,
    unregister_extractor,
)
from napari_imilia.features.vit import H0_MINI, VisionTransformer
from napari_imilia.features.vit.config import scaled_down

SPECS = {spec.name: spec for spec in FOUNDATION_SPECS}


def tiny_spec(name: str) -> tuple:
    """The registered spec of ``name`` with a scaled-down ViT (same options, tiny tensors)."""
    spec = SPECS[name]
    return dataclasses.replace(spec, vit=scaled_down(spec.vit))


def random_tiles(n: int, side: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, side, side, 3), dtype=np.uint8)


def reference_outputs(model: VisionTransformer, spec, tiles: np.ndarray):
    """Class token and patch tokens computed directly from the model (no extractor code)."""
    x = torch.from_numpy(tiles).permute(0, 3, 1, 2).float() / 255.0
    x = (x - torch.tensor(spec.mean).view(1, 3, 1, 1)) / torch.tensor(spec.std).view(1, 3, 1, 1)
    with torch.inference_mode():
        out = model.eval()(x)
    return out.cls_token.numpy(), out.patch_tokens.numpy()


# ------------------------------------------------- key layouts written out independently


def to_hf_vit(sd: dict[str, torch.Tensor], depth: int, dinov2: bool) -> dict[str, torch.Tensor]:
    """Our (timm) keys written as a Hugging Face ViTModel / Dinov2Model checkpoint."""
    out = {
        "embeddings.cls_token": sd["cls_token"],
        "embeddings.position_embeddings": sd["pos_embed"],
        "embeddings.patch_embeddings.projection.weight": sd["patch_embed.proj.weight"],
        "embeddings.patch_embeddings.projection.bias": sd["patch_embed.proj.bias"],
        "layernorm.weight": sd["norm.weight"],
        "layernorm.bias": sd["norm.bias"],
    }
    if dinov2:
        out["embeddings.mask_token"] = torch.zeros(1, sd["cls_token"].shape[-1])
    else:
        out["pooler.dense.weight"] = torch.eye(sd["cls_token"].shape[-1])
        out["pooler.dense.bias"] = torch.zeros(sd["cls_token"].shape[-1])
    for i in range(depth):
        hf, b = f"encoder.layer.{i}", f"blocks.{i}"
        for kind in ("weight", "bias"):
            q, k, v = sd[f"{b}.attn.qkv.{kind}"].chunk(3, dim=0)
            out[f"{hf}.attention.attention.query.{kind}"] = q
            out[f"{hf}.attention.attention.key.{kind}"] = k
            out[f"{hf}.attention.attention.value.{kind}"] = v
            out[f"{hf}.attention.output.dense.{kind}"] = sd[f"{b}.attn.proj.{kind}"]
            norm1, norm2 = ("norm1", "norm2") if dinov2 else ("layernorm_before", "layernorm_after")
            out[f"{hf}.{norm1}.{kind}"] = sd[f"{b}.norm1.{kind}"]
            out[f"{hf}.{norm2}.{kind}"] = sd[f"{b}.norm2.{kind}"]
            if dinov2:
                out[f"{hf}.mlp.fc1.{kind}"] = sd[f"{b}.mlp.fc1.{kind}"]
                out[f"{hf}.mlp.fc2.{kind}"] = sd[f"{b}.mlp.fc2.{kind}"]
            else:
                out[f"{hf}.intermediate.dense.{kind}"] = sd[f"{b}.mlp.fc1.{kind}"]
                out[f"{hf}.output.dense.{kind}"] = sd[f"{b}.mlp.fc2.{kind}"]
        if dinov2:
            out[f"{hf}.layer_scale1.lambda1"] = sd[f"{b}.ls1.gamma"]
            out[f"{hf}.layer_scale2.lambda1"] = sd[f"{b}.ls2.gamma"]
    return out


def to_dinov2_original(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our keys as a facebookresearch/dinov2 checkpoint with registers (class row in pos)."""
    out = {}
    class_row = torch.randn(1, 1, sd["cls_token"].shape[-1])
    for key, value in sd.items():
        if key == "reg_token":
            out["register_tokens"] = value
        elif key == "cls_token":
            out[key] = value - class_row
        elif key == "pos_embed":
            out[key] = torch.cat([class_row, value], dim=1)
        else:
            out[re.sub(r"\.mlp\.fc1\.", ".mlp.w12.", re.sub(r"\.mlp\.fc2\.", ".mlp.w3.", key))] = (
                value
            )
    out["mask_token"] = torch.zeros(1, sd["cls_token"].shape[-1])
    return out


# ------------------------------------------------------------------- registry


def test_registry_lists_every_extractor():
    names = [name for name, _ in list_extractors()]
    assert names[:6] == ["h0-mini", "h-optimus-0", "uni", "uni2-h", "phikon", "phikon-v2"]
    assert "imilia-stain-stats" in names
    assert all(description for _, description in list_extractors())
    with pytest.raises(ImiliaError, match=r"unknown extractor 'dino'.*h0-mini"):
        create_extractor("dino")


@pytest.mark.parametrize("name", sorted(SPECS))
def test_vit_extractor_without_weights_says_where_to_get_them(name):
    with pytest.raises(CheckpointError) as info:
        create_extractor(name, device="cpu")
    message = str(info.value)
    assert "--extractor-weights" in message
    assert "huggingface.co" in message and "never downloaded" in message
    # the weight-free way out does not suggest pairing another extractor with a real model
    assert f"trained on {name} features needs {name} itself" in message
    assert "leave out --model and --extractor" in message


def test_spec_facts():
    h0 = SPECS["h0-mini"]
    assert (h0.vit.embed_dim, h0.vit.img_size_px, h0.vit.patch_size_px) == (768, 224, 14)
    assert h0.target_mpp == 0.5
    assert h0.mean == (0.707223, 0.578729, 0.703617)
    assert h0.std == (0.211883, 0.230117, 0.177517)
    assert SPECS["uni"].mean == (0.485, 0.456, 0.406)
    assert {s.name: s.vit.embed_dim for s in FOUNDATION_SPECS} == {
        "h0-mini": 768,
        "h-optimus-0": 1536,
        "uni": 1024,
        "uni2-h": 1536,
        "phikon": 768,
        "phikon-v2": 1024,
    }


# ------------------------------------------------------------ loading weight files


@pytest.mark.parametrize("name", ["h0-mini", "h-optimus-0", "uni", "uni2-h"])
def test_timm_weights_load_from_safetensors_and_bin_identically(name, tmp_path):
    spec = tiny_spec(name)
    model = VisionTransformer(spec.vit).init_random(seed=11)
    sd = model.state_dict()
    save_file(sd, str(tmp_path / "w.safetensors"))
    wrapped = {f"module.model.{k}": v for k, v in sd.items()}  # DDP + wrapper prefixes
    wrapped["module.model.head.weight"] = torch.zeros(2, spec.vit.embed_dim)  # a classifier
    torch.save({"state_dict": wrapped, "epoch": 3}, tmp_path / "w.bin")
    tiles = random_tiles(3, spec.vit.img_size_px)
    cls_ref, patches_ref = reference_outputs(model, spec, tiles)
    results = []
    for file in ("w.safetensors", "w.bin"):
        extractor = ViTExtractor(spec, tmp_path / file, device="cpu", batch_size=2)
        assert extractor.requires_weights and extractor.dim == spec.vit.embed_dim
        emb, patches = extractor.embed(tiles), extractor.patch_tokens(tiles)
        both = extractor.embed_with_patch_tokens(tiles)
        np.testing.assert_array_equal(both[0], emb)
        np.testing.assert_array_equal(both[1], patches)
        assert emb.dtype == np.float32 and emb.shape == (3, spec.vit.embed_dim)
        grid = spec.vit.grid_size
        assert patches.shape == (3, grid, grid, spec.vit.embed_dim)
        np.testing.assert_allclose(emb, cls_ref, atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(patches, patches_ref, atol=1e-5, rtol=1e-5)
        results.append(emb)
    np.testing.assert_array_equal(results[0], results[1])


@pytest.mark.parametrize(("name", "dinov2"), [("phikon", False), ("phikon-v2", True)])
def test_hugging_face_weights_load(name, dinov2, tmp_path):
    spec = tiny_spec(name)
    model = VisionTransformer(spec.vit).init_random(seed=12)
    hf = to_hf_vit(model.state_dict(), spec.vit.depth, dinov2=dinov2)
    save_file(hf, str(tmp_path / "model.safetensors"))
    extractor = ViTExtractor(spec, tmp_path / "model.safetensors", device="cpu")
    tiles = random_tiles(2, spec.vit.img_size_px, seed=1)
    cls_ref, patches_ref = reference_outputs(model, spec, tiles)
    np.testing.assert_allclose(extractor.embed(tiles), cls_ref, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(extractor.patch_tokens(tiles), patches_ref, atol=1e-5, rtol=1e-5)
    del hf[f"encoder.layer.{spec.vit.depth - 1}.attention.attention.key.bias"]
    save_file(hf, str(tmp_path / "broken.safetensors"))
    with pytest.raises(CheckpointError, match=r"broken\.safetensors.*missing keys"):
        ViTExtractor(spec, tmp_path / "broken.safetensors", device="cpu")


def test_hugging_face_position_grid_is_resampled_but_timm_grid_is_not(tmp_path):
    from napari_imilia.features.vit import resample_pos_embed

    spec = tiny_spec("phikon-v2")  # 4 x 4 patch grid
    model = VisionTransformer(spec.vit).init_random(seed=16)
    sd = model.state_dict()
    saved_grid = torch.randn(1, 36, spec.vit.embed_dim)  # saved for a 6 x 6 grid
    sd["pos_embed"] = torch.cat([sd["pos_embed"][:, :1], saved_grid], dim=1)
    save_file(to_hf_vit(sd, spec.vit.depth, dinov2=True), str(tmp_path / "hf.safetensors"))
    extractor = ViTExtractor(spec, tmp_path / "hf.safetensors", device="cpu")
    with torch.no_grad():
        model.pos_embed[:, 1:] = resample_pos_embed(saved_grid, (6, 6), (4, 4))
    tiles = random_tiles(2, spec.vit.img_size_px, seed=6)
    np.testing.assert_allclose(
        extractor.embed(tiles), reference_outputs(model, spec, tiles)[0], atol=1e-5, rtol=1e-5
    )
    save_file(sd, str(tmp_path / "timm.safetensors"))
    with pytest.raises(CheckpointError, match=r"pos_embed \(1, 37, 32\) vs expected \(1, 17, 32\)"):
        ViTExtractor(spec, tmp_path / "timm.safetensors", device="cpu")


def test_dinov2_original_layout_loads(tmp_path):
    spec = tiny_spec("h0-mini")
    model = VisionTransformer(spec.vit).init_random(seed=13)
    save_file(to_dinov2_original(model.state_dict()), str(tmp_path / "dinov2.safetensors"))
    extractor = ViTExtractor(spec, tmp_path / "dinov2.safetensors", device="cpu")
    tiles = random_tiles(2, spec.vit.img_size_px, seed=2)
    np.testing.assert_allclose(
        extractor.embed(tiles), reference_outputs(model, spec, tiles)[0], atol=1e-5, rtol=1e-5
    )


def test_create_extractor_loads_full_size_h0_mini(tmp_path):
    model = VisionTransformer(H0_MINI)  # torch default init: only shapes matter here
    save_file(model.state_dict(), str(tmp_path / "h0-mini.safetensors"))
    extractor = create_extractor("H0_mini", tmp_path / "h0-mini.safetensors", device="cpu")
    assert (extractor.name, extractor.dim, extractor.tile_px) == ("h0-mini", 768, 224)
    assert len(extractor.weights_sha256) == 64
    embedding, tokens = extractor.embed_with_patch_tokens(random_tiles(1, 224, seed=3))
    assert embedding.shape == (1, 768) and tokens.shape == (1, 16, 16, 768)
    assert np.isfinite(embedding).all() and np.isfinite(tokens).all()


def test_registered_tiny_spec_goes_through_create_extractor(tmp_path):
    spec = dataclasses.replace(tiny_spec("uni"), name="tiny-uni")
    model = VisionTransformer(spec.vit).init_random(seed=15)
    save_file(model.state_dict(), str(tmp_path / "w.safetensors"))
    register_extractor(
        "tiny-uni", "test", lambda w, d, b: ViTExtractor(spec, w, device=d, batch_size=b)
    )
    try:
        extractor = create_extractor("tiny-uni", tmp_path / "w.safetensors", device="cpu")
        tiles = random_tiles(4, 64, seed=4)
        np.testing.assert_allclose(
            extractor.embed(tiles), reference_outputs(model, spec, tiles)[0], atol=1e-5
        )
        larger = extractor.embed(np.repeat(np.repeat(tiles, 2, axis=1), 2, axis=2))
        assert larger.shape == (4, spec.vit.embed_dim)  # 128 px tiles resized to 64 px
    finally:
        unregister_extractor("tiny-uni")
    assert "tiny-uni" not in dict(list_extractors())


# ----------------------------------------------------------------- bad checkpoints

_CALLS: list[str] = []


def _record_call(tag: str) -> str:
    _CALLS.append(tag)
    return tag


class _Payload:
    def __reduce__(self):
        return (_record_call, ("payload ran",))


def test_pickle_payload_is_refused_without_running(tmp_path):
    spec = tiny_spec("h0-mini")
    sd = VisionTransformer(spec.vit).state_dict()
    torch.save({"state_dict": sd, "extra": _Payload()}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match=r"evil\.pth was refused.*weights_only"):
        ViTExtractor(spec, tmp_path / "evil.pth", device="cpu")
    assert _CALLS == []


def test_wrong_architecture_is_named(tmp_path):
    # the shapes a ViT-L/16 (UNI-like) checkpoint has, enough to recognise it
    fake = {"patch_embed.proj.weight": torch.zeros(1024, 3, 16, 16)}
    fake |= {f"blocks.{i}.norm1.weight": torch.zeros(1024) for i in range(24)}
    fake["blocks.0.mlp.fc1.weight"] = torch.zeros(4096, 1024)
    fake["blocks.0.mlp.fc2.weight"] = torch.zeros(1024, 4096)
    save_file(fake, str(tmp_path / "uni.safetensors"))
    with pytest.raises(CheckpointError) as info:
        create_extractor("h0-mini", tmp_path / "uni.safetensors", device="cpu")
    message = str(info.value)
    assert "uni.safetensors" in message
    assert "looks like a ViT-L/16 checkpoint (1024-d, 24 blocks" in message
    assert "h0-mini expects ViT-B/14 (768-d, 12 blocks, 4 register tokens, SwiGLU" in message
    assert "missing keys" in message and "shape mismatches" in message


def test_tiny_family_mismatch_lists_shapes(tmp_path):
    uni = tiny_spec("uni")
    save_file(VisionTransformer(uni.vit).state_dict(), str(tmp_path / "uni.safetensors"))
    with pytest.raises(CheckpointError) as info:
        ViTExtractor(tiny_spec("h0-mini"), tmp_path / "uni.safetensors", device="cpu")
    message = str(info.value)
    assert "missing keys: reg_token;" in message
    assert "patch_embed.proj.weight (32, 3, 16, 16) vs expected (32, 3, 14, 14)" in message


@pytest.mark.parametrize(
    ("file", "content", "pattern"),
    [
        ("absent.safetensors", None, "does not exist"),
        ("trunc.safetensors", b'\x10\x00\x00\x00\x00\x00\x00\x00{"a":', "not a readable"),
        ("garbage.bin", b"PK\x03\x04 definitely not a zip", "not a readable torch file"),
        ("weights.ckpt", b"", "suffix '.ckpt'"),
    ],
)
def test_unreadable_files(tmp_path, file, content, pattern):
    path = tmp_path / file
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=pattern) as info:
        ViTExtractor(tiny_spec("uni"), path, device="cpu")
    assert file in str(info.value)


def test_truncated_real_file_and_empty_state(tmp_path):
    spec = tiny_spec("uni")
    save_file(VisionTransformer(spec.vit).state_dict(), str(tmp_path / "w.safetensors"))
    data = (tmp_path / "w.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        ViTExtractor(spec, tmp_path / "cut.safetensors", device="cpu")
    torch.save({}, tmp_path / "empty.pt")
    with pytest.raises(CheckpointError, match="holds no tensors"):
        ViTExtractor(spec, tmp_path / "empty.pt", device="cpu")


# ------------------------------------------------------------ the builtin extractor


NUCLEUS_RGB = np.array([62.0, 38.0, 118.0])  # dark haematoxylin purple


def synthetic_tile(n_round: int, n_elongated: int = 0, seed: int = 0) -> np.ndarray:
    """Pink stroma with dark purple nuclei: round r = 5-7 px discs and/or 22 x 6 px ellipses."""
    rng = np.random.default_rng(seed)
    tile = np.empty((224, 224, 3), np.float32)
    tile[:] = (236, 168, 204)
    tile += rng.normal(0, 6, tile.shape)
    yy, xx = np.mgrid[:224, :224]
    for _ in range(n_round):
        cy, cx = rng.uniform(8, 216, 2)
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= rng.uniform(5.0, 7.0) ** 2
        tile[mask] = NUCLEUS_RGB + rng.normal(0, 5, (mask.sum(), 3))
    for _ in range(n_elongated):
        cy, cx = rng.uniform(12, 212, 2)
        angle = rng.uniform(0, np.pi)
        u = (yy - cy) * np.cos(angle) + (xx - cx) * np.sin(angle)
        v = (xx - cx) * np.cos(angle) - (yy - cy) * np.sin(angle)
        mask = (u / 11.0) ** 2 + (v / 3.0) ** 2 <= 1
        tile[mask] = NUCLEUS_RGB + rng.normal(0, 5, (mask.sum(), 3))
    return np.clip(tile, 0, 255).astype(np.uint8)


def test_builtin_is_deterministic_finite_and_64_d():
    extractor = create_extractor("imilia-stain-stats", device="cpu")
    assert (extractor.dim, extractor.tile_px, extractor.target_mpp) == (64, 224, 0.5)
    assert not extractor.requires_weights and len(extractor.weights_sha256) == 64
    assert len(FEATURE_NAMES) == 64 and len(set(FEATURE_NAMES)) == 64
    tiles = np.concatenate([random_tiles(3, 224, seed=5), synthetic_tile(30)[None]])
    tiles[0] = 255  # blank glass
    first = extractor.embed(tiles)
    assert first.shape == (4, 64) and first.dtype == np.float32
    assert np.isfinite(first).all()
    np.testing.assert_array_equal(first, extractor.embed(tiles))
    singles = np.concatenate([extractor.embed(tile[None]) for tile in tiles])
    np.testing.assert_allclose(singles, first, atol=1e-6)
    assert extractor.embed(np.zeros((0, 224, 224, 3), np.uint8)).shape == (0, 64)
    assert extractor.embed(np.repeat(np.repeat(tiles, 2, 1), 2, 2)).shape == (4, 64)


def test_builtin_separates_dense_small_round_nuclei():
    extractor = create_extractor("imilia-stain-stats", device="cpu")
    infiltrate = [synthetic_tile(60, seed=s) for s in range(3)]
    sparse = [synthetic_tile(3, seed=10 + s) for s in range(3)]
    spindles = [synthetic_tile(0, 40, seed=20 + s) for s in range(3)]
    feats = extractor.embed(np.stack(infiltrate + sparse + spindles))
    srd = feats[:, FEATURE_NAMES.index("srd_count_per100")] * 100
    assert srd[:3].min() >= 20  # most of the 60 discs (overlapping ones merge)
    assert srd[3:].max() <= 5  # few round nuclei, or elongated ones that are not round
    assert srd[:3].min() > 5 * max(srd[3:].max(), 1)
    clustered = feats[:, FEATURE_NAMES.index("srd_dense_cell_fraction")]
    assert clustered[:3].min() > 0.1 and clustered[3:].max() == 0.0
    roundness = feats[:, FEATURE_NAMES.index("blob_roundness_mean")]
    assert roundness[:3].min() > 0.7 > 0.45 > roundness[6:].max()


def test_builtin_rejects_weights_and_bad_tiles(tmp_path):
    with pytest.raises(ImiliaError, match="takes no weights"):
        create_extractor("imilia-stain-stats", tmp_path / "w.safetensors")
    extractor = create_extractor("imilia-stain-stats")
    with pytest.raises(ImiliaError, match=r"\(B, H, W, 3\) uint8"):
        extractor.embed(np.zeros((2, 224, 224, 3), np.float32))
    with pytest.raises(ImiliaError, match="shape"):
        extractor.embed(np.zeros((224, 224, 3), np.uint8))


# ------------------------------------------------------------ the CUDA bf16 code path


@contextlib.contextmanager
def cpu_bf16_context(device):
    """What ``inference_context`` does on CUDA (inference mode + bf16 autocast), on the CPU."""
    with torch.inference_mode(), torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        yield


def test_cuda_inference_context_asks_for_bf16_autocast(monkeypatch):
    from napari_imilia import device as device_module

    requested = []

    def recording_autocast(device_type, dtype=None, enabled=True):
        requested.append((device_type, dtype, enabled))
        return contextlib.nullcontext()

    monkeypatch.setattr(device_module.torch, "autocast", recording_autocast)
    with device_module.inference_context(torch.device("cuda")):
        assert torch.is_inference_mode_enabled()
    with device_module.inference_context(torch.device("cpu")):
        assert torch.is_inference_mode_enabled()
    assert requested == [("cuda", torch.bfloat16, True)]  # the CPU runs in float32


def test_vit_extractor_runs_under_bf16_autocast(monkeypatch, tmp_path):
    """The forward pass the extractor runs on CUDA, with bf16 autocast (here on the CPU):
    float32 outputs close to the float32 pass, no dtype clash anywhere in the ViT."""
    from napari_imilia.features.extractors import foundation

    spec = tiny_spec("h0-mini")
    save_file(
        VisionTransformer(spec.vit).init_random(seed=21).state_dict(),
        str(tmp_path / "w.safetensors"),
    )
    extractor = ViTExtractor(spec, tmp_path / "w.safetensors", device="cpu")
    tiles = random_tiles(4, spec.vit.img_size_px, seed=9)
    full_emb, full_tokens = extractor.embed_with_patch_tokens(tiles)
    monkeypatch.setattr(foundation, "inference_context", cpu_bf16_context)
    low_emb, low_tokens = extractor.embed_with_patch_tokens(tiles)
    assert low_emb.dtype == low_tokens.dtype == np.float32
    assert not np.array_equal(low_emb, full_emb)  # bf16 really ran
    for low, full in ((low_emb, full_emb), (low_tokens, full_tokens)):
        low, full = low.reshape(-1, spec.vit.embed_dim), full.reshape(-1, spec.vit.embed_dim)
        cosine = (low * full).sum(1) / np.linalg.norm(low, axis=1) / np.linalg.norm(full, axis=1)
        assert cosine.min() > 0.99
