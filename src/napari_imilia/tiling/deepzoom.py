"""IMILIA's tiles: openslide DeepZoom tiles of 224 px without overlap, read as IMILIA reads them.

IMILIA (owkin/imilia) computed its H0-mini features on the tiles listed per slide in
``ibdcolepi_tiling_coords/<slide>/tiles_coords.npy``: (N, 3) rows of (DeepZoom level, column,
row) of an openslide ``DeepZoomGenerator(slide, tile_size=224, overlap=0)``. Each tile is read
with ``read_region`` at the slide level DeepZoom picks for it (its level-0 top-left and its
size at that level are DeepZoom's ``get_tile_coordinates``) and resized to 224 x 224 px with
PIL's default filter (bicubic): edge tiles smaller than 224 px are stretched.

:class:`DeepZoomGeometry` reproduces DeepZoom's arithmetic from the slide's native levels
(``limit_bounds=False``; level downsamples as openslide computes them); :func:`deepzoom_grid`
turns coords (or, for ``--tiling deepzoom``, every tissue tile of the DeepZoom level nearest to
a µm/px) into a :class:`DeepZoomTileGrid`, a ``TileGrid`` whose ``x``, ``y``, ``width`` and
``height`` are DeepZoom's level-0 boxes and whose reader reads as IMILIA does.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
from PIL import Image

from napari_imilia.errors import ImiliaError
from napari_imilia.slide import Slide
from napari_imilia.tiling.grid import TileGrid, box_tissue_fraction, level_array, read_level_region
from napari_imilia.tiling.tissue import TissueMask

#: IMILIA's tile size (DeepZoom ``tile_size``, and the size tiles are resized to), pixels.
IMILIA_TILE_PX = 224
#: IMILIA's bag size at inference (``MAX_TILES_IBDCOLEPI``): bags are cut / zero-padded to it.
IMILIA_MAX_TILES = 10_000


@dataclass(frozen=True)
class DeepZoomGeometry:
    """DeepZoom levels and tiles of a slide, as openslide's ``DeepZoomGenerator`` computes
    them. ``level_dimensions``: native levels' (width, height) px, level 0 first."""

    level_dimensions: tuple[tuple[int, int], ...]
    tile_px: int = IMILIA_TILE_PX
    overlap_px: int = 0

    @classmethod
    def for_slide(cls, slide: Slide, tile_px: int = IMILIA_TILE_PX, overlap_px: int = 0):
        dims = tuple((int(i.width_px), int(i.height_px)) for i in slide.level_info if i.native)
        return cls(dims, int(tile_px), int(overlap_px))

    @cached_property
    def level_downsamples(self) -> tuple[float, ...]:
        """openslide's downsample of each native level: mean of the width and height ratios."""
        w0, h0 = self.level_dimensions[0]
        return tuple((w0 / w + h0 / h) / 2 for w, h in self.level_dimensions)

    @cached_property
    def dz_dimensions(self) -> tuple[tuple[int, int], ...]:
        """(width, height) px of each DeepZoom level, coarsest (1 x 1) first."""
        size = self.level_dimensions[0]
        sizes = [size]
        while size[0] > 1 or size[1] > 1:
            size = (max(1, math.ceil(size[0] / 2)), max(1, math.ceil(size[1] / 2)))
            sizes.append(size)
        return tuple(reversed(sizes))

    @property
    def level_count(self) -> int:
        return len(self.dz_dimensions)

    def level_tiles(self, dz_level: int) -> tuple[int, int]:
        """(columns, rows) of tiles of a DeepZoom level."""
        w, h = self.dz_dimensions[dz_level]
        return math.ceil(w / self.tile_px), math.ceil(h / self.tile_px)

    def level0_downsample(self, dz_level: int) -> int:
        return 2 ** (self.level_count - dz_level - 1)

    def slide_level(self, dz_level: int) -> int:
        """The native level DeepZoom reads (openslide's best level for the downsample: the
        last level whose downsample does not exceed it)."""
        target = self.level0_downsample(dz_level)
        best = 0
        for index, downsample in enumerate(self.level_downsamples):
            if downsample <= target:
                best = index
        return best

    def tile(self, dz_level: int, col: int, row: int) -> tuple[int, int, int, int, int]:
        """(level-0 x, level-0 y, slide level, width, height at that level) of a tile:
        ``DeepZoomGenerator.get_tile_coordinates``. Raises ``ImiliaError`` for a bad address."""
        if not 0 <= dz_level < self.level_count:
            raise ImiliaError(f"DeepZoom level {dz_level} not in 0..{self.level_count - 1}")
        cols, rows = self.level_tiles(dz_level)
        if not (0 <= col < cols and 0 <= row < rows):
            raise ImiliaError(
                f"DeepZoom tile ({col}, {row}) outside level {dz_level}'s {cols} x {rows} tiles"
            )
        level = self.slide_level(dz_level)
        l_per_z = self.level0_downsample(dz_level) / self.level_downsamples[level]
        l_dims = self.level_dimensions[level]
        out: list[int] = []
        sizes: list[int] = []
        for t, t_lim, z_lim, l_lim in zip(
            (col, row), (cols, rows), self.dz_dimensions[dz_level], l_dims, strict=True
        ):
            tl = self.overlap_px * int(t != 0)
            br = self.overlap_px * int(t != t_lim - 1)
            z_size = min(self.tile_px, z_lim - self.tile_px * t) + tl + br
            l_loc = l_per_z * (self.tile_px * t - tl)
            out.append(int(self.level_downsamples[level] * l_loc))
            sizes.append(int(min(math.ceil(l_per_z * z_size), l_lim - math.ceil(l_loc))))
        return out[0], out[1], level, sizes[0], sizes[1]

    def level_for_mpp(self, slide_mpp: float, target_mpp: float) -> int:
        """The DeepZoom level whose µm/px (slide µm/px x its power-of-two downsample) is
        nearest to ``target_mpp`` (as HistoPLUS's and IMILIA's tiling pick it)."""
        mpps = [slide_mpp * self.level0_downsample(i) for i in range(self.level_count)]
        return int(np.argmin(np.abs(np.array(mpps) - target_mpp)))


@dataclass(eq=False)
class DeepZoomTileGrid(TileGrid):
    """A ``TileGrid`` of DeepZoom tiles: ``x``, ``y``, ``width``, ``height`` are each tile's
    level-0 box; ``dz_level``, ``col``, ``row`` its DeepZoom address; ``levels``,
    ``read_width``, ``read_height`` the slide level and size (at that level) read."""

    dz_level: int = 0
    col: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    row: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    levels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    read_width: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    read_height: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    @cached_property
    def tiling_sha256(self) -> str:
        digest = hashlib.sha256(("deepzoom:" + super().tiling_sha256).encode())
        for array in (self.col, self.row, self.levels, self.read_width, self.read_height):
            digest.update(np.ascontiguousarray(array, dtype="<i8").tobytes())
        return digest.hexdigest()

    def take(self, keep) -> DeepZoomTileGrid:
        picked = super().take(keep)
        for name in ("col", "row", "levels", "read_width", "read_height"):
            setattr(picked, name, getattr(self, name)[keep])
        picked.__dict__.pop("tiling_sha256", None)
        return picked

    def to_frame(self):
        frame = super().to_frame()
        frame["dz_level"] = self.dz_level
        frame["dz_col"] = self.col.astype(np.int64)
        frame["dz_row"] = self.row.astype(np.int64)
        return frame

    def reader(self, slide: Slide) -> DeepZoomTileReader:
        return DeepZoomTileReader(slide, self)


class DeepZoomTileReader:
    """Reads tile ``index`` of a :class:`DeepZoomTileGrid` as IMILIA does: the DeepZoom
    region at its slide level, resized to ``tile_px`` square with PIL's bicubic filter."""

    def __init__(self, slide: Slide, grid: DeepZoomTileGrid) -> None:
        self.grid = grid
        self._slide = slide
        self._arrays: dict[int, object] = {}

    def _downsample(self, level: int) -> float:
        """openslide's downsample of a native level (mean of the width and height ratios)."""
        w0, h0 = self._slide.level_info[0].width_px, self._slide.level_info[0].height_px
        info = self._slide.level_info[level]
        return (w0 / info.width_px + h0 / info.height_px) / 2

    def region(self, index: int) -> np.ndarray:
        """The (h, w, 3) uint8 pixels read for tile ``index`` before resizing."""
        level = int(self.grid.levels[index])
        if level not in self._arrays:
            self._arrays[level] = level_array(self._slide, level)
        downsample = self._downsample(level)
        xy = (int(self.grid.x[index]), int(self.grid.y[index]))
        size = (int(self.grid.read_width[index]), int(self.grid.read_height[index]))
        return read_level_region(self._arrays[level], downsample, xy, size)

    def __call__(self, index: int) -> np.ndarray:
        region = self.region(index)
        side = self.grid.tile_px
        if region.shape[:2] == (side, side):
            return region
        return np.asarray(Image.fromarray(region).resize((side, side), Image.Resampling.BICUBIC))


TILINGS = ("grid", "deepzoom")
PREDICT_PROTOCOLS = ("imilia",)


def check_tiling(tiling: str, tiles_from: str | Path | None, protocol: str | None) -> str:
    """The tiling ``predict_slide`` uses (``grid`` or ``deepzoom``), or ``ImiliaError``."""
    if protocol is not None and protocol not in PREDICT_PROTOCOLS:
        raise ImiliaError(f"unknown protocol {protocol!r}; choose {', '.join(PREDICT_PROTOCOLS)}")
    if tiling not in TILINGS:
        raise ImiliaError(f"unknown tiling {tiling!r}; choose one of {', '.join(TILINGS)}")
    if tiles_from is not None or protocol == "imilia":
        if tiles_from is not None and not Path(tiles_from).is_file():
            raise ImiliaError(f"tile coordinates file {tiles_from} does not exist")
        return "deepzoom"
    return tiling


def load_tiles_coords(path: str | Path) -> np.ndarray:
    """IMILIA's ``tiles_coords.npy``: (N, 3) int64 (DeepZoom level, column, row); ``ImiliaError``
    for a missing file or another layout."""
    path = Path(path)
    try:
        coords = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise ImiliaError(f"cannot read tile coordinates {path}: {error}") from error
    if coords.ndim != 2 or coords.shape[1] != 3 or len(coords) == 0:
        raise ImiliaError(
            f"{path} holds an array of shape {coords.shape}; IMILIA's tiles_coords.npy is "
            "(n_tiles, 3): DeepZoom level, column, row"
        )
    if not np.allclose(coords, np.round(coords)):
        raise ImiliaError(f"{path}: tile coordinates must be whole numbers")
    coords = np.round(coords).astype(np.int64)
    if len(np.unique(coords[:, 0])) != 1:
        raise ImiliaError(f"{path} mixes DeepZoom levels {sorted(set(coords[:, 0].tolist()))}")
    return coords


def deepzoom_grid(
    slide: Slide,
    *,
    coords: np.ndarray | None = None,
    tissue_mask: TissueMask | None = None,
    target_mpp: float = 0.5,
    min_tissue_fraction: float = 0.5,
    tile_px: int = IMILIA_TILE_PX,
) -> DeepZoomTileGrid:
    """DeepZoom tiles of ``slide``: those of ``coords`` ((N, 3) level, column, row, in that
    order), or every tile of the level nearest to ``target_mpp`` µm/px with at least
    ``min_tissue_fraction`` of ``tissue_mask`` (then in row-major order)."""
    slide_mpp = slide.require_mpp()
    geometry = DeepZoomGeometry.for_slide(slide, tile_px)
    if coords is None:
        if tissue_mask is None:
            raise ImiliaError("a DeepZoom grid without tile coordinates needs a tissue mask")
        dz_level = geometry.level_for_mpp(slide_mpp, target_mpp)
        cols, rows = geometry.level_tiles(dz_level)
        row_ids, col_ids = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        col_ids, row_ids = col_ids.ravel(), row_ids.ravel()
    else:
        dz_level = int(coords[0, 0])
        col_ids, row_ids = coords[:, 1].astype(np.int64), coords[:, 2].astype(np.int64)
    boxes = np.array(
        [geometry.tile(dz_level, int(c), int(r)) for c, r in zip(col_ids, row_ids, strict=True)],
        dtype=np.int64,
    ).reshape(-1, 5)
    native = np.array([info.index for info in slide.level_info if info.native], dtype=np.int64)
    boxes[:, 2] = native[boxes[:, 2]]  # DeepZoom's native level -> the Slide's level index
    scale = geometry.level0_downsample(dz_level)
    width0, height0 = geometry.level_dimensions[0]
    x, y = boxes[:, 0], boxes[:, 1]
    width = np.minimum(tile_px * scale, width0 - x)
    height = np.minimum(tile_px * scale, height0 - y)
    if tissue_mask is not None:
        side = int(tile_px * scale)
        fraction = box_tissue_fraction(tissue_mask, x, y, side)
    else:
        fraction = np.full(len(x), np.nan)
    keep = np.ones(len(x), bool) if coords is not None else fraction >= min_tissue_fraction
    return DeepZoomTileGrid(
        x=x[keep],
        y=y[keep],
        width=width[keep],
        height=height[keep],
        tissue_fraction=fraction[keep],
        tile_px=int(tile_px),
        target_mpp=float(slide_mpp * scale),
        slide_mpp=float(slide_mpp),
        read_level=int(np.bincount(boxes[:, 2]).argmax()) if len(boxes) else 0,
        read_size_px=int(tile_px),
        stride_px=int(tile_px * scale),
        slide_dimensions=(int(width0), int(height0)),
        dz_level=dz_level,
        col=col_ids[keep],
        row=row_ids[keep],
        levels=boxes[keep, 2],
        read_width=boxes[keep, 3],
        read_height=boxes[keep, 4],
    )
