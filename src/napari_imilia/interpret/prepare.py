"""A tile read with its context, its tissue and epithelium, waiting for its cells.

``prepare_tile`` reads a tile's level-0 box grown by ``context_um`` µm (``interpret.context``)
at the cell backend's µm/px, finds its tissue, stops at ``no_tissue`` when the tile itself
has too little, and segments the epithelium (on the padded tile; EpiSeg on the tile itself,
its extractor takes tiles of its own size). ``cells_of_tile`` keeps the backend's cells whose
centroid is in the tile, on the tile's grid; ``tile_quality`` gives the tile's own quality
flags; ``blank_cells`` the empty cells of a ``no_tissue`` tile.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_imilia.interpret.cells.base import CellBackend
from napari_imilia.interpret.cells.measure import build_tile_cells
from napari_imilia.interpret.cells.stain import optical_density, tile_quality_flags, tissue_from_od
from napari_imilia.interpret.cells.types import TileCells
from napari_imilia.interpret.context import cells_in_box, context_box, onto_grid
from napari_imilia.interpret.epithelium import segment_epithelium
from napari_imilia.interpret.read import TileBox, backend_analysis_mpp, read_plan, read_tile_at_mpp
from napari_imilia.slide import Slide


@dataclass
class PreparedTile:
    """A tile read with its context (``padded``, ``rgb`` at ``level0_per_px``), its tissue
    and epithelium on that grid, and the tile's own grid (``tile_per_px``, ``tile_shape``,
    as an unpadded read would give), waiting for its cells."""

    box: TileBox
    padded: TileBox
    rgb: np.ndarray
    mpp: float
    level0_per_px: float
    tile_per_px: float
    tile_shape: tuple[int, int]
    tissue: np.ndarray
    epithelium: np.ndarray | None
    flags: list[str]
    seconds: float

    @property
    def blank(self) -> bool:
        return self.epithelium is None

    def onto_tile(self, mask: np.ndarray, per_px: float, shape: tuple[int, int]) -> np.ndarray:
        """A mask of the padded read grid on a grid of the tile's box."""
        return onto_grid(
            mask,
            source_xy=(self.padded.x, self.padded.y),
            source_per_px=self.level0_per_px,
            target_xy=(self.box.x, self.box.y),
            target_per_px=per_px,
            target_shape=shape,
        )


def prepare_tile(
    slide: Slide,
    tile_row: Any,
    backend: CellBackend,
    *,
    epithelium_method: str,
    episeg_probe: Any | None,
    episeg_extractor: Any | None,
    analysis_mpp: float | None,
    min_tissue_fraction: float,
    context_um: float,
) -> PreparedTile:
    started = time.perf_counter()
    box = tile_row if isinstance(tile_row, TileBox) else TileBox.from_row(tile_row)
    slide_mpp = slide.require_mpp()
    mpp_wanted = backend_analysis_mpp(backend, slide_mpp) if analysis_mpp is None else analysis_mpp
    plan = read_plan(slide, box, float(mpp_wanted))
    tile_per_px, tile_shape = plan.level0_per_px(box), (plan.out_wh[1], plan.out_wh[0])
    margin_px = math.ceil(context_um / (slide_mpp * tile_per_px)) if context_um > 0 else 0
    padded = context_box(box, round(margin_px * tile_per_px))
    rgb, mpp, per_px = read_tile_at_mpp(slide, padded, float(mpp_wanted))
    tissue = tissue_from_od(optical_density(rgb), mpp=mpp)
    prepared = PreparedTile(
        box, padded, rgb, mpp, per_px, tile_per_px, tile_shape, tissue, None, [], 0.0
    )
    if prepared.onto_tile(tissue, tile_per_px, tile_shape).mean() < min_tissue_fraction:
        prepared.flags = ["no_tissue"]
        return prepared
    if epithelium_method == "episeg":  # the probe's extractor takes tiles of its own size
        tile_rgb = prepared.onto_tile(rgb, tile_per_px, tile_shape)
        tile_tissue = prepared.onto_tile(tissue, tile_per_px, tile_shape)
    else:
        tile_rgb, tile_tissue = rgb, tissue
    result = segment_epithelium(
        tile_rgb,
        mpp=mpp,
        method=epithelium_method,
        probe=episeg_probe,
        extractor=episeg_extractor,
        tissue_mask=tile_tissue,
    )
    prepared.epithelium, prepared.flags = result.mask, list(result.flags)
    if epithelium_method == "episeg":  # back on the padded grid, no epithelium around
        prepared.epithelium = onto_grid(
            result.mask,
            source_xy=(box.x, box.y),
            source_per_px=tile_per_px,
            target_xy=(padded.x, padded.y),
            target_per_px=per_px,
            target_shape=tissue.shape,
            outside=False,
        )
    prepared.seconds = time.perf_counter() - started
    return prepared


def blank_cells(prepared: PreparedTile, backend: CellBackend) -> TileCells:
    return build_tile_cells(
        np.zeros(prepared.tile_shape, dtype=np.int32),
        np.zeros(1, dtype=np.int64),
        None,
        None,
        mpp=prepared.mpp * prepared.tile_per_px / prepared.level0_per_px,
        level0_xy=(prepared.box.x, prepared.box.y),
        level0_per_px=prepared.tile_per_px,
        backend=str(getattr(backend, "name", "cells")),
    )


def tile_quality(prepared: PreparedTile) -> list[str]:
    """The quality flags of the tile itself (the backend saw its context too)."""
    tile_rgb = prepared.onto_tile(prepared.rgb, prepared.tile_per_px, prepared.tile_shape)
    tile_tissue = prepared.onto_tile(prepared.tissue, prepared.tile_per_px, prepared.tile_shape)
    mpp = prepared.mpp * prepared.tile_per_px / prepared.level0_per_px
    return tile_quality_flags(tile_rgb, tile_tissue, mpp=mpp)


def cells_of_tile(prepared: PreparedTile, padded_cells: TileCells) -> TileCells:
    """The cells of the padded tile whose centroid is in the tile, on a grid of the tile:
    the tile's own read grid, or the backend's finer/coarser one when it resampled."""
    ratio = float(padded_cells.level0_per_px) / prepared.level0_per_px
    per_px = prepared.tile_per_px * ratio
    shape = prepared.tile_shape
    if abs(ratio - 1.0) > 1e-9:
        shape = (
            max(1, round(prepared.box.height / per_px)),
            max(1, round(prepared.box.width / per_px)),
        )
    return cells_in_box(padded_cells, prepared.box, level0_per_px=per_px, shape=shape)
