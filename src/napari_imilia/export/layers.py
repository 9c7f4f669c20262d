"""napari layer data <-> level-0 geometries, without importing napari (numpy + shapely).

Coordinate convention (the slide layer's): level-0 pixel ``i`` is centred at ``i * mpp`` µm
in napari's world, so the QuPath position X (pixel ``i`` spans ``[i, i + 1)``) is world
``(X - 0.5) * mpp`` µm; napari shape vertices are (row, col) = (y, x). Tiles, cells and
regions drawn this way sit exactly on the slide's pixels and on the heatmap cells.
``mpp`` is µm per level-0 pixel (1 for a slide shown in pixels).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage
from shapely.geometry import LineString, MultiPolygon, Polygon

from napari_imilia.errors import DataError
from napari_imilia.export.geometry import mask_polygons

#: Offset (level-0 px) between a pixel's index and its centre in QuPath coordinates.
PIXEL_CENTRE_PX = 0.5
#: Vertices of the polygon that stands for a napari ellipse.
ELLIPSE_VERTICES = 64
#: Columns of ``ShapesData.features`` (napari's per-shape table) that are not measurements.
SHAPE_FEATURE_COLUMNS: tuple[str, ...] = ("id", "objectType", "name", "classification", "metadata")


def level0_to_world(xy: np.ndarray, mpp: float) -> np.ndarray:
    """(N, 2) level-0 (x, y) px -> (N, 2) napari world (row, col) µm."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    return (xy[:, ::-1] - PIXEL_CENTRE_PX) * float(mpp)


def world_um_to_level0_xy(rc: np.ndarray, mpp: float) -> np.ndarray:
    """(N, 2) napari world (row, col) µm -> (N, 2) level-0 (x, y) px as QuPath coordinates
    (floats; pixel ``i`` spans ``[i, i + 1)``): the inverse of ``level0_to_world``."""
    rc = np.asarray(rc, dtype=np.float64).reshape(-1, 2)
    return rc[:, ::-1] / float(mpp) + PIXEL_CENTRE_PX


def layer_to_level0(
    vertices: np.ndarray,
    mpp: float,
    scale: Sequence[float] | None = None,
    translate: Sequence[float] | None = None,
) -> np.ndarray:
    """Vertices in a layer's data coordinates (last two axes row, col) -> level-0 (x, y) px,
    through the layer's ``scale`` and ``translate`` (µm) to the world, then ``mpp``."""
    data = np.asarray(vertices, dtype=np.float64)
    if data.ndim != 2 or data.shape[1] < 2:
        raise DataError(f"shape vertices must be an (N, 2+) array, got shape {data.shape}")
    rc = data[:, -2:]
    s = np.ones(2) if scale is None else np.asarray(scale, dtype=np.float64)[-2:]
    t = np.zeros(2) if translate is None else np.asarray(translate, dtype=np.float64)[-2:]
    return world_um_to_level0_xy(rc * s + t, mpp)


def ellipse_polygon(corners_xy: np.ndarray, n: int = ELLIPSE_VERTICES) -> Polygon:
    """The ellipse inscribed in a (possibly rotated) box given by its 4 corners, in order."""
    corners = np.asarray(corners_xy, dtype=np.float64).reshape(4, 2)
    centre = corners.mean(axis=0)
    half_a = (corners[1] + corners[2]) / 2 - centre
    half_b = (corners[2] + corners[3]) / 2 - centre
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return Polygon(centre + np.cos(t)[:, None] * half_a + np.sin(t)[:, None] * half_b)


def shape_geometry(level0_xy: np.ndarray, shape_type: str, what: str = "shape") -> Any:
    """One napari shape (vertices already in level-0 (x, y) px) as a shapely geometry:
    Polygon for polygon / rectangle / ellipse, LineString for line / path / polyline."""
    xy = np.asarray(level0_xy, dtype=np.float64).reshape(-1, 2)
    if not np.isfinite(xy).all():
        raise DataError(f"{what}: vertices contain NaN or infinite values")
    if shape_type == "ellipse":
        return ellipse_polygon(xy)
    if shape_type in ("polygon", "rectangle"):
        if len({tuple(p) for p in xy.tolist()}) < 3:
            raise DataError(f"{what}: a {shape_type} needs at least 3 distinct vertices")
        return Polygon(xy)
    if shape_type in ("line", "path", "polyline"):
        if len(xy) < 2:
            raise DataError(f"{what}: a {shape_type} needs at least 2 vertices")
        return LineString(xy)
    raise DataError(f"{what}: unknown napari shape type {shape_type!r}")


def region_vertices(geometry: Any, what: str = "region") -> list[tuple[float, float]]:
    """Exterior vertices (no closing repeat) of a polygonal geometry, for a review region."""
    if isinstance(geometry, MultiPolygon):
        geometry = max(geometry.geoms, key=lambda p: p.area)
    if not isinstance(geometry, Polygon) or geometry.is_empty or geometry.area <= 0:
        raise DataError(f"{what}: draw a polygon, rectangle or ellipse (a closed area)")
    coords = list(geometry.exterior.coords)[:-1]
    return [(float(x), float(y)) for x, y in coords]


@dataclass
class ShapesData:
    """What a napari Shapes layer needs: ``data`` (world (row, col) µm vertices per shape),
    ``shape_type``, ``features`` (napari's ``layer.features`` table: one row per shape),
    ``edge_color`` (N, 4) RGBA 0-1."""

    data: list[np.ndarray]
    shape_type: list[str]
    features: pd.DataFrame
    edge_color: np.ndarray
    skipped_points: int = 0
    dropped_holes: int = 0
    notes: list[str] = field(default_factory=list)


def _parts(geometry: Any) -> list[Any]:
    if hasattr(geometry, "geoms"):
        return [part for g in geometry.geoms for part in _parts(g)]
    return [] if geometry.is_empty else [geometry]


def objects_to_shapes(
    objects: Sequence[Any], mpp: float, default_rgb: tuple[int, int, int] = (255, 255, 0)
) -> ShapesData:
    """``ImportedObject``s (level-0 px) as Shapes layer data in world µm. A MultiPolygon
    becomes one shape per part (same feature row); polygon holes are dropped (napari shapes
    have none) and points skipped, both counted. Features: id, objectType, name,
    classification, metadata (JSON text) and one column per measurement (NaN if absent)."""
    data: list[np.ndarray] = []
    types: list[str] = []
    rows: list[dict[str, Any]] = []
    colors: list[tuple[int, int, int]] = []
    skipped = holes = 0
    for obj in objects:
        row: dict[str, Any] = {
            "id": obj.id or "",
            "objectType": obj.object_type,
            "name": obj.name or "",
            "classification": obj.class_name or "",
            "metadata": _metadata_text(obj.properties.get("metadata")),
        }
        for key, value in obj.measurements.items():
            row[key if key not in SHAPE_FEATURE_COLUMNS else f"measurement: {key}"] = value
        for part in _parts(obj.geometry):
            if isinstance(part, Polygon):
                holes += len(part.interiors)
                xy, kind = np.asarray(part.exterior.coords)[:-1], "polygon"
            elif isinstance(part, LineString):
                xy, kind = np.asarray(part.coords), "path"
            else:
                skipped += 1
                continue
            data.append(level0_to_world(xy, mpp))
            types.append(kind)
            rows.append(row)
            colors.append(obj.color or default_rgb)
    notes = []
    if skipped:
        notes.append(f"{skipped} point object(s) skipped (a Shapes layer holds no points)")
    if holes:
        notes.append(f"{holes} polygon hole(s) dropped (napari shapes have no holes)")
    table = pd.DataFrame(rows, columns=_table_columns(rows))
    rgba = np.c_[np.asarray(colors, dtype=np.float64).reshape(-1, 3) / 255.0, np.ones(len(colors))]
    return ShapesData(data, types, table, rgba, skipped, holes, notes)


def _metadata_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True) if isinstance(value, dict) else ""


def _table_columns(rows: list[dict[str, Any]]) -> list[str]:
    columns = list(SHAPE_FEATURE_COLUMNS)
    for row in rows:
        columns += [key for key in row if key not in columns]
    return columns


def labels_to_geometries(
    labels: np.ndarray, level0_xy: tuple[float, float], level0_per_px: float
) -> dict[int, Polygon | MultiPolygon]:
    """Each non-zero label of a 2-D image as a level-0 (Multi)Polygon: the union of its
    pixel squares (label pixel (r, c) spans level-0 x0 + c s .. x0 + (c + 1) s, with
    (x0, y0) = ``level0_xy`` and s = ``level0_per_px``), simplified by at most half a pixel."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise DataError(f"labels must be a 2-D image to export as polygons; got {labels.shape}")
    if labels.dtype.kind not in "iub":
        raise DataError(f"labels must hold integers; got dtype {labels.dtype}")
    if not (math.isfinite(level0_per_px) and level0_per_px > 0):
        raise DataError(f"level0_per_px must be a positive number, got {level0_per_px}")
    x0, y0 = (float(v) for v in level0_xy)
    s = float(level0_per_px)
    values = labels.astype(np.int64, copy=False)
    if (values < 0).any():
        raise DataError("labels must be non-negative (0 is background)")
    result: dict[int, Polygon | MultiPolygon] = {}
    for index, box in enumerate(ndimage.find_objects(values), start=1):
        if box is None:
            continue
        rows, cols = box
        mask = values[box] == index
        parts = mask_polygons(
            mask, level0_xy=(x0 + cols.start * s, y0 + rows.start * s), level0_per_px=s
        )
        if parts:
            result[index] = parts[0] if len(parts) == 1 else MultiPolygon(parts)
    return result
