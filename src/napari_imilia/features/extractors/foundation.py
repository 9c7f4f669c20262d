"""Pathology foundation-model extractors (ViT family), loaded from local weight files only.

Each :class:`FoundationSpec` says the architecture, the input (tile px, µm/px, normalisation)
and where the user gets the weights; :class:`ViTExtractor` runs it. The tile embedding is the
class token after the final norm (as IMILIA uses H0-mini); ``patch_tokens`` gives one
embedding per patch, (B, h, w, D), for EpiSeg.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from napari_imilia.device import inference_context, resolve_device
from napari_imilia.errors import CheckpointError, ImiliaError
from napari_imilia.features.extractors.base import Extractor, check_tiles, tiles_to_tensor
from napari_imilia.features.vit import (
    H0_MINI,
    H_OPTIMUS_0,
    PHIKON,
    PHIKON_V2,
    UNI,
    UNI2_H,
    ViTConfig,
)
from napari_imilia.features.vit.checkpoint import load_vit
from napari_imilia.features.vit.model import ViTOutput
from napari_imilia.files import sha256_file

#: Bioptimus normalisation (H-optimus-0, H0-mini model cards / timm pretrained_cfg).
BIOPTIMUS_MEAN = (0.707223, 0.578729, 0.703617)
BIOPTIMUS_STD = (0.211883, 0.230117, 0.177517)
#: ImageNet normalisation (UNI, UNI2-h, Phikon, Phikon-v2).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class FoundationSpec:
    """A ViT foundation model: architecture, expected input and where its weights come from."""

    name: str
    description: str
    vit: ViTConfig
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    target_mpp: float
    weights_source: str


FOUNDATION_SPECS: tuple[FoundationSpec, ...] = (
    FoundationSpec(
        name="h0-mini",
        description="H0-mini (Bioptimus), ViT-B/14 + 4 registers, 768-d class token; "
        "IMILIA's extractor (224 px at 0.5 µm/px)",
        vit=H0_MINI,
        mean=BIOPTIMUS_MEAN,
        std=BIOPTIMUS_STD,
        target_mpp=0.5,
        weights_source="https://huggingface.co/bioptimus/H0-mini (gated: accept the licence, "
        "then download model.safetensors)",
    ),
    FoundationSpec(
        name="h-optimus-0",
        description="H-optimus-0 (Bioptimus), ViT-g/14 + 4 registers, 1536-d class token",
        vit=H_OPTIMUS_0,
        mean=BIOPTIMUS_MEAN,
        std=BIOPTIMUS_STD,
        target_mpp=0.5,
        weights_source="https://huggingface.co/bioptimus/H-optimus-0 (gated: download "
        "model.safetensors or pytorch_model.bin)",
    ),
    FoundationSpec(
        name="uni",
        description="UNI (Mahmood Lab), ViT-L/16, 1024-d class token",
        vit=UNI,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        target_mpp=0.5,
        weights_source="https://huggingface.co/MahmoodLab/UNI (gated: download pytorch_model.bin)",
    ),
    FoundationSpec(
        name="uni2-h",
        description="UNI2-h (Mahmood Lab), ViT-H/14 + 8 registers, SwiGLU, 1536-d class token",
        vit=UNI2_H,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        target_mpp=0.5,
        weights_source="https://huggingface.co/MahmoodLab/UNI2-h (gated: download "
        "pytorch_model.bin)",
    ),
    FoundationSpec(
        name="phikon",
        description="Phikon (Owkin), iBOT ViT-B/16, 768-d class token (Hugging Face ViTModel)",
        vit=PHIKON,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        target_mpp=0.5,
        weights_source="https://huggingface.co/owkin/phikon (download model.safetensors)",
    ),
    FoundationSpec(
        name="phikon-v2",
        description="Phikon-v2 (Owkin), DINOv2 ViT-L/16, 1024-d class token "
        "(Hugging Face Dinov2Model)",
        vit=PHIKON_V2,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        target_mpp=0.5,
        weights_source="https://huggingface.co/owkin/phikon-v2 (download model.safetensors)",
    ),
)


def missing_weights_message(spec: FoundationSpec) -> str:
    """What to tell a user who asked for ``spec`` without a weights file."""
    return (
        f"extractor {spec.name} needs its weights file, which is never downloaded "
        f"automatically. Get it from {spec.weights_source} and pass it with "
        f"--extractor-weights PATH (weights_path= in Python); a MIL model trained on "
        f"{spec.name} features needs {spec.name} itself. Weight-free demo: leave out --model "
        "and --extractor (the bundled DEMO model on imilia-stain-stats features)"
    )


class ViTExtractor(Extractor):
    """A ViT foundation model on ``device``; embeddings are the final-norm class token."""

    requires_weights = True

    def __init__(
        self,
        spec: FoundationSpec,
        weights_path: str | Path | None,
        device: str | torch.device = "auto",
        batch_size: int = 32,
    ) -> None:
        if weights_path is None or str(weights_path) == "":
            raise CheckpointError(missing_weights_message(spec))
        if int(batch_size) < 1:
            raise ImiliaError(f"batch_size must be >= 1, got {batch_size}")
        path = Path(weights_path).expanduser()
        self.spec = spec
        self.name = spec.name
        self.description = spec.description
        self.dim = spec.vit.embed_dim
        self.tile_px = spec.vit.img_size_px
        self.patch_px = spec.vit.patch_size_px
        self.target_mpp = float(spec.target_mpp)
        self.mean = spec.mean
        self.std = spec.std
        self.batch_size = int(batch_size)
        self.device = resolve_device(device)
        self.weights_path = path
        self.model = load_vit(path, spec.vit, model_name=spec.name).to(self.device)
        self.weights_sha256 = sha256_file(path)
        self._mean = torch.tensor(spec.mean, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(spec.std, device=self.device).view(1, 3, 1, 1)

    def _forward(self, tiles: np.ndarray, native_size: bool = False) -> ViTOutput:
        side = tiles.shape[1] if native_size else self.tile_px
        images = tiles_to_tensor(tiles, side, self.device)
        images = (images - self._mean) / self._std
        with inference_context(self.device):
            return self.model(images)

    def _batches(self, tiles_uint8: np.ndarray, native_size: bool = False) -> list[ViTOutput]:
        tiles = check_tiles(tiles_uint8, self.name)
        if native_size and (tiles.shape[1] != tiles.shape[2] or tiles.shape[1] % self.patch_px):
            raise ImiliaError(
                f"{self.name}: tiles kept at their own size must be square and a multiple of "
                f"{self.patch_px} px; got {tiles.shape[2]}x{tiles.shape[1]}"
            )
        return [
            self._forward(tiles[start : start + self.batch_size], native_size)
            for start in range(0, len(tiles), self.batch_size)
        ]

    @staticmethod
    def _tile_embedding(out: ViTOutput) -> torch.Tensor:
        return out.cls_token if out.cls_token is not None else out.patch_tokens.mean(dim=(1, 2))

    def _empty_tokens(self) -> np.ndarray:
        side = self.tile_px // self.patch_px
        return np.zeros((0, side, side, self.dim), dtype=np.float32)

    def embed(self, tiles_uint8: np.ndarray) -> np.ndarray:
        """(B, H, W, 3) uint8 -> (B, dim) float32 class-token embeddings (after final norm)."""
        outputs = self._batches(tiles_uint8)
        if not outputs:
            return np.zeros((0, self.dim), dtype=np.float32)
        return torch.cat([self._tile_embedding(out) for out in outputs]).float().cpu().numpy()

    def patch_tokens(self, tiles_uint8: np.ndarray, *, native_size: bool = False) -> np.ndarray:
        """(B, H, W, 3) uint8 -> (B, h, w, dim) float32 patch tokens (after final norm).

        ``h = w = tile_px // patch_px`` (16 for H0-mini: one token per 14 px patch); with
        ``native_size`` the tiles are not resized (square, a multiple of the patch size: IMILIA
        runs H0-mini on 1022 px EpiSeg images, 73 x 73 tokens) and ``h = w = H // patch_px``.
        """
        outputs = self._batches(tiles_uint8, native_size)
        if not outputs:
            return self._empty_tokens()
        return torch.cat([out.patch_tokens for out in outputs]).float().cpu().numpy()

    def embed_with_patch_tokens(self, tiles_uint8: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`embed` and :meth:`patch_tokens` from one forward pass per batch."""
        outputs = self._batches(tiles_uint8)
        if not outputs:
            return np.zeros((0, self.dim), dtype=np.float32), self._empty_tokens()
        embeddings = torch.cat([self._tile_embedding(out) for out in outputs])
        tokens = torch.cat([out.patch_tokens for out in outputs])
        return embeddings.float().cpu().numpy(), tokens.float().cpu().numpy()
