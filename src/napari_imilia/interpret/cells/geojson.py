"""Cells as QuPath ``cell`` objects: GeoJSON Features in level-0 pixels (top-left origin).

Each cell is a GeoJSON Feature with QuPath's ``nucleusGeometry`` member beside ``geometry``
(the cell boundary), classified with ``CELL_CLASS_COLORS`` and measured with QuPath's names
(``CELL_MEASUREMENTS``). The generic parts (rounding, orientation, ids, measurements) are
:mod:`napari_imilia.export.geojson_objects`'.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import shapely
from shapely.geometry import MultiPolygon, Polygon

from napari_imilia.errors import DataError
from napari_imilia.export.context import ExportContext, classification, stable_id
from napari_imilia.export.geojson_objects import (
    geometry_json,
    prepare_polygon,
    require_columns,
    row_measurements,
)
from napari_imilia.export.geometry import polygon_parts, polygonal
from napari_imilia.interpret.cells.types import CELL_CLASS_COLORS, TileCells

#: Cell table column -> QuPath measurement name (QuPath's own names for the same quantities).
CELL_MEASUREMENTS: dict[str, str] = {
    "area_um2": "Nucleus: Area µm^2",
    "eccentricity": "Nucleus: Eccentricity",
    "mean_hematoxylin_od": "Nucleus: Hematoxylin OD mean",
    "probability": "Classification probability",
}


def _contour_polygon(points: np.ndarray, what: str) -> Polygon | None:
    xy = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if not np.isfinite(xy).all():
        raise DataError(f"{what}: contour has NaN or infinite coordinates")
    if len(xy) < 3:
        return None
    polygon = Polygon(xy)
    if polygon.area <= 0:  # fewer than 3 distinct points, or all on one line
        return None
    if not polygon.is_valid:
        parts = polygon_parts(shapely.make_valid(polygon))
        polygon = max(parts, key=lambda p: p.area) if parts else None
    return polygon


def _nucleus_polygons(table: pd.DataFrame, contours: Sequence[np.ndarray], mpp: float) -> list:
    """Nucleus polygons; a degenerate contour becomes a 16-gon of the cell's area."""
    centroids = table[["centroid_x", "centroid_y"]].to_numpy(dtype=np.float64)
    if not np.isfinite(centroids).all():
        raise DataError("cell table: centroid_x / centroid_y contain NaN or infinite values")
    areas = (
        table["area_um2"].to_numpy(dtype=np.float64)
        if "area_um2" in table
        else np.full(len(table), np.nan)
    )
    polygons, n_fallback = [], 0
    cell_ids = table["cell_id"].astype(str).tolist()
    for i, contour in enumerate(contours):
        polygon = _contour_polygon(contour, f"cell {cell_ids[i]}")
        if polygon is None:
            n_fallback += 1
            area = areas[i] if np.isfinite(areas[i]) and areas[i] > 0 else math.pi * mpp * mpp
            radius_px = max(math.sqrt(area / math.pi) / mpp, 0.5)
            polygon = shapely.Point(centroids[i]).buffer(radius_px, quad_segs=4)
        polygons.append(polygon)
    if n_fallback:
        warnings.warn(
            f"{n_fallback} cell contour(s) had no area (fewer than 3 distinct points); exported as "
            "circles of the cell's area around its centroid",
            stacklevel=3,
        )
    return polygons


def expand_nuclei(
    nuclei: Sequence[Polygon], centroids_xy: np.ndarray, distance_px: float
) -> list[Polygon | MultiPolygon]:
    """Cell boundaries: nuclei grown by ``distance_px`` (level-0 px), each kept inside the
    Voronoi region of its centroid (as QuPath's cell expansion stops half-way between
    nuclei), and always containing its own nucleus."""
    grown = shapely.buffer(np.asarray(nuclei, dtype=object), distance_px, quad_segs=4)
    if len(nuclei) >= 2:
        unique_xy, inverse = np.unique(centroids_xy, axis=0, return_inverse=True)
        if len(unique_xy) >= 2:
            bounds = shapely.total_bounds(grown)
            envelope = shapely.box(*bounds).buffer(distance_px + 1.0)
            regions = shapely.voronoi_polygons(
                shapely.multipoints(unique_xy), extend_to=envelope, ordered=True
            )
            cell_regions = np.asarray(regions.geoms, dtype=object)[inverse.ravel()]
            grown = shapely.intersection(grown, cell_regions)
    cells = shapely.union(grown, np.asarray(nuclei, dtype=object))
    return [polygonal(polygon_parts(cell)) for cell in cells]


def cells_to_features(
    cells: TileCells | pd.DataFrame,
    ctx: ExportContext,
    *,
    contours: Sequence[np.ndarray] | None = None,
    cell_expansion_um: float = 0.0,
) -> list[dict[str, Any]]:
    """One QuPath ``cell`` object per row, classified with ``CELL_CLASS_COLORS``.

    ``cells`` is a ``TileCells`` or a concatenated cell table (``TileCells.table`` columns)
    with ``contours``: one (K, 2) array of level-0 (x, y) nucleus points per row.
    ``nucleusGeometry`` is the nucleus. ``geometry`` is the cell boundary: the nucleus itself
    when ``cell_expansion_um`` is 0 (the default: our backends segment nuclei only), else the
    nucleus grown by that many µm (``ctx.mpp`` µm/px), limited half-way to the neighbouring
    nuclei. Measurements are named as in QuPath (``CELL_MEASUREMENTS``).
    """
    if isinstance(cells, TileCells):
        table, contours = cells.table, cells.contours
    else:
        table = cells
        if contours is None:
            raise DataError("cells_to_features: a cell table needs its contours (one per row)")
    if len(contours) != len(table):
        raise DataError(f"cell table has {len(table)} rows but {len(contours)} contours")
    require_columns(table, ["cell_id", "class_name", "centroid_x", "centroid_y"], "cell table")
    if not ctx.mpp > 0:
        raise DataError(f"export context: mpp must be positive (µm/px), got {ctx.mpp}")
    if cell_expansion_um < 0:
        raise DataError(f"cell_expansion_um must be >= 0, got {cell_expansion_um}")
    table = table.reset_index(drop=True)
    nuclei = _nucleus_polygons(table, contours, float(ctx.mpp))
    centroids = table[["centroid_x", "centroid_y"]].to_numpy(dtype=np.float64)
    boundaries = (
        expand_nuclei(nuclei, centroids, cell_expansion_um / float(ctx.mpp))
        if cell_expansion_um > 0 and nuclei
        else nuclei
    )
    columns = [c for c in CELL_MEASUREMENTS if c in table.columns]
    renamed = table[columns].rename(columns=CELL_MEASUREMENTS)
    measurements = row_measurements(renamed, list(renamed.columns))
    cell_ids = table["cell_id"].astype(str).tolist()
    class_names = table["class_name"].tolist()
    classes = {
        name: classification(name, CELL_CLASS_COLORS.get(name))
        for name in set(class_names)
        if isinstance(name, str) and name
    }
    objects = []
    for i, cell_id in enumerate(cell_ids):
        nucleus = prepare_polygon(nuclei[i], f"cell {cell_id} nucleus")
        boundary = nucleus if boundaries is nuclei else prepare_polygon(boundaries[i], cell_id)
        properties: dict[str, Any] = {"objectType": "cell", "name": cell_id}
        if class_names[i] in classes:
            cls = classes[class_names[i]]
            properties["classification"] = {"name": cls["name"], "color": list(cls["color"])}
        if measurements[i]:
            properties["measurements"] = measurements[i]
        cx, cy = centroids[i]
        objects.append(
            {
                "type": "Feature",
                "id": stable_id("cell", ctx.slide_id, cell_id, f"{cx:.2f}", f"{cy:.2f}"),
                "geometry": geometry_json(boundary),
                "nucleusGeometry": geometry_json(nucleus),
                "properties": properties,
            }
        )
    return objects
