"""One tile through both interpretability modules: cells, epithelium, tissue and markers.

``inspect_tile`` reads a tile of the slide (its level-0 box from the prediction's tile
table) at the cell backend's analysis µm/px from the best pyramid level, finds its tissue,
segments the epithelium, runs the cell backend and computes the tile's markers. Every mask
of the result shares one pixel grid: ``TileInspection.mpp`` µm/px, whose pixel (r, c)
covers the level-0 square ``[x0 + c·s, x0 + (c + 1)·s) × [y0 + r·s, y0 + (r + 1)·s)``,
(x0, y0) = ``level0_xy``, s = ``level0_per_px``.

A tile with less than ``min_tissue_fraction`` tissue (blank glass, background, a tile
outside the slide) gives zero cells, an empty epithelium and the flag ``no_tissue``; the
backends are not run on it.
"""

from __future__ import annotations

import inspect as _signature
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image
from shapely.geometry import Polygon

from napari_imilia.cells.base import RESAMPLE_TOLERANCE, CellBackend, resize_nearest
from napari_imilia.cells.measure import build_tile_cells
from napari_imilia.cells.stain import optical_density, tissue_from_od
from napari_imilia.cells.types import TileCells
from napari_imilia.epithelium import METHODS, epithelium_polygons, segment_epithelium
from napari_imilia.errors import DataError, ImiliaError
from napari_imilia.markers import TileMarkers, tile_markers
from napari_imilia.slide import Slide
from napari_imilia.tiling import level_array, read_level_region, round_half_up

#: µm/px tiles are analysed at when the backend has no fixed resolution (HistoPLUS JSON
#: of unknown MPP, classical with ``analysis_mpp=None``): IMILIA's tiling resolution.
DEFAULT_ANALYSIS_MPP = 0.5
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


@dataclass(frozen=True)
class TileBox:
    """A tile's level-0 box: top-left (x, y) and (width, height) in level-0 pixels."""

    tile_id: str
    x: int
    y: int
    width: int
    height: int
    score: float | None = None

    @classmethod
    def from_row(cls, row: Any) -> TileBox:
        """From a tile-table row (pandas Series or mapping with tile_id, x, y, width, height;
        score optional)."""
        get = row.get if isinstance(row, Mapping) or hasattr(row, "get") else None
        if get is None:
            raise DataError(f"a tile row must be a mapping or a table row; got {type(row)}")
        missing = [k for k in ("x", "y", "width", "height") if get(k) is None]
        if missing:
            raise DataError(f"tile row lacks {', '.join(missing)} (level-0 px)")
        x, y, width, height = (int(get(k)) for k in ("x", "y", "width", "height"))
        if width <= 0 or height <= 0:
            raise DataError(f"tile {get('tile_id')} has size {width} x {height} px")
        score = get("score")
        score = None if score is None or not math.isfinite(float(score)) else float(score)
        tile_id = get("tile_id")
        return cls(str(tile_id) if tile_id is not None else f"{x}_{y}", x, y, width, height, score)


def read_tile_at_mpp(
    slide: Slide, box: TileBox, analysis_mpp: float
) -> tuple[np.ndarray, float, float]:
    """The level-0 box read at about ``analysis_mpp`` µm/px: ``(rgb, mpp, level0_per_px)``.

    Pixels come from the coarsest native level at least as fine as ``analysis_mpp``; when
    that level's pixels are within ``RESAMPLE_TOLERANCE`` of the target they are used as
    they are, else resized (PIL bilinear, antialiased). ``level0_per_px`` = box width /
    image width; areas outside the slide are white.
    """
    slide_mpp = slide.require_mpp()
    if not (math.isfinite(analysis_mpp) and analysis_mpp > 0):
        raise DataError(f"analysis µm/px must be positive; got {analysis_mpp}")
    out_w = max(1, round_half_up(box.width * slide_mpp / analysis_mpp))
    out_h = max(1, round_half_up(box.height * slide_mpp / analysis_mpp))
    level = slide.best_level_for_downsample(analysis_mpp / slide_mpp)
    downsample = slide.level_info[level].downsample
    read_w = max(1, round_half_up(box.width / downsample))
    read_h = max(1, round_half_up(box.height / downsample))
    region = read_level_region(
        level_array(slide, level), downsample, (box.x, box.y), (read_w, read_h)
    )
    if abs(read_w / out_w - 1) <= RESAMPLE_TOLERANCE and abs(read_h / out_h - 1) <= (
        RESAMPLE_TOLERANCE
    ):
        rgb = np.ascontiguousarray(region)
    else:
        image = Image.fromarray(region).resize((out_w, out_h), Image.Resampling.BILINEAR)
        rgb = np.asarray(image)
    level0_per_px = box.width / rgb.shape[1]
    return rgb, slide_mpp * level0_per_px, level0_per_px


def backend_analysis_mpp(backend: CellBackend, slide_mpp: float) -> float:
    """µm/px to read tiles at for ``backend``: its ``analysis_mpp`` when finite, else
    ``DEFAULT_ANALYSIS_MPP``; never finer than the slide (no upsampling beyond level 0)."""
    wanted = float(getattr(backend, "analysis_mpp", math.nan))
    if not (math.isfinite(wanted) and wanted > 0):
        wanted = DEFAULT_ANALYSIS_MPP
    return wanted if wanted >= slide_mpp * (1 - RESAMPLE_TOLERANCE) else slide_mpp


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


def _on_grid(mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A bool mask brought to ``shape`` (nearest neighbour) when the backend resampled."""
    mask = np.asarray(mask, dtype=bool)
    return mask if mask.shape == tuple(shape) else resize_nearest(mask, tuple(shape))


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
) -> TileInspection:
    """Cells, epithelium, tissue and markers of one tile (see the module docstring).

    ``tile_row``: a row of the prediction's tile table (``tile_id, x, y, width, height``
    in level-0 px, ``score`` optional) or a ``TileBox``. ``cell_backend``: a backend or a
    name for ``create_cell_backend`` (``"classical"``: weight-free). ``epithelium_method``:
    ``"stain-heuristic"`` (weight-free) or ``"episeg"`` with ``episeg_probe`` and the
    ``episeg_extractor`` it was trained on. ``analysis_mpp`` overrides the µm/px the tile
    is read at (default: the backend's). The tile's epithelium mask is given to backends
    that accept one (the classical one uses it as epithelial context).
    """
    from napari_imilia.cells import create_cell_backend

    started = time.perf_counter()
    check_epithelium_method(epithelium_method, episeg_probe, episeg_extractor)
    box = tile_row if isinstance(tile_row, TileBox) else TileBox.from_row(tile_row)
    backend = create_cell_backend(cell_backend) if isinstance(cell_backend, str) else cell_backend
    slide_mpp = slide.require_mpp()
    mpp_wanted = backend_analysis_mpp(backend, slide_mpp) if analysis_mpp is None else analysis_mpp
    rgb, mpp, per_px = read_tile_at_mpp(slide, box, float(mpp_wanted))
    tissue = tissue_from_od(optical_density(rgb), mpp=mpp)
    flags: list[str] = []
    if tissue.mean() < min_tissue_fraction:
        cells = build_tile_cells(
            np.zeros(tissue.shape, dtype=np.int32),
            np.zeros(1, dtype=np.int64),
            None,
            None,
            mpp=mpp,
            level0_xy=(box.x, box.y),
            level0_per_px=per_px,
            backend=str(getattr(backend, "name", "cells")),
        )
        epithelium = np.zeros(tissue.shape, dtype=bool)
        flags.append("no_tissue")
    else:
        result = segment_epithelium(
            rgb,
            mpp=mpp,
            method=epithelium_method,
            probe=episeg_probe,
            extractor=episeg_extractor,
            tissue_mask=tissue,
        )
        flags.extend(result.flags)
        extra = (
            {"epithelium_mask": result.mask} if _accepts(backend.segment, "epithelium_mask") else {}
        )
        cells = backend.segment(
            rgb,
            mpp=mpp,
            level0_xy=(box.x, box.y),
            level0_per_px=per_px,
            tissue_mask=tissue,
            **extra,
        )
        epithelium = _on_grid(result.mask, cells.labels.shape)
        tissue = _on_grid(tissue, cells.labels.shape)
    flags = [*cells.flags, *(f for f in flags if f not in cells.flags)]
    markers = tile_markers(cells, epithelium, tissue)
    polygons = epithelium_polygons(
        epithelium,
        mpp=cells.mpp,
        level0_xy=cells.level0_xy,
        level0_per_px=cells.level0_per_px,
        min_area_um2=epithelium_min_area_um2,
    )
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
        seconds=time.perf_counter() - started,
    )
