"""What a census keeps of one inspected tile: its areas and its cells as columns.

A worker turns each ``TileInspection`` into a :class:`CensusTile` (no images, small to
pickle): the tile's box (level-0 px), tissue and epithelium areas (mm², on the inspection's
masks), flags, and per cell its level-0 centroid, class, confidence, nucleus area (µm²),
compartment and nucleus outline (collinear points dropped: the same polygon, about a third of
the vertices). :func:`cells_table` turns tiles into the Arrow table of ``cells.parquet``.

Compartments (:data:`COMPARTMENTS`), from the mask pixel under the cell's centroid, the rule
the tile markers use for intraepithelial cells (so the census's epithelium counts equal the
markers' intraepithelial counts): ``epithelium`` (epithelium mask within tissue), ``lamina
propria`` (tissue that is not epithelium: the epithelium method knows no deeper layers, so
submucosa or muscle in a tile count here too) and ``other`` (off the tissue mask: lumen,
debris, glass).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from napari_imilia.interpret.cells.types import CELL_CLASSES
from napari_imilia.interpret.markers import _centroids_in_mask  # the markers' own rule
from napari_imilia.interpret.tile import TileInspection

#: Where a cell sits, by code (the ``compartment`` column holds these names).
COMPARTMENTS: tuple[str, ...] = ("epithelium", "lamina propria", "other")
#: The per-cell columns of :class:`CensusTile` and ``cells.parquet`` (besides the outline).
CELL_COLUMNS: tuple[str, ...] = (
    "tile_id",
    "label",
    "centroid_x",
    "centroid_y",
    "class_name",
    "probability",
    "area_um2",
    "compartment",
)


@dataclass
class CensusTile:
    """One tile of a census. Box in level-0 px; areas in mm²; ``cells`` holds the arrays
    ``label`` (int32), ``centroid_x``/``centroid_y`` (float64, level-0 px), ``class_id``
    (uint8, ``CELL_CLASSES`` index), ``probability`` and ``area_um2`` (float32),
    ``compartment`` (uint8, ``COMPARTMENTS`` index), ``outline_offsets`` (int64, n + 1) and
    ``outline_xy`` (float64 (m, 2), level-0 px)."""

    tile_id: str
    x: int
    y: int
    width: int
    height: int
    tissue_area_mm2: float
    epithelium_area_mm2: float
    flags: list[str] = field(default_factory=list)
    seconds: float = 0.0
    cells: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n_cells(self) -> int:
        return len(self.cells.get("label", ()))

    def row(self) -> dict[str, Any]:
        """The tile's entry of ``tiles.csv`` before the counts."""
        return {
            "tile_id": self.tile_id,
            "x": self.x,
            "y": self.y,
            "width": self.width,
            "height": self.height,
            "tissue_area_mm2": self.tissue_area_mm2,
            "epithelium_area_mm2": self.epithelium_area_mm2,
            "n_cells": self.n_cells,
            "flags": ";".join(self.flags),
        }


def compartments_of(inspection: TileInspection) -> np.ndarray:
    """(n,) uint8 ``COMPARTMENTS`` code of each cell of the inspection (module docstring)."""
    cells = inspection.cells
    tissue = inspection.tissue_mask.astype(bool)
    epithelium = inspection.epithelium_mask.astype(bool) & tissue
    in_epithelium = _centroids_in_mask(cells, epithelium, cells.mpp)
    in_tissue = _centroids_in_mask(cells, tissue, cells.mpp)
    codes = np.full(len(cells.table), 2, dtype=np.uint8)
    codes[in_tissue] = 1
    codes[in_epithelium] = 0
    return codes


def _outlines(contours: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Outlines without their collinear points, as (offsets, xy)."""
    import shapely

    kept = []
    for contour in contours:
        xy = np.asarray(contour, dtype=np.float64).reshape(-1, 2)
        if len(xy) >= 4:
            simple = shapely.simplify(shapely.Polygon(xy), 0.0)
            if isinstance(simple, shapely.Polygon) and not simple.is_empty:
                xy = shapely.get_coordinates(simple.exterior)
        kept.append(xy)
    lengths = np.fromiter((len(k) for k in kept), dtype=np.int64, count=len(kept))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    xy = np.concatenate(kept) if kept else np.zeros((0, 2))
    return offsets, xy.astype(np.float64)


def census_tile(inspection: TileInspection) -> CensusTile:
    """The census record of an inspection (a worker's ``record`` for ``iter_tile_records``)."""
    table = inspection.cells.table
    offsets, xy = _outlines(inspection.cells.contours)
    x, y = inspection.level0_xy
    width, height = inspection.level0_size_px
    return CensusTile(
        tile_id=inspection.tile_id,
        x=int(x),
        y=int(y),
        width=int(width),
        height=int(height),
        tissue_area_mm2=float(inspection.markers.tissue_area_mm2),
        epithelium_area_mm2=float(inspection.markers.epithelium_area_mm2),
        flags=list(inspection.flags),
        seconds=float(inspection.seconds),
        cells={
            "label": table["label"].to_numpy(np.int32),
            "centroid_x": table["centroid_x"].to_numpy(np.float64),
            "centroid_y": table["centroid_y"].to_numpy(np.float64),
            "class_id": table["class_id"].to_numpy(np.uint8),
            "probability": table["probability"].to_numpy(np.float32),
            "area_um2": table["area_um2"].to_numpy(np.float32),
            "compartment": compartments_of(inspection),
            "outline_offsets": offsets,
            "outline_xy": xy,
        },
    )


def cells_table(tiles: list[CensusTile]) -> Any:
    """The cells of ``tiles`` as a ``pyarrow.Table`` with ``CELL_COLUMNS`` and ``outline``
    (list of float32 x, y, x, y... level-0 px); names are dictionary-encoded."""
    import pyarrow as pa

    def joined(key: str, dtype: Any) -> np.ndarray:
        parts = [t.cells[key] for t in tiles if t.n_cells]
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)

    counts = [t.n_cells for t in tiles]
    tile_index = np.repeat(np.arange(len(tiles), dtype=np.int32), counts)
    tile_ids = pa.array([t.tile_id for t in tiles], pa.string())
    outlines, starts = [], [0]
    for tile in tiles:
        if tile.n_cells:
            outlines.append(tile.cells["outline_xy"].astype(np.float32).ravel())
            starts.extend((tile.cells["outline_offsets"][1:] * 2 + starts[-1]).tolist())
    flat = np.concatenate(outlines) if outlines else np.zeros(0, np.float32)
    outline = pa.LargeListArray.from_arrays(
        pa.array(starts, pa.int64()), pa.array(flat, pa.float32())
    )
    class_names = pa.array(list(CELL_CLASSES), pa.string())
    compartment_names = pa.array(list(COMPARTMENTS), pa.string())
    return pa.table(
        {
            "tile_id": pa.DictionaryArray.from_arrays(pa.array(tile_index, pa.int32()), tile_ids),
            "label": pa.array(joined("label", np.int32)),
            "centroid_x": pa.array(joined("centroid_x", np.float64)),
            "centroid_y": pa.array(joined("centroid_y", np.float64)),
            "class_name": pa.DictionaryArray.from_arrays(
                pa.array(joined("class_id", np.int8)), class_names
            ),
            "probability": pa.array(joined("probability", np.float32)),
            "area_um2": pa.array(joined("area_um2", np.float32)),
            "compartment": pa.DictionaryArray.from_arrays(
                pa.array(joined("compartment", np.int8)), compartment_names
            ),
            "outline": outline,
        }
    )
