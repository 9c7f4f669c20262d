"""Read QuPath-compatible GeoJSON (level-0 pixels, (x, y), top-left origin), within limits.

Reading accepts what QuPath writes: a FeatureCollection, a bare Feature or a JSON list of
Features (older QuPath), plain, gzip- or zip-compressed (all JSON entries of a zip), with
Polygon, MultiPolygon, LineString, MultiLineString, Point, MultiPoint or GeometryCollection
geometries. Rings that are not closed are closed. Self-intersecting polygons are repaired
with ``shapely.make_valid`` (only their polygonal parts kept) and reported in one warning;
``ImportedObject.repaired`` marks them. The file is untrusted: it is read once within
:class:`~napari_imilia.trust.json_limits.ImportLimits` (decompressed size, nesting, integer digits,
feature count, coordinates relative to the slide, colours 0-255). Everything malformed or
over a limit raises ``DataError`` naming the file and feature.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from shapely.geometry import (
    GeometryCollection,
    LineString,
    MultiLineString,
    MultiPoint,
    MultiPolygon,
    Point,
    Polygon,
)

from napari_imilia.errors import DataError
from napari_imilia.export.context import METADATA_KEY, RGB, ExportContext
from napari_imilia.export.space import check_coordinate_space
from napari_imilia.trust.json_limits import ImportLimits, ImportProgress, read_json_entries

#: Features read between two progress reports.
PROGRESS_EVERY = 1000

#: QuPath v0.2 stored the object type in the feature id.
_LEGACY_TYPE_IDS = {
    "PathAnnotationObject": "annotation",
    "PathDetectionObject": "detection",
    "PathCellObject": "cell",
    "PathTileObject": "tile",
    "TMACoreObject": "tmaCore",
    "PathRootObject": "root",
}
_GEOMETRY_TYPES = (
    "Point",
    "MultiPoint",
    "LineString",
    "MultiLineString",
    "Polygon",
    "MultiPolygon",
    "GeometryCollection",
)


@dataclass
class ImportedObject:
    """One object read from GeoJSON; geometries in the file's coordinates (level-0 px)."""

    geometry: shapely.Geometry
    object_type: str
    class_name: str | None
    color: RGB | None
    name: str | None
    measurements: dict[str, float]
    properties: dict[str, Any]
    id: str | None
    nucleus_geometry: shapely.Geometry | None = None
    repaired: bool = field(default=False)


def _load_json(path: Path, limits: ImportLimits) -> Any:
    """Parsed JSON of a plain, .gz or .zip file, read once within ``limits``; a zip's several
    JSON entries are merged into one list of features, as QuPath does."""
    if not path.exists():
        raise DataError(f"{path}: no such GeoJSON file")
    entries = read_json_entries(path, limits)
    if len(entries) == 1:
        return entries[0][1]
    geojson_features: list[Any] = []
    for source, data in entries:
        geojson_features += _feature_list(data, Path(source))
    return geojson_features


def _feature_list(data: Any, path: Path) -> list[Any]:
    if isinstance(data, list):
        return data
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a GeoJSON object or list, got {type(data).__name__}")
    kind = data.get("type")
    if kind == "FeatureCollection":
        geojson_features = data.get("features")
        if not isinstance(geojson_features, list):
            raise DataError(f"{path}: FeatureCollection has no 'features' list")
        return geojson_features
    if kind == "Feature":
        return [data]
    if kind in _GEOMETRY_TYPES:
        return [{"type": "Feature", "geometry": data, "properties": {}}]
    raise DataError(
        f"{path}: not GeoJSON (top-level type {kind!r}); expected a FeatureCollection, a "
        "Feature or a list of Features"
    )


def _positions(value: Any, what: str, min_count: int = 1) -> np.ndarray:
    """(n, 2) float array from a list of [x, y(, z)] positions, checking every number."""
    if not isinstance(value, list) or len(value) < min_count:
        raise DataError(f"{what}: expected a list of at least {min_count} [x, y] positions")
    try:  # fast path: a regular array of numbers
        array = np.asarray(value)
    except ValueError:  # ragged: checked one position at a time below
        array = None
    if array is not None and array.ndim == 2 and array.shape[1] >= 2 and array.dtype.kind in "if":
        xy = array[:, :2].astype(np.float64)
        finite = np.isfinite(xy).all(axis=1)
        if not finite.all():
            bad = value[int(np.flatnonzero(~finite)[0])]
            raise DataError(f"{what}: coordinate {bad!r} is NaN or infinite")
        return xy
    xy = np.empty((len(value), 2))
    for i, position in enumerate(value):
        if not isinstance(position, list) or len(position) < 2:
            raise DataError(f"{what}: position {i} is {position!r}, not [x, y]")
        for j in (0, 1):
            number = position[j]
            if isinstance(number, bool) or not isinstance(number, int | float):
                raise DataError(f"{what}: coordinate {position!r} is not numeric")
            if not math.isfinite(number):
                raise DataError(f"{what}: coordinate {position!r} is NaN or infinite")
            xy[i, j] = number
    return xy


def _polygon(rings: Any, what: str) -> Polygon:
    if not isinstance(rings, list) or not rings:
        raise DataError(f"{what}: a Polygon needs a list of rings")
    parsed = []
    for k, ring in enumerate(rings):
        xy = _positions(ring, f"{what} ring {k}", 3)
        if len(set(map(tuple, xy.tolist()))) < 3:
            raise DataError(f"{what} ring {k}: fewer than 3 distinct vertices (no area)")
        parsed.append(xy)
    return Polygon(parsed[0], parsed[1:])


def _geometry(geometry: Any, what: str) -> shapely.Geometry:
    if geometry is None:
        raise DataError(f"{what}: has no geometry; every object needs one to be placed")
    if not isinstance(geometry, dict) or geometry.get("type") not in _GEOMETRY_TYPES:
        kind = geometry.get("type") if isinstance(geometry, dict) else type(geometry).__name__
        raise DataError(f"{what}: unsupported geometry type {kind!r}")
    kind = geometry["type"]
    if kind == "GeometryCollection":
        members = geometry.get("geometries")
        if not isinstance(members, list):
            raise DataError(f"{what}: GeometryCollection has no 'geometries' list")
        parts = [_geometry(g, f"{what} member {i}") for i, g in enumerate(members)]
        return GeometryCollection(parts)
    if "coordinates" not in geometry:
        raise DataError(f"{what}: {kind} geometry has no 'coordinates'")
    coords = geometry["coordinates"]
    if kind == "Point":
        return Point(_positions([coords], what)[0])
    if kind == "MultiPoint":
        return MultiPoint(_positions(coords, what))
    if kind == "LineString":
        return LineString(_positions(coords, what, 2))
    if kind == "MultiLineString":
        if not isinstance(coords, list):
            raise DataError(f"{what}: MultiLineString needs a list of lines")
        return MultiLineString([_positions(line, what, 2) for line in coords])
    if kind == "Polygon":
        return _polygon(coords, what)
    if not isinstance(coords, list) or not coords:
        raise DataError(f"{what}: MultiPolygon needs a list of polygons")
    return MultiPolygon([_polygon(rings, f"{what} part {i}") for i, rings in enumerate(coords)])


def _repaired(geometry: shapely.Geometry, what: str) -> shapely.Geometry:
    """Polygonal parts of ``make_valid(geometry)``; DataError if none are left."""
    fixed = shapely.make_valid(geometry)
    parts = shapely.get_parts(fixed)
    polygons = [p for p in parts if p.geom_type in ("Polygon", "MultiPolygon")]
    if not polygons:
        raise DataError(f"{what}: self-intersecting polygon with no area left after repair")
    return shapely.union_all(polygons) if len(polygons) > 1 else polygons[0]


def _color(value: Any, what: str) -> RGB | None:
    """An (r, g, b) colour of 0-255 integers, or a packed 32-bit (A)RGB integer (QuPath
    v0.2); ``DataError`` for numbers out of range, None for anything else."""
    if isinstance(value, list) and len(value) == 3:
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
            return None
        if not all(math.isfinite(v) and 0 <= v <= 255 for v in value):
            raise DataError(f"{what}: colour {value!r} is not three numbers 0-255")
        return (int(value[0]), int(value[1]), int(value[2]))
    if isinstance(value, int) and not isinstance(value, bool):
        if not -(2**31) <= value < 2**32:
            raise DataError(f"{what}: packed colour {value} is not a 32-bit (A)RGB integer")
        return ((value >> 16) & 255, (value >> 8) & 255, value & 255)
    return None


def _classification(value: Any, what: str) -> tuple[str | None, RGB | None]:
    if isinstance(value, str):
        return (value or None), None
    if not isinstance(value, dict):
        return None, None
    name = value.get("name")
    if name is None and isinstance(value.get("names"), list):
        name = ": ".join(str(n) for n in value["names"])
    color = _color(value.get("color", value.get("colorRGB")), f"{what} classification")
    return (str(name) if name else None), color


def _measurements(value: Any) -> dict[str, float]:
    items: list[tuple[Any, Any]] = []
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list):  # before QuPath v0.4: [{"name": ..., "value": ...}]
        items = [(m.get("name"), m.get("value")) for m in value if isinstance(m, dict)]
    result = {}
    for key, number in items:
        if key is None:
            continue
        if number is None:
            result[str(key)] = math.nan
        elif isinstance(number, int | float) and not isinstance(number, bool):
            result[str(key)] = float(number)
    return result


def _check_extent(
    geometry: shapely.Geometry, nucleus: shapely.Geometry | None, bound_px: float, what: str
) -> None:
    """``DataError`` when a coordinate's magnitude exceeds ``bound_px`` (level-0 px)."""
    for shape in (geometry, nucleus):
        if shape is None or shape.is_empty:
            continue
        extent = np.abs(np.asarray(shape.bounds, dtype=np.float64))
        if not float(extent.max()) <= bound_px:
            raise DataError(
                f"{what}: coordinates reach {float(extent.max()):.6g} level-0 px, beyond the "
                f"import limit of {bound_px:.6g} px (relative to the slide; see "
                "docs/security.md)"
            )


def _imported(feature: Any, index: int, path: Path, bound_px: float) -> ImportedObject:
    if not isinstance(feature, dict):
        raise DataError(f"{path}: feature {index} is {type(feature).__name__}, not an object")
    properties = feature.get("properties") or {}
    if not isinstance(properties, dict):
        raise DataError(f"{path}: feature {index} has 'properties' that are not an object")
    name = properties.get("name")
    what = f"{path}: feature {index}" + (f" ({name!r})" if name else "")
    geometry = _geometry(feature.get("geometry"), what)
    nucleus_json = feature.get("nucleusGeometry", properties.get("nucleusGeometry"))
    nucleus = _geometry(nucleus_json, f"{what} nucleus") if nucleus_json is not None else None
    raw_id = feature.get("id")
    if not isinstance(raw_id, str | int):
        raw_id = None
    object_type = properties.get("objectType", properties.get("object_type"))
    if object_type is None and raw_id in _LEGACY_TYPE_IDS:
        object_type = _LEGACY_TYPE_IDS[raw_id]
    if object_type is None:
        object_type = properties.get("type", "annotation")
    _check_extent(geometry, nucleus, bound_px, what)
    class_name, class_color = _classification(properties.get("classification"), what)
    repaired = False
    if geometry.geom_type in ("Polygon", "MultiPolygon") and not geometry.is_valid:
        geometry, repaired = _repaired(geometry, what), True
    polygonal_nucleus = nucleus is not None and nucleus.geom_type in ("Polygon", "MultiPolygon")
    if polygonal_nucleus and not nucleus.is_valid:
        nucleus, repaired = _repaired(nucleus, f"{what} nucleus"), True
    return ImportedObject(
        geometry=geometry,
        object_type=str(object_type),
        class_name=class_name,
        color=_color(properties.get("color"), what) or class_color,
        name=None if name is None else str(name),
        measurements=_measurements(properties.get("measurements")),
        properties=properties,
        id=str(raw_id) if raw_id is not None and raw_id not in _LEGACY_TYPE_IDS else None,
        nucleus_geometry=nucleus,
        repaired=repaired,
    )


def read_geojson_file(
    path: str | os.PathLike[str],
    *,
    slide_dimensions_px: tuple[int, int] | None = None,
    mpp: float | None = None,
    limits: ImportLimits | None = None,
    progress: ImportProgress | None = None,
) -> tuple[list[ImportedObject], ExportContext | None]:
    """Objects of a GeoJSON file (QuPath or ours; plain, ``.gz`` or ``.zip``) in file order,
    and its ``ExportContext`` (None if not ours), reading the file once.

    With ``slide_dimensions_px`` (level-0 width, height) the coordinates are checked against
    the slide (:func:`check_coordinate_space`). ``limits`` (default
    ``ImportLimits.from_env()``) bound the decompressed size, nesting, number of features
    and coordinates (see :mod:`napari_imilia.trust.json_limits`); ``progress(done, total)`` is
    called as features are read.
    """
    path = Path(path)
    limits = limits or ImportLimits.from_env()
    data = _load_json(path, limits)
    ctx = None
    if isinstance(data, dict) and isinstance(data.get(METADATA_KEY), dict):
        ctx = ExportContext.from_dict(data[METADATA_KEY], source=str(path))
    geojson_features = _feature_list(data, path)
    limits.check_count(len(geojson_features), "features", str(path))
    bound = limits.coordinate_bound_px(slide_dimensions_px)
    objects = []
    for i, feature in enumerate(geojson_features):
        objects.append(_imported(feature, i, path, bound))
        if progress is not None and (i + 1) % PROGRESS_EVERY == 0:
            progress(i + 1, len(geojson_features))
    if progress is not None:
        progress(len(geojson_features), len(geojson_features))
    fixed = [(i, o.name) for i, o in enumerate(objects) if o.repaired]
    if fixed:
        shown = ", ".join(f"{i} ({name!r})" if name else str(i) for i, name in fixed[:5])
        shown += ", ..." if len(fixed) > 5 else ""
        warnings.warn(
            f"{path}: {len(fixed)} self-intersecting polygon(s) repaired with make_valid "
            f"(features {shown}); check their outlines",
            stacklevel=3,
        )
    if slide_dimensions_px is not None:
        geometries = [o.geometry for o in objects]
        check_coordinate_space(geometries, slide_dimensions_px, mpp=mpp, source=str(path))
    return objects, ctx


def read_geojson(
    path: str | os.PathLike[str],
    *,
    slide_dimensions_px: tuple[int, int] | None = None,
    mpp: float | None = None,
    limits: ImportLimits | None = None,
    progress: ImportProgress | None = None,
) -> list[ImportedObject]:
    """The objects of :func:`read_geojson_file` (same arguments, same checks)."""
    objects, _ctx = read_geojson_file(
        path, slide_dimensions_px=slide_dimensions_px, mpp=mpp, limits=limits, progress=progress
    )
    return objects


def read_geojson_context(
    path: str | os.PathLike[str], *, limits: ImportLimits | None = None
) -> ExportContext | None:
    """The ``ExportContext`` stored in a file written by :func:`write_geojson`, else None."""
    path = Path(path)
    data = _load_json(path, limits or ImportLimits.from_env())
    if isinstance(data, dict) and isinstance(data.get(METADATA_KEY), dict):
        return ExportContext.from_dict(data[METADATA_KEY], source=str(path))
    return None
