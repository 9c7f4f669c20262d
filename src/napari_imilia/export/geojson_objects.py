"""Tiles and polygons as QuPath GeoJSON objects (level-0 pixels, top-left origin).

Every object is a GeoJSON Feature ``{"type": "Feature", "id": <uuid5>, "geometry": ...,
"properties": ...}``. ``properties`` holds only
keys QuPath reads: ``objectType``, ``name``, ``color``, ``classification``, ``isLocked``,
``measurements`` (a name -> number dict) and ``metadata`` (a name -> text dict).

Coordinates are rounded to 0.01 px; polygon exterior rings have positive signed area in the
(x, y) values as written (RFC 7946 counter-clockwise; clockwise on screen, where y points
down) and holes the opposite. A polygon that would become invalid by the rounding is snapped
to the 0.01 px grid with ``shapely.set_precision``, which keeps it valid.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import shapely
from shapely.geometry import MultiPolygon, Polygon, mapping

from napari_imilia.errors import DataError
from napari_imilia.export.context import ExportContext, check_rgb, classification, stable_id
from napari_imilia.export.geometry import polygon_parts, polygonal

#: Decimal places of every written coordinate (level-0 pixels).
COORD_DECIMALS = 2
#: Tile table columns that define the tile rectangle (level-0 pixels) rather than measurements.
TILE_GEOMETRY_COLUMNS: tuple[str, ...] = ("tile_id", "x", "y", "width", "height")
#: Keys accepted in ``polygons_to_features(properties=...)``: the ones QuPath reads.
QUPATH_PROPERTY_KEYS: frozenset[str] = frozenset(
    {"name", "color", "classification", "isLocked", "measurements", "metadata"}
)
POLYGON_OBJECT_TYPES: tuple[str, ...] = ("annotation", "detection", "tile")


def _round_coords(geometry: shapely.Geometry) -> shapely.Geometry:
    # "+ 0.0" turns -0.0 into 0.0 so equal geometries always print the same.
    return shapely.transform(geometry, lambda xy: np.round(xy, COORD_DECIMALS) + 0.0)


def prepare_polygon(geometry: shapely.Geometry, what: str) -> Polygon | MultiPolygon:
    """Oriented, 0.01 px-rounded, valid copy of a (Multi)Polygon in level-0 pixels."""
    if not isinstance(geometry, Polygon | MultiPolygon):
        raise DataError(f"{what}: expected a shapely Polygon or MultiPolygon, got {geometry!r}")
    if geometry.is_empty:
        raise DataError(f"{what}: the polygon is empty")
    if not np.isfinite(shapely.get_coordinates(geometry)).all():
        raise DataError(f"{what}: the polygon has NaN or infinite coordinates")
    if not geometry.is_valid:
        parts = polygon_parts(shapely.make_valid(geometry))
        if not parts:
            raise DataError(f"{what}: the polygon is degenerate (no area)")
        geometry = polygonal(parts)
    oriented = shapely.orient_polygons(geometry, exterior_cw=False)
    rounded = _round_coords(oriented)
    if rounded.is_valid and not rounded.is_empty:
        return rounded
    parts = polygon_parts(shapely.set_precision(geometry, 10.0**-COORD_DECIMALS))
    if not parts:
        raise DataError(f"{what}: the polygon is smaller than the 0.01 px coordinate precision")
    return _round_coords(shapely.orient_polygons(polygonal(parts), exterior_cw=False))


def _rings(polygon: Polygon) -> list[list[list[float]]]:
    rings = [polygon.exterior, *polygon.interiors]
    return [shapely.get_coordinates(ring).tolist() for ring in rings]


def geometry_json(geometry: shapely.Geometry) -> dict[str, Any]:
    """GeoJSON geometry dict of an already prepared geometry (lists, not tuples)."""
    if isinstance(geometry, Polygon):
        return {"type": "Polygon", "coordinates": _rings(geometry)}
    if isinstance(geometry, MultiPolygon):
        return {"type": "MultiPolygon", "coordinates": [_rings(p) for p in geometry.geoms]}

    def to_lists(value: Any) -> Any:
        return [to_lists(v) for v in value] if isinstance(value, list | tuple) else value

    return {"type": geometry.geom_type, "coordinates": to_lists(mapping(geometry)["coordinates"])}


def clean_measurements(values: Mapping[str, Any], what: str = "measurements") -> dict[str, Any]:
    """Finite numbers only (NaN, inf and None dropped); ints stay ints, bools become 0/1."""
    cleaned: dict[str, Any] = {}
    for key, value in values.items():
        if value is None or value is pd.NA:
            continue
        if isinstance(value, bool | np.bool_ | int | np.integer):
            cleaned[str(key)] = int(value)
        elif isinstance(value, float | np.floating):
            if math.isfinite(float(value)):
                cleaned[str(key)] = float(value)
        else:
            raise DataError(f"{what}: measurement {key!r} is not a number ({value!r})")
    return cleaned


def _measurement_columns(table: pd.DataFrame, exclude: Sequence[str]) -> list[str]:
    return [
        str(column)
        for column in table.columns
        if column not in exclude and pd.api.types.is_numeric_dtype(table[column])
    ]


def require_columns(table: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    """``DataError`` naming the ``columns`` that ``table`` lacks."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise DataError(
            f"{what} lacks the column(s) {', '.join(missing)}; it has {', '.join(map(str, table))}"
        )


def row_measurements(table: pd.DataFrame, columns: Sequence[str]) -> list[dict[str, Any]]:
    """One ``clean_measurements`` dict per row of ``table[columns]``."""
    records = table[list(columns)].to_dict(orient="records") if columns else [{}] * len(table)
    return [clean_measurements(record) for record in records]


def tiles_to_features(
    tiles: pd.DataFrame,
    ctx: ExportContext,
    *,
    class_column: str | None = None,
    class_colors: Mapping[str, Sequence[int]] | None = None,
) -> list[dict[str, Any]]:
    """One QuPath ``tile`` object per row: a level-0 rectangle named by ``tile_id``.

    ``tiles`` needs ``tile_id, x, y, width, height`` (level-0 pixels, top-left corner); every
    other numeric column (score, rank, attention, tissue_fraction, markers...) becomes a
    measurement (NaN dropped). ``class_column`` (optional) names a text column used as the
    classification, coloured from ``class_colors`` or a stable colour per name.
    """
    require_columns(tiles, TILE_GEOMETRY_COLUMNS, "tile table")
    if class_column is not None:
        require_columns(tiles, [class_column], "tile table")
    ids = tiles["tile_id"].astype(str)
    if ids.duplicated().any():
        example = ids[ids.duplicated()].iloc[0]
        raise DataError(f"tile table has duplicate tile_id values, e.g. {example!r}")
    box = tiles[["x", "y", "width", "height"]].to_numpy(dtype=np.float64)
    if not np.isfinite(box).all() or (box[:, 2:] <= 0).any():
        raise DataError("tile table: x, y must be finite and width, height positive (level-0 px)")
    exclude = [*TILE_GEOMETRY_COLUMNS, *([class_column] if class_column else [])]
    measurements = row_measurements(tiles, _measurement_columns(tiles, exclude))
    colors = dict(class_colors or {})
    corners = np.round(box, COORD_DECIMALS) + 0.0
    names = tiles[class_column].tolist() if class_column is not None else [None] * len(tiles)
    objects = []
    for i, tile_id in enumerate(ids):
        x, y, width, height = corners[i]
        x1, y1 = round(x + width, COORD_DECIMALS), round(y + height, COORD_DECIMALS)
        ring = [[x, y], [x1, y], [x1, y1], [x, y1], [x, y]]
        properties: dict[str, Any] = {"objectType": "tile", "name": tile_id}
        if isinstance(names[i], str) and names[i]:
            properties["classification"] = classification(names[i], colors.get(names[i]))
        if measurements[i]:
            properties["measurements"] = measurements[i]
        objects.append(
            {
                "type": "Feature",
                "id": stable_id("tile", ctx.slide_id, tile_id),
                "geometry": {"type": "Polygon", "coordinates": [ring]},
                "properties": properties,
            }
        )
    return objects


def _checked_properties(raw: Mapping[str, Any], what: str) -> dict[str, Any]:
    unknown = sorted(set(raw) - QUPATH_PROPERTY_KEYS)
    if unknown:
        raise DataError(
            f"{what}: {', '.join(unknown)} not QuPath properties (allowed: "
            f"{', '.join(sorted(QUPATH_PROPERTY_KEYS))}); put numbers in 'measurements' and "
            "text in 'metadata'"
        )
    properties = dict(raw)
    if "measurements" in properties:
        properties["measurements"] = clean_measurements(properties["measurements"], what)
    if "metadata" in properties:
        properties["metadata"] = {str(k): str(v) for k, v in properties["metadata"].items()}
    if "color" in properties:
        properties["color"] = list(check_rgb(properties["color"], f"{what} color"))
    if "name" in properties:
        properties["name"] = str(properties["name"])
    return properties


def polygons_to_features(
    polygons: Sequence[Polygon | MultiPolygon],
    *,
    object_type: str = "annotation",
    class_name: str | None = None,
    color: Sequence[int] | None = None,
    properties: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    locked: bool = False,
    id_seed: str = "",
) -> list[dict[str, Any]]:
    """Level-0 polygons (epithelium, review regions) as QuPath objects.

    ``class_name``/``color`` give the classification (colour stable per name if omitted);
    ``color`` without ``class_name`` colours the objects themselves. ``properties`` is one
    mapping for all polygons or one per polygon, with QuPath keys only (``name``,
    ``measurements``, ``metadata``...). ``locked`` writes ``isLocked: true``. Ids are uuid5 of
    ``id_seed``, the object type, class, position in the list and geometry.
    """
    if object_type not in POLYGON_OBJECT_TYPES:
        raise DataError(f"object_type must be one of {POLYGON_OBJECT_TYPES}, got {object_type!r}")
    if properties is None or isinstance(properties, Mapping):
        per_polygon: Sequence[Mapping[str, Any]] = [properties or {}] * len(polygons)
    else:
        per_polygon = properties
        if len(per_polygon) != len(polygons):
            raise DataError(f"{len(polygons)} polygons but {len(per_polygon)} property mappings")
    objects = []
    for i, polygon in enumerate(polygons):
        what = f"polygon {i}"
        geometry = prepare_polygon(polygon, what)
        props: dict[str, Any] = {"objectType": object_type}
        props.update(_checked_properties(per_polygon[i], what))
        if class_name is not None and "classification" not in props:
            props["classification"] = classification(class_name, color)
        elif color is not None and "color" not in props:
            props["color"] = list(check_rgb(color, f"{what} color"))
        if locked:
            props["isLocked"] = True
        digest = hashlib.sha256(shapely.to_wkb(geometry)).hexdigest()
        objects.append(
            {
                "type": "Feature",
                "id": stable_id("polygon", id_seed, object_type, class_name, i, digest),
                "geometry": geometry_json(geometry),
                "properties": props,
            }
        )
    return objects
