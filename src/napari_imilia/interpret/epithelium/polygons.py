"""Epithelium masks as shapely polygons in level-0 pixel coordinates (QuPath convention)."""

from __future__ import annotations

import numpy as np
from shapely.geometry import Polygon

from napari_imilia.errors import DataError
from napari_imilia.export.geometry import mask_polygons


def epithelium_polygons(
    mask: np.ndarray,
    *,
    mpp: float,
    level0_xy: tuple[float, float],
    level0_per_px: float,
    min_area_um2: float = 0.0,
) -> list[Polygon]:
    """Connected epithelium regions of ``mask`` as polygons in level-0 pixels.

    ``mask`` is (H, W) bool at ``mpp`` µm/px; mask pixel (r, c) is the level-0 square
    ``[x0 + c s, x0 + (c + 1) s) x [y0 + r s, y0 + (r + 1) s)`` with (x0, y0) = ``level0_xy``
    and s = ``level0_per_px``. Each polygon is the exact union of its pixel squares (holes
    kept), simplified by at most half a mask pixel, and valid. Regions smaller than
    ``min_area_um2`` (µm², measured on the mask) are dropped. Sorted by area, largest first
    (``export.geometry.mask_polygons``).
    """
    mask = np.asarray(mask).astype(bool)
    if mask.ndim != 2:
        raise DataError(f"epithelium mask must be a 2-D array; got shape {mask.shape}")
    if mpp <= 0 or level0_per_px <= 0:
        raise DataError(f"mpp ({mpp}) and level0_per_px ({level0_per_px}) must be positive")
    return mask_polygons(
        mask,
        level0_xy=level0_xy,
        level0_per_px=level0_per_px,
        min_area_px=float(min_area_um2) / (mpp * mpp),
    )
