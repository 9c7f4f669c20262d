"""A grid of square tiles at a target resolution over the tissue of a slide.

A tile is ``tile_px`` pixels at ``target_mpp`` µm/px. Its level-0 footprint is
``footprint_px = round_half_up(tile_px * target_mpp / slide_mpp)`` pixels (224 px at 0.5 µm/px
on a 0.25 µm/px slide: 448; on a 0.499 µm/px slide: 224.45 -> 224), and the grid steps by the
footprint (less the overlap) from the level-0 origin. Pixels are read from the coarsest native
level at least as fine as ``target_mpp`` (``read_level``), ``read_size_px`` =
``round_half_up(footprint_px / downsample)`` pixels square, then resized to ``tile_px`` with
PIL's antialiased bilinear filter when the sizes differ. Tiles may run past the right and
bottom edges of the slide; those pixels are white, as in ``Slide.read_region``.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from napari_imilia.errors import ImiliaError
from napari_imilia.slide import Slide
from napari_imilia.tiling.tissue import NoTissueError, TissueMask

TILING_VERSION = 1


@dataclass(eq=False)
class TileGrid:
    """Tiles of one slide. Per-tile arrays are level-0 pixels (``x``, ``y`` top-left)."""

    x: np.ndarray
    y: np.ndarray
    width: np.ndarray
    height: np.ndarray
    tissue_fraction: np.ndarray
    tile_px: int
    target_mpp: float
    slide_mpp: float
    read_level: int
    read_size_px: int
    stride_px: int
    slide_dimensions: tuple[int, int]

    @property
    def n_tiles(self) -> int:
        return int(self.x.shape[0])

    def __len__(self) -> int:
        return self.n_tiles

    @property
    def footprint_px(self) -> int:
        """Level-0 side of every tile in pixels."""
        return round_half_up(self.tile_px * self.target_mpp / self.slide_mpp)

    @property
    def tile_ids(self) -> list[str]:
        """Stable ids ``"{x}_{y}"`` (level-0 top-left)."""
        return [f"{x}_{y}" for x, y in zip(self.x.tolist(), self.y.tolist(), strict=True)]

    @property
    def coords(self) -> np.ndarray:
        """(N, 2) int64 level-0 top-left (x, y), the feature-cache ``coords``."""
        return np.stack([self.x, self.y], axis=1).astype(np.int64)

    @cached_property
    def tiling_sha256(self) -> str:
        """SHA-256 of the tile geometry and the parameters that made it (a cache key)."""
        params: dict[str, Any] = {
            "version": TILING_VERSION,
            "tile_px": self.tile_px,
            "target_mpp": round(self.target_mpp, 9),
            "slide_mpp": round(self.slide_mpp, 9),
            "read_level": self.read_level,
            "read_size_px": self.read_size_px,
            "stride_px": self.stride_px,
            "slide_dimensions": list(self.slide_dimensions),
        }
        digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode())
        for array in (self.x, self.y, self.width, self.height):
            digest.update(np.ascontiguousarray(array, dtype="<i8").tobytes())
        return digest.hexdigest()

    def take(self, keep: slice | np.ndarray) -> TileGrid:
        """The tiles ``keep`` selects (a slice, indices or a bool mask), same grid parameters."""
        return replace(
            self,
            x=self.x[keep],
            y=self.y[keep],
            width=self.width[keep],
            height=self.height[keep],
            tissue_fraction=self.tissue_fraction[keep],
        )

    def reader(self, slide: Slide) -> TileReader:
        """What reads this grid's tiles (``reader(index)`` -> (tile_px, tile_px, 3) uint8)."""
        return TileReader(slide, self)

    def to_frame(self) -> pd.DataFrame:
        """Table ``tile_id, x, y, width, height, tissue_fraction`` (level-0 pixels)."""
        return pd.DataFrame(
            {
                "tile_id": self.tile_ids,
                "x": self.x.astype(np.int64),
                "y": self.y.astype(np.int64),
                "width": self.width.astype(np.int64),
                "height": self.height.astype(np.int64),
                "tissue_fraction": self.tissue_fraction.astype(np.float64),
            }
        )


def round_half_up(value: float) -> int:
    """Round to the nearest integer, halves up (not Python's banker's rounding)."""
    return math.floor(value + 0.5)


def make_tile_grid(
    slide: Slide,
    tissue_mask: TissueMask,
    *,
    target_mpp: float = 0.5,
    tile_px: int = 224,
    min_tissue_fraction: float = 0.5,
    overlap_px: int = 0,
) -> TileGrid:
    """Tiles of ``tile_px`` px at ``target_mpp`` µm/px whose tissue fraction is at least
    ``min_tissue_fraction`` (0-1). ``overlap_px`` is in tile pixels (at ``target_mpp``).

    Raises ``SlideMPPError`` without a pixel size and ``NoTissueError`` for an empty mask.
    """
    slide_mpp = slide.require_mpp()
    if tile_px <= 0 or target_mpp <= 0:
        raise ImiliaError(f"tile_px and target_mpp must be positive, got {tile_px}, {target_mpp}")
    if not 0 <= overlap_px < tile_px:
        raise ImiliaError(f"overlap_px must be in [0, {tile_px}), got {overlap_px}")
    if tissue_mask.is_empty:
        raise NoTissueError(
            f"no tissue found in {slide.path.name} ({tissue_mask.describe()}); check that the "
            "slide shows stained tissue, or lower the saturation / optical-density thresholds "
            "(--tissue-saturation, --tissue-min-od)"
        )
    scale = target_mpp / slide_mpp
    footprint_px = round_half_up(tile_px * scale)
    if footprint_px < 1:
        raise ImiliaError(f"{tile_px} px at {target_mpp} µm/px is under one level-0 pixel")
    stride_px = footprint_px - round_half_up(overlap_px * scale)
    read_level = slide.best_level_for_downsample(scale)
    read_size_px = max(1, round_half_up(footprint_px / slide.level_info[read_level].downsample))

    width0, height0 = slide.dimensions
    xs = np.arange(0, width0, stride_px, dtype=np.int64)
    ys = np.arange(0, height0, stride_px, dtype=np.int64)
    grid_y, grid_x = np.meshgrid(ys, xs, indexing="ij")
    grid_x, grid_y = grid_x.ravel(), grid_y.ravel()
    fraction = box_tissue_fraction(tissue_mask, grid_x, grid_y, footprint_px)
    keep = fraction >= min_tissue_fraction
    n_kept = int(keep.sum())
    return TileGrid(
        x=grid_x[keep],
        y=grid_y[keep],
        width=np.full(n_kept, footprint_px, dtype=np.int64),
        height=np.full(n_kept, footprint_px, dtype=np.int64),
        tissue_fraction=fraction[keep],
        tile_px=int(tile_px),
        target_mpp=float(target_mpp),
        slide_mpp=float(slide_mpp),
        read_level=int(read_level),
        read_size_px=int(read_size_px),
        stride_px=int(stride_px),
        slide_dimensions=(int(width0), int(height0)),
    )


def require_tiles(
    grid: TileGrid, slide: Slide, *, tile_px: int, target_mpp: float, min_tissue_fraction: float
) -> TileGrid:
    """``grid`` when it holds a tile, else ``NoTissueError`` naming the slide and the settings
    (``tile_px`` px at ``target_mpp`` µm/px, the minimum tissue fraction 0-1)."""
    if grid.n_tiles == 0:
        raise NoTissueError(
            f"no tile of {Path(slide.path).name} ({tile_px} px at {target_mpp} µm/px) has at "
            f"least {min_tissue_fraction:.0%} tissue; check the slide or lower --min-tissue "
            "(min_tissue_fraction)"
        )
    return grid


def box_tissue_fraction(
    tissue_mask: TissueMask, x: np.ndarray, y: np.ndarray, size_px: int
) -> np.ndarray:
    """Tissue fraction of level-0 squares (top-left ``x, y``, side ``size_px``).

    The fraction is over the mask pixels whose centres fall inside the square (the one under
    the square's centre when none does); mask pixels beyond the slide count as background.
    """
    mask = tissue_mask.mask
    per_px = tissue_mask.level0_per_px
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    col0 = np.ceil(x / per_px - 0.5).astype(np.int64)
    col1 = np.ceil((x + size_px) / per_px - 0.5).astype(np.int64)
    row0 = np.ceil(y / per_px - 0.5).astype(np.int64)
    row1 = np.ceil((y + size_px) / per_px - 0.5).astype(np.int64)
    empty_cols = col1 <= col0
    col0 = np.where(empty_cols, np.floor((x + size_px / 2) / per_px).astype(np.int64), col0)
    col1 = np.where(empty_cols, col0 + 1, col1)
    empty_rows = row1 <= row0
    row0 = np.where(empty_rows, np.floor((y + size_px / 2) / per_px).astype(np.int64), row0)
    row1 = np.where(empty_rows, row0 + 1, row1)

    integral = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), dtype=np.int64)
    integral[1:, 1:] = mask.astype(np.int64).cumsum(0).cumsum(1)
    r0, r1 = np.clip(row0, 0, mask.shape[0]), np.clip(row1, 0, mask.shape[0])
    c0, c1 = np.clip(col0, 0, mask.shape[1]), np.clip(col1, 0, mask.shape[1])
    inside = integral[r1, c1] - integral[r0, c1] - integral[r1, c0] + integral[r0, c0]
    total = (row1 - row0) * (col1 - col0)
    return inside.astype(np.float64) / total


class TileReader:
    """Reads tiles of a grid: one region read at ``read_level`` per tile, then the resize.

    Native levels are read straight through the backend's array (thread-safe); other
    levels through the slide's dask array.
    """

    def __init__(self, slide: Slide, grid: TileGrid) -> None:
        self.grid = grid
        self.downsample = slide.level_info[grid.read_level].downsample
        self._array = level_array(slide, grid.read_level)

    def read_level0(self, level0_xy: tuple[int, int]) -> np.ndarray:
        """The (tile_px, tile_px, 3) uint8 tile whose level-0 top-left is ``level0_xy``."""
        size = self.grid.read_size_px
        region = read_level_region(self._array, self.downsample, level0_xy, (size, size))
        return resize_tile(region, self.grid.tile_px)

    def __call__(self, index: int) -> np.ndarray:
        return self.read_level0((int(self.grid.x[index]), int(self.grid.y[index])))


def read_tile(slide: Slide, grid: TileGrid, index: int) -> np.ndarray:
    """Tile ``index`` of ``grid`` as a (tile_px, tile_px, 3) uint8 array."""
    if not 0 <= index < grid.n_tiles:
        raise IndexError(f"tile {index} out of range for a grid of {grid.n_tiles} tiles")
    return TileReader(slide, grid)(index)


def resize_tile(region: np.ndarray, tile_px: int) -> np.ndarray:
    """Resize an (h, w, 3) uint8 region to (tile_px, tile_px, 3): PIL bilinear, antialiased."""
    if region.shape[0] == tile_px and region.shape[1] == tile_px:
        return region
    image = Image.fromarray(region).resize((tile_px, tile_px), Image.Resampling.BILINEAR)
    return np.asarray(image)


def level_array(slide: Slide, level: int) -> Any:
    """An (H, W, C) array of ``level`` to slice: the backend's own array for native levels
    (tiffslide's zarr array, or region reads of wsidicom / OpenSlide), else the dask level."""
    if slide.level_info[level].native:
        return slide.native_array(level)
    return slide.levels[level]


def read_level_region(
    array: Any, downsample: float, level0_xy: tuple[int, int], size_px: tuple[int, int]
) -> np.ndarray:
    """``size_px`` = (w, h) pixels of a level array from level-0 ``(x, y)``; white outside.

    Same pixels as ``Slide.read_region``: the level-px origin is ``floor(level0 / downsample)``.
    """
    width, height = size_px
    x0 = math.floor(level0_xy[0] / downsample)
    y0 = math.floor(level0_xy[1] / downsample)
    out = np.full((height, width, 3), 255, dtype=np.uint8)
    ys, ye = max(y0, 0), min(y0 + height, array.shape[0])
    xs, xe = max(x0, 0), min(x0 + width, array.shape[1])
    if ys < ye and xs < xe:
        block = array[ys:ye, xs:xe]
        if hasattr(block, "compute"):
            block = block.compute(scheduler="synchronous")
        out[ys - y0 : ye - y0, xs - x0 : xe - x0] = np.asarray(block)[..., :3]
    return out
