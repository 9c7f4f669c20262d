"""What every tile feature extractor provides, and the shared tile checks and resizing."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch
import torch.nn.functional as F

from napari_imilia.errors import ImiliaError


class Extractor(ABC):
    """A tile feature extractor: (B, H, W, 3) uint8 RGB tiles -> (B, dim) float32 features.

    Attributes: ``name`` (registry name), ``description``, ``dim`` (feature length),
    ``tile_px`` (input side in pixels; other sizes are resized), ``target_mpp`` (µm/px the
    tiles should be read at), ``mean``/``std`` (per-channel normalisation of [0, 1] RGB),
    ``weights_sha256`` (SHA-256 of the weight file, or a fixed digest for weight-free
    extractors), ``requires_weights``, ``device`` and ``batch_size`` (tiles per forward pass).
    """

    name: str
    description: str
    dim: int
    tile_px: int
    target_mpp: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    weights_sha256: str
    requires_weights: bool
    device: torch.device
    batch_size: int

    @abstractmethod
    def embed(self, tiles_uint8: np.ndarray) -> np.ndarray:
        """(B, H, W, 3) uint8 tiles -> (B, dim) float32 features."""

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, dim={self.dim}, tile_px={self.tile_px}, "
            f"target_mpp={self.target_mpp}, device={str(self.device)!r})"
        )


def check_tiles(tiles_uint8: np.ndarray, extractor_name: str) -> np.ndarray:
    """The tiles as a C-contiguous (B, H, W, 3) uint8 array, or an error naming the shape."""
    tiles = np.asarray(tiles_uint8)
    if tiles.dtype != np.uint8 or tiles.ndim != 4 or tiles.shape[-1] != 3:
        raise ImiliaError(
            f"extractor {extractor_name} takes (B, H, W, 3) uint8 RGB tiles, got an array of "
            f"shape {tiles.shape} and dtype {tiles.dtype}"
        )
    if tiles.shape[0] and min(tiles.shape[1:3]) < 1:
        raise ImiliaError(f"extractor {extractor_name} got empty tiles of shape {tiles.shape}")
    return np.ascontiguousarray(tiles)


def tiles_to_tensor(tiles_uint8: np.ndarray, size_px: int, device: torch.device) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, size_px, size_px) float32 in [0, 1] on ``device``.

    Tiles of another size are resized with antialiased bicubic interpolation (as timm's
    bicubic ``Resize``) and clipped back to [0, 1].
    """
    if not tiles_uint8.flags.writeable:  # torch warns on read-only arrays
        tiles_uint8 = tiles_uint8.copy()
    # non-blocking: an asynchronous copy when the tiles sit in pinned memory (the tile feed's
    # batches for a GPU); the model's output copied back to the CPU waits for it
    batch = torch.from_numpy(tiles_uint8).to(device, non_blocking=True)
    batch = batch.permute(0, 3, 1, 2).float().div_(255.0)
    if batch.shape[-2:] != (size_px, size_px):
        batch = F.interpolate(batch, size=(size_px, size_px), mode="bicubic", antialias=True)
        batch = batch.clamp_(0.0, 1.0)
    return batch


def resize_tiles_uint8(tiles_uint8: np.ndarray, size_px: int) -> np.ndarray:
    """(B, H, W, 3) uint8 tiles resized to ``size_px`` (unchanged when already that size)."""
    if tiles_uint8.shape[1:3] == (size_px, size_px):
        return tiles_uint8
    batch = tiles_to_tensor(tiles_uint8, size_px, torch.device("cpu"))
    out = batch.mul_(255.0).round_().to(torch.uint8).permute(0, 2, 3, 1)
    return np.ascontiguousarray(out.numpy())
