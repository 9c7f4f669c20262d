"""One tile through both interpretability modules: cells, epithelium, tissue and markers.

``inspect_tile`` reads a tile of the slide (its level-0 box from the prediction's tile
table) at the cell backend's analysis µm/px from the best pyramid level, finds its tissue,
segments the epithelium, runs the cell backend and computes the tile's markers. Every mask
of the result shares one pixel grid: ``TileInspection.mpp`` µm/px, whose pixel (r, c)
covers the level-0 square ``[x0 + c·s, x0 + (c + 1)·s) × [y0 + r·s, y0 + (r + 1)·s)``,
(x0, y0) = ``level0_xy``, s = ``level0_per_px``.

The tile is read with ``context_um`` µm of the slide around it (``interpret.context``): the
backends see whole nuclei on the tile's borders, the cells kept are those whose centroid lies
in the tile (with the area, centroid and contour of the whole nucleus), and the masks are
brought back onto the tile's grid, so adjacent tiles count a nucleus on their shared border
once. A tile with less than ``min_tissue_fraction`` tissue (blank glass, background, a tile
outside the slide) gives zero cells, an empty epithelium and the flag ``no_tissue``; the
backends are not run on it.
"""

from __future__ import annotations

import inspect as _signature
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from shapely.geometry import Polygon

from napari_imilia.errors import ImiliaError
from napari_imilia.interpret.cells.base import CellBackend
from napari_imilia.interpret.cells.stain import QUALITY_FLAGS
from napari_imilia.interpret.cells.types import CellTile, TileCells
from napari_imilia.interpret.context import CONTEXT_UM
from napari_imilia.interpret.epithelium import METHODS, epithelium_polygons
from napari_imilia.interpret.markers import TileMarkers, tile_markers
from napari_imilia.interpret.prepare import (
    PreparedTile,
    blank_cells,
    cells_of_tile,
    prepare_tile,
    tile_quality,
)
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


def _segment(backend: CellBackend, tiles: list[PreparedTile]) -> list[TileCells]:
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
    prepared: PreparedTile,
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
        flags = [f for f in flags if f not in QUALITY_FLAGS] + tile_quality(prepared)
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
    from napari_imilia.interpret.cells import create_cell_backend

    check_epithelium_method(epithelium_method, episeg_probe, episeg_extractor)
    backend = create_cell_backend(cell_backend) if isinstance(cell_backend, str) else cell_backend
    prepared = [
        prepare_tile(
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
        cells = blank_cells(p, backend) if p.blank else cells_of_tile(p, next(found))
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
