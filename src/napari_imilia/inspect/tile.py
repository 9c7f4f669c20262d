"""One tile through both interpretability modules: cells, epithelium, tissue and markers.

``inspect_tile`` reads a tile of the slide (its level-0 box from the prediction's tile
table) at the cell backend's analysis µm/px from the best pyramid level, finds its tissue,
segments the epithelium, runs the cell backend and computes the tile's markers. Every mask
of the result shares one pixel grid: ``TileInspection.mpp`` µm/px, whose pixel (r, c)
covers the level-0 square ``[x0 + c·s, x0 + (c + 1)·s) × [y0 + r·s, y0 + (r + 1)·s)``,
(x0, y0) = ``level0_xy``, s = ``level0_per_px``.

The tile is read with ``context_um`` µm of the slide around it (``inspect.context``): the
backends see whole nuclei on the tile's borders, the cells kept are those whose centroid lies
in the tile (with the area, centroid and contour of the whole nucleus), and the masks are
brought back onto the tile's grid, so adjacent tiles count a nucleus on their shared border
once. A tile with less than ``min_tissue_fraction`` tissue (blank glass, background, a tile
outside the slide) gives zero cells, an empty epithelium and the flag ``no_tissue``; the
backends are not run on it.
"""

from __future__ import annotations

import inspect as _signature
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from shapely.geometry import Polygon

from napari_imilia.cells.base import CellBackend
from napari_imilia.cells.measure import build_tile_cells
from napari_imilia.cells.stain import (
    QUALITY_FLAGS,
    optical_density,
    tile_quality_flags,
    tissue_from_od,
)
from napari_imilia.cells.types import CellTile, TileCells
from napari_imilia.epithelium import METHODS, epithelium_polygons, segment_epithelium
from napari_imilia.errors import ImiliaError
from napari_imilia.inspect.context import CONTEXT_UM, cells_in_box, context_box, onto_grid
from napari_imilia.inspect.read import TileBox, backend_analysis_mpp, read_plan, read_tile_at_mpp
from napari_imilia.markers import TileMarkers, tile_markers
from napari_imilia.slide import Slide

#: Below this tissue fraction a tile is ``no_tissue``: no cells, no epithelium.
MIN_TISSUE_FRACTION = 0.01
#: Epithelium regions smaller than this (µm²) are left out of the polygons.
EPITHELIUM_MIN_AREA_UM2 = 20.0
#: Flags ``inspect_tile`` itself may set (besides the backends' ``CELL_FLAGS``).
INSPECTION_FLAGS: dict[str, str] = {
    "no_tissue": "less than 1% of the tile is tissue (blank glass, background); no cells",
}


@dataclass
class TileInspection:
    """Cells, epithelium and markers of one tile (see the module docstring for the grid).

    ``level0_size_px``: the tile's level-0 (width, height). ``epithelium_mask`` and
    ``tissue_mask``: (H, W) bool on the grid of ``cells.labels``. ``epithelium_polygons``:
    shapely polygons in level-0 pixels. ``flags``: quality flags of the backends
    (``CELL_FLAGS``) and caveats of the epithelium method. ``seconds``: wall time.
    ``config``: the ``InspectConfig`` that made it, when made through ``InspectTools``.
    """

    tile_id: str
    level0_xy: tuple[int, int]
    level0_size_px: tuple[int, int]
    level0_per_px: float
    mpp: float
    cells: TileCells
    epithelium_mask: np.ndarray
    epithelium_polygons: list[Polygon]
    tissue_mask: np.ndarray
    markers: TileMarkers
    cell_backend: str
    epithelium_method: str
    score: float | None = None
    flags: list[str] = field(default_factory=list)
    seconds: float = 0.0
    config: Any | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of the masks."""
        return tuple(self.cells.labels.shape[:2])  # type: ignore[return-value]

    @property
    def n_cells(self) -> int:
        return self.cells.n_cells

    @property
    def tissue_fraction(self) -> float:
        return float(self.tissue_mask.mean()) if self.tissue_mask.size else 0.0

    def class_labels(self) -> np.ndarray:
        """(H, W) uint8 class id per pixel (``CELL_CLASSES`` index; 0 background)."""
        return self.cells.class_map()

    def world_placement(self, slide_mpp: float) -> tuple[tuple[float, float], tuple[float, float]]:
        """napari ``(scale, translate)`` in µm, (row, col), for layers of the masks.

        Matches the slide layer, where level-0 pixel i is centred at i·mpp µm: mask pixel c
        spans level-0 pixels [x0 + c·s, x0 + (c + 1)·s), centred on level-0 pixel
        x0 + c·s + (s − 1)/2, so scale = s·mpp and translate = (x0 + (s − 1)/2)·mpp.
        """
        s = float(self.level0_per_px)
        x0, y0 = self.level0_xy
        half = (s - 1.0) / 2.0
        scale = (s * slide_mpp, s * slide_mpp)
        return scale, ((y0 + half) * slide_mpp, (x0 + half) * slide_mpp)

    def nbytes(self) -> int:
        """Approximate memory of the arrays held (bytes)."""
        arrays = (self.cells.labels, self.epithelium_mask, self.tissue_mask)
        return int(sum(a.nbytes for a in arrays) + sum(c.nbytes for c in self.cells.contours))


def _accepts(function: Any, name: str) -> bool:
    try:
        return name in _signature.signature(function).parameters
    except (TypeError, ValueError):
        return False


def check_epithelium_method(method: str, probe: Any | None, extractor: Any | None) -> None:
    """Raise ``ImiliaError`` for an unknown method or ``"episeg"`` without probe/extractor."""
    if method not in METHODS:
        raise ImiliaError(
            f"unknown epithelium method {method!r}; choose one of {', '.join(METHODS)}"
        )
    if method == "episeg" and (probe is None or extractor is None):
        raise ImiliaError(
            "epithelium method 'episeg' needs a trained probe (--episeg-probe PATH) and the "
            "extractor it was trained on; or use 'stain-heuristic'"
        )


@dataclass
class _Prepared:
    """A tile read with its context (``padded``, ``rgb`` at ``level0_per_px``), its tissue
    and epithelium on that grid, and the tile's own grid (``tile_per_px``, ``tile_shape``),
    waiting for its cells."""

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


def _prepare(
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
) -> _Prepared:
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
    prepared = _Prepared(
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


def _blank_cells(prepared: _Prepared, backend: CellBackend) -> TileCells:
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


def _tile_quality(prepared: _Prepared) -> list[str]:
    """The quality flags of the tile itself (the backend saw its context too)."""
    tile_rgb = prepared.onto_tile(prepared.rgb, prepared.tile_per_px, prepared.tile_shape)
    tile_tissue = prepared.onto_tile(prepared.tissue, prepared.tile_per_px, prepared.tile_shape)
    mpp = prepared.mpp * prepared.tile_per_px / prepared.level0_per_px
    return tile_quality_flags(tile_rgb, tile_tissue, mpp=mpp)


def _cells_of_tile(prepared: _Prepared, padded_cells: TileCells) -> TileCells:
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


def _segment(backend: CellBackend, tiles: list[_Prepared]) -> list[TileCells]:
    """Cells of prepared tiles: one ``segment`` call each (with the epithelium mask) when
    the backend takes one, else one ``segment_many`` (a deep backend batches all tiles'
    windows together on its device)."""
    if not tiles:
        return []
    if _accepts(backend.segment, "epithelium_mask"):
        return [
            backend.segment(
                p.rgb,
                mpp=p.mpp,
                level0_xy=(p.padded.x, p.padded.y),
                level0_per_px=p.level0_per_px,
                tissue_mask=p.tissue,
                epithelium_mask=p.epithelium,
            )
            for p in tiles
        ]
    return backend.segment_many(
        [CellTile(p.rgb, p.mpp, (p.padded.x, p.padded.y), p.level0_per_px, p.tissue) for p in tiles]
    )


def _finish(
    prepared: _Prepared,
    cells: TileCells,
    backend: CellBackend,
    epithelium_method: str,
    epithelium_min_area_um2: float,
    seconds: float,
) -> TileInspection:
    shape = cells.labels.shape
    tissue = prepared.onto_tile(prepared.tissue, cells.level0_per_px, shape)
    if prepared.blank:
        epithelium = np.zeros(shape, dtype=bool)
    else:
        epithelium = prepared.onto_tile(prepared.epithelium, cells.level0_per_px, shape)
    flags = [*cells.flags, *(f for f in prepared.flags if f not in cells.flags)]
    if not prepared.blank and prepared.padded != prepared.box:
        flags = [f for f in flags if f not in QUALITY_FLAGS] + _tile_quality(prepared)
    markers = tile_markers(cells, epithelium, tissue)
    polygons = epithelium_polygons(
        epithelium,
        mpp=cells.mpp,
        level0_xy=cells.level0_xy,
        level0_per_px=cells.level0_per_px,
        min_area_um2=epithelium_min_area_um2,
    )
    box = prepared.box
    return TileInspection(
        tile_id=box.tile_id,
        level0_xy=(box.x, box.y),
        level0_size_px=(box.width, box.height),
        level0_per_px=float(cells.level0_per_px),
        mpp=float(cells.mpp),
        cells=cells,
        epithelium_mask=epithelium,
        epithelium_polygons=polygons,
        tissue_mask=tissue,
        markers=markers,
        cell_backend=str(getattr(backend, "name", type(backend).__name__)),
        epithelium_method=epithelium_method,
        score=box.score,
        flags=flags,
        seconds=seconds,
    )


def inspect_tiles_batched(
    slide: Slide,
    tile_rows: Sequence[Any],
    *,
    cell_backend: CellBackend | str = "classical",
    epithelium_method: str = "stain-heuristic",
    episeg_probe: Any | None = None,
    episeg_extractor: Any | None = None,
    analysis_mpp: float | None = None,
    min_tissue_fraction: float = MIN_TISSUE_FRACTION,
    epithelium_min_area_um2: float = EPITHELIUM_MIN_AREA_UM2,
    context_um: float = CONTEXT_UM,
) -> list[TileInspection]:
    """``inspect_tile`` for several tiles, in order, with one batched cell-backend call.

    Same arguments and results as ``inspect_tile``; a backend without an epithelium-mask
    option gets all tissue tiles in one ``segment_many`` call. ``seconds`` of each result
    is its own reading and epithelium time plus an equal share of the batched cell time.
    """
    from napari_imilia.cells import create_cell_backend

    check_epithelium_method(epithelium_method, episeg_probe, episeg_extractor)
    backend = create_cell_backend(cell_backend) if isinstance(cell_backend, str) else cell_backend
    prepared = [
        _prepare(
            slide,
            row,
            backend,
            epithelium_method=epithelium_method,
            episeg_probe=episeg_probe,
            episeg_extractor=episeg_extractor,
            analysis_mpp=analysis_mpp,
            min_tissue_fraction=min_tissue_fraction,
            context_um=context_um,
        )
        for row in tile_rows
    ]
    tissue_tiles = [p for p in prepared if not p.blank]
    started = time.perf_counter()
    found = iter(_segment(backend, tissue_tiles))
    share = (time.perf_counter() - started) / max(1, len(tissue_tiles))
    results = []
    for p in prepared:
        finish_start = time.perf_counter()
        cells = _blank_cells(p, backend) if p.blank else _cells_of_tile(p, next(found))
        inspection = _finish(p, cells, backend, epithelium_method, epithelium_min_area_um2, 0.0)
        own = time.perf_counter() - finish_start
        inspection.seconds = p.seconds + own + (0.0 if p.blank else share)
        results.append(inspection)
    return results


def inspect_tile(
    slide: Slide,
    tile_row: Any,
    *,
    cell_backend: CellBackend | str = "classical",
    epithelium_method: str = "stain-heuristic",
    episeg_probe: Any | None = None,
    episeg_extractor: Any | None = None,
    analysis_mpp: float | None = None,
    min_tissue_fraction: float = MIN_TISSUE_FRACTION,
    epithelium_min_area_um2: float = EPITHELIUM_MIN_AREA_UM2,
    context_um: float = CONTEXT_UM,
) -> TileInspection:
    """Cells, epithelium, tissue and markers of one tile (see the module docstring).

    ``tile_row``: a row of the prediction's tile table (``tile_id, x, y, width, height``
    in level-0 px, ``score`` optional) or a ``TileBox``. ``cell_backend``: a backend or a
    name for ``create_cell_backend`` (``"classical"``: weight-free). ``epithelium_method``:
    ``"stain-heuristic"`` (weight-free) or ``"episeg"`` with ``episeg_probe`` and the
    ``episeg_extractor`` it was trained on. ``analysis_mpp`` overrides the µm/px the tile
    is read at (default: the backend's). The tile's epithelium mask is given to backends
    that accept one (the classical one uses it as epithelial context). ``context_um``: µm of
    the slide read around the tile (module docstring); 0 analyses the tile alone.
    """
    started = time.perf_counter()
    (result,) = inspect_tiles_batched(
        slide,
        [tile_row],
        cell_backend=cell_backend,
        epithelium_method=epithelium_method,
        episeg_probe=episeg_probe,
        episeg_extractor=episeg_extractor,
        analysis_mpp=analysis_mpp,
        min_tissue_fraction=min_tissue_fraction,
        epithelium_min_area_um2=epithelium_min_area_um2,
        context_um=context_um,
    )
    result.seconds = time.perf_counter() - started
    return result
