"""Small randomly initialised MIL models, saved with the real checkpoint code."""

from __future__ import annotations

from pathlib import Path

import torch

from napari_imilia.mil import create_model, save_model

#: The weight-free builtin extractor (64-d features): no weights file to ship.
EXTRACTOR = "imilia-stain-stats"
DIM = 64
SMALL_HPARAMS = {
    "imilia-chowder": {"n_channels": 2, "n_top": 5, "n_bottom": 5, "mlp_hidden": [8]},
    "abmil": {"embed_dim": 16, "attn_dim": 8},
    "max-mil": {"hidden": [8]},
}


def save_small_model(
    folder: Path, arch: str, *, seed: int = 0, in_dim: int = DIM, extractor: str | None = EXTRACTOR
) -> Path:
    """A small randomly initialised model saved with the real checkpoint code."""
    torch.manual_seed(seed)
    model = create_model(arch, in_dim, **SMALL_HPARAMS[arch])
    return save_model(
        model, folder / f"{arch}.safetensors", extractor=extractor, mpp=0.5, tile_px=224
    )


def small_model(folder: Path, *, in_dim: int = 64, name: str = "model") -> Path:
    torch.manual_seed(0)
    model = create_model("abmil", in_dim, embed_dim=16, attn_dim=8)
    return save_model(model, folder / f"{name}.safetensors", extractor=EXTRACTOR, mpp=0.5)
