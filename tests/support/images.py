"""Generated H&E-like images and pyramidal TIFFs for slide, tiling and feature tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile

#: Off-white glass around the tissue (RGB).
BACKGROUND_RGB = (243, 241, 242)


def synthetic_he(tissue: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """(H, W, 3) uint8 H&E-like image: pink/purple texture where ``tissue``, off-white elsewhere."""
    rng = np.random.default_rng(seed)
    height, width = tissue.shape
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[:] = BACKGROUND_RGB
    image += rng.integers(0, 4, size=(height, width, 1), dtype=np.uint8)
    eosin = np.array([228, 145, 195], dtype=np.float32)
    hematoxylin = np.array([105, 70, 150], dtype=np.float32)
    nuclei = rng.random((height // 4 + 1, width // 4 + 1)) < 0.25
    nuclei = np.kron(nuclei, np.ones((4, 4), dtype=bool))[:height, :width]
    colour = np.where(nuclei[..., None], hematoxylin, eosin)
    colour += rng.normal(0, 8, size=colour.shape)
    image[tissue] = np.clip(colour[tissue], 0, 255).astype(np.uint8)
    return image


def write_pyramid_tiff(
    path: Path, image: np.ndarray, *, mpp: float | None, n_levels: int = 3, tile_px: int = 256
) -> Path:
    """Tiled pyramidal RGB TIFF (zlib, SubIFDs), each level a 2x stride of level 0."""
    resolution = {}
    if mpp is not None:
        resolution = {"resolution": (1e4 / mpp, 1e4 / mpp), "resolutionunit": "CENTIMETER"}
    options = {
        "tile": (tile_px, tile_px),
        "photometric": "rgb",
        "compression": "zlib",
        "compressionargs": {"level": 1},
        "metadata": None,
        **resolution,
    }
    with tifffile.TiffWriter(path) as tiff:
        tiff.write(image, subifds=n_levels - 1, **options)
        for level in range(1, n_levels):
            step = 2**level
            tiff.write(np.ascontiguousarray(image[::step, ::step]), subfiletype=1, **options)
    return path


def ellipse(
    shape_hw: tuple[int, int], center_yx: tuple[float, float], radii_yx: tuple[float, float]
) -> np.ndarray:
    """(H, W) bool filled ellipse."""
    yy, xx = np.mgrid[0 : shape_hw[0], 0 : shape_hw[1]]
    return ((yy - center_yx[0]) / radii_yx[0]) ** 2 + ((xx - center_yx[1]) / radii_yx[1]) ** 2 <= 1
