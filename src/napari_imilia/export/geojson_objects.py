"""Tiles, cells and polygons as QuPath GeoJSON features (level-0 pixels, top-left origin).

Every feature is ``{"type": "Feature", "id": <uuid5>, "geometry": ..., "properties": ...}``;
cells add QuPath's ``nucleusGeometry`` member beside ``geometry``. ``properties`` holds only
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
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import shapely
from shapely.geometry import MultiPolygon, Polygon, mapping

from napari_imilia.errors import DataError
from napari_imilia.export.context import ExportContext, check_rgb, classification, stable_id
from napari_imilia.interpret.cells.types import CELL_CLASS_COLORS, TileCells
from napari_imilia.interpret.epithelium.polygons import polygon_parts

#: Decimal places of every written coordinate (level-0 pixels).
COORD_DECIMALS = 2
#: Tile table columns that define the tile rectangle (level-0 pixels) rather than measurements.
TILE_GEOMETRY_COLUMNS: tuple[str, ...] = ("tile_id", "x", "y", "width", "height")
#: Cell table column -> QuPath measurement name (QuPath's own names for the same quantities).
CELL_MEASUREMENTS: dict[str, str] = {
    "area_um2": "Nucleus: Area µm^2",
    "eccentricity": "Nucleus: Eccentricity",
    "mean_hematoxylin_od": "Nucleus: Hematoxylin OD mean",
    "probability": "Classification probability",
}
#: Keys accepted in ``polygons_to_features(properties=...)``: the ones QuPath reads.
QUPATH_PROPERTY_KEYS: frozenset[str] = frozenset(
    {"name", "color", "classification", "isLocked", "measurements", "metadata"}
)
POLYGON_OBJECT_TYPES: tuple[str, ...] = ("annotation", "detection", "tile")


def _round_coords(geometry: shapely.Geometry) -> shapely.Geometry:
    # "+ 0.0" turns -0.0 into 0.0 so equal geometries always print the same.
    return shapely.transform(geometry, lambda xy: np.round(xy, COORD_DECIMALS) + 0.0)


def _polygonal(parts: list[Polygon]) -> Polygon | MultiPolygon:
    return parts[0] if len(parts) == 1 else MultiPolygon(parts)


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
        geometry = _polygonal(parts)
    oriented = shapely.orient_polygons(geometry, exterior_cw=False)
    rounded = _round_coords(oriented)
    if rounded.is_valid and not rounded.is_empty:
        return rounded
    parts = polygon_parts(shapely.set_precision(geometry, 10.0**-COORD_DECIMALS))
    if not parts:
        raise DataError(f"{what}: the polygon is smaller than the 0.01 px coordinate precision")
    return _round_coords(shapely.orient_polygons(_polygonal(parts), exterior_cw=False))


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


def _require_columns(table: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise DataError(
            f"{what} lacks the column(s) {', '.join(missing)}; it has {', '.join(map(str, table))}"
        )


def _row_measurements(table: pd.DataFrame, columns: Sequence[str]) -> list[dict[str, Any]]:
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
    _require_columns(tiles, TILE_GEOMETRY_COLUMNS, "tile table")
    if class_column is not None:
        _require_columns(tiles, [class_column], "tile table")
    ids = tiles["tile_id"].astype(str)
    if ids.duplicated().any():
        example = ids[ids.duplicated()].iloc[0]
        raise DataError(f"tile table has duplicate tile_id values, e.g. {example!r}")
    box = tiles[["x", "y", "width", "height"]].to_numpy(dtype=np.float64)
    if not np.isfinite(box).all() or (box[:, 2:] <= 0).any():
        raise DataError("tile table: x, y must be finite and width, height positive (level-0 px)")
    exclude = [*TILE_GEOMETRY_COLUMNS, *([class_column] if class_column else [])]
    measurements = _row_measurements(tiles, _measurement_columns(tiles, exclude))
    colors = dict(class_colors or {})
    corners = np.round(box, COORD_DECIMALS) + 0.0
    names = tiles[class_column].tolist() if class_column is not None else [None] * len(tiles)
    features = []
    for i, tile_id in enumerate(ids):
        x, y, width, height = corners[i]
        x1, y1 = round(x + width, COORD_DECIMALS), round(y + height, COORD_DECIMALS)
        ring = [[x, y], [x1, y], [x1, y1], [x, y1], [x, y]]
        properties: dict[str, Any] = {"objectType": "tile", "name": tile_id}
        if isinstance(names[i], str) and names[i]:
            properties["classification"] = classification(names[i], colors.get(names[i]))
        if measurements[i]:
            properties["measurements"] = measurements[i]
        features.append(
            {
                "type": "Feature",
                "id": stable_id("tile", ctx.slide_id, tile_id),
                "geometry": {"type": "Polygon", "coordinates": [ring]},
                "properties": properties,
            }
        )
    return features


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
    return [_polygonal(polygon_parts(cell)) for cell in cells]


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
    _require_columns(table, ["cell_id", "class_name", "centroid_x", "centroid_y"], "cell table")
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
    measurements = _row_measurements(renamed, list(renamed.columns))
    cell_ids = table["cell_id"].astype(str).tolist()
    class_names = table["class_name"].tolist()
    classes = {
        name: classification(name, CELL_CLASS_COLORS.get(name))
        for name in set(class_names)
        if isinstance(name, str) and name
    }
    features = []
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
        features.append(
            {
                "type": "Feature",
                "id": stable_id("cell", ctx.slide_id, cell_id, f"{cx:.2f}", f"{cy:.2f}"),
                "geometry": geometry_json(boundary),
                "nucleusGeometry": geometry_json(nucleus),
                "properties": properties,
            }
        )
    return features


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
    features = []
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
        features.append(
            {
                "type": "Feature",
                "id": stable_id("polygon", id_seed, object_type, class_name, i, digest),
                "geometry": geometry_json(geometry),
                "properties": props,
            }
        )
    return features
