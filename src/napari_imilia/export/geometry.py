"""Generic shapely geometry helpers in level-0 pixels: polygon parts, masks as polygons."""

from __future__ import annotations

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon

from napari_imilia.errors import DataError


def polygon_parts(geometry: shapely.Geometry) -> list[Polygon]:
    """The non-empty polygons of any geometry (collections flattened; lines, points dropped)."""
    if isinstance(geometry, Polygon):
        return [] if geometry.is_empty else [geometry]
    if hasattr(geometry, "geoms"):
        return [part for g in geometry.geoms for part in polygon_parts(g)]
    return []


def polygonal(parts: list[Polygon]) -> Polygon | MultiPolygon:
    """One polygon as itself, several as a MultiPolygon (``parts`` must not be empty)."""
    return parts[0] if len(parts) == 1 else MultiPolygon(parts)


def _row_runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Horizontal runs of True pixels: (row, first column, one past the last column)."""
    padded = np.zeros((mask.shape[0], mask.shape[1] + 2), dtype=np.int8)
    padded[:, 1:-1] = mask
    steps = np.diff(padded, axis=1)
    rows, starts = np.nonzero(steps == 1)
    _, stops = np.nonzero(steps == -1)
    return rows, starts, stops


def mask_polygons(
    mask: np.ndarray,
    *,
    level0_xy: tuple[float, float],
    level0_per_px: float,
    min_area_px: float = 0.0,
) -> list[Polygon]:
    """Connected regions of a 2-D bool ``mask`` as polygons in level-0 pixels.

    Mask pixel (r, c) is the level-0 square ``[x0 + c s, x0 + (c + 1) s) x [y0 + r s,
    y0 + (r + 1) s)`` with (x0, y0) = ``level0_xy`` and s = ``level0_per_px``. Each polygon
    is the exact union of its pixel squares (holes kept), simplified by at most half a mask
    pixel, and valid. Regions smaller than ``min_area_px`` (in mask pixels, before placing)
    are dropped. Sorted by area, largest first.
    """
    mask = np.asarray(mask).astype(bool)
    if mask.ndim != 2:
        raise DataError(f"mask must be a 2-D array to export as polygons; got shape {mask.shape}")
    if not level0_per_px > 0:
        raise DataError(f"level0_per_px must be positive, got {level0_per_px}")
    if not mask.any():
        return []
    rows, starts, stops = _row_runs(mask)
    boxes = shapely.box(starts, rows, stops, rows + 1)
    merged = shapely.union_all(boxes)
    x0, y0 = (float(v) for v in level0_xy)
    scale = float(level0_per_px)
    polygons: list[Polygon] = []
    for part in polygon_parts(merged):
        if part.area < min_area_px:
            continue
        simplified = shapely.simplify(part, 0.5, preserve_topology=True)
        if not simplified.is_valid:
            simplified = shapely.make_valid(simplified)
        for piece in polygon_parts(simplified):
            moved = shapely.transform(piece, lambda xy: xy * scale + np.array([x0, y0]))
            polygons.append(moved)
    polygons.sort(key=lambda p: -p.area)
    return polygons
