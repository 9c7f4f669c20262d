"""Write and read QuPath-compatible GeoJSON (level-0 pixels, (x, y), top-left origin).

Written files are one FeatureCollection with a foreign member ``"imilia"`` holding the
``ExportContext`` (RFC 7946 allows foreign members; QuPath ignores them), one feature per
line; gzip-compressed when the name ends in ``.gz``, or a zip archive holding one
``.geojson`` when it ends in ``.zip`` (QuPath 0.4+ imports ``.geojson``, ``.json`` and
``.zip`` but not ``.gz``). The same features and context give the same bytes.

Reading accepts what QuPath writes: a FeatureCollection, a bare Feature or a JSON list of
Features (older QuPath), plain, gzip- or zip-compressed (all JSON entries of a zip), with
Polygon, MultiPolygon, LineString, MultiLineString, Point, MultiPoint or GeometryCollection
geometries. Rings that are not closed are closed. Self-intersecting polygons are repaired
with ``shapely.make_valid`` (only their polygonal parts kept) and reported in one warning;
``ImportedObject.repaired`` marks them. Everything else that is malformed raises
``DataError`` naming the file and feature.
"""

from __future__ import annotations

import gzip as gzip_lib
import io
import json
import math
import os
import warnings
import zipfile
from collections.abc import Sequence
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

from napari_imilia._utils import write_bytes_atomic
from napari_imilia.errors import DataError
from napari_imilia.export.context import METADATA_KEY, RGB, ExportContext
from napari_imilia.export.space import check_coordinate_space

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


def write_geojson(
    path: str | os.PathLike[str],
    features: Sequence[dict[str, Any]],
    ctx: ExportContext,
    *,
    gzip: bool | None = None,
) -> Path:
    """Write ``features`` as one FeatureCollection with ``ctx`` as its ``imilia`` member.

    gzip-compressed when ``path`` ends in ``.gz`` or ``gzip`` is true (``.gz`` is then
    appended if missing); a zip archive with one ``.geojson`` entry when it ends in ``.zip``.
    Atomic; returns the path written.
    """
    path = Path(path)
    as_zip = path.name.lower().endswith(".zip")
    compress = path.name.endswith(".gz") if gzip is None else bool(gzip)
    if compress and as_zip:
        raise DataError(f"{path}: choose one compression: a .zip name, or gzip=True")
    if compress and not path.name.endswith(".gz"):
        path = path.with_name(path.name + ".gz")
    if not compress and path.name.endswith(".gz"):
        raise DataError(f"{path}: a .gz name needs gzip=True (or leave gzip unset)")
    metadata = {**ctx.to_dict(), "n_features": len(features)}
    lines = []
    for i, feature in enumerate(features):
        if feature.get("type") != "Feature" or not isinstance(feature.get("geometry"), dict):
            raise DataError(f"{path}: feature {i} is not a GeoJSON Feature with a geometry")
        try:
            lines.append(json.dumps(feature, ensure_ascii=False, allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise DataError(f"{path}: feature {i} cannot be written as JSON ({exc})") from exc
    head = json.dumps({"type": "FeatureCollection", METADATA_KEY: metadata}, ensure_ascii=False)
    body = ",\n".join(lines)
    text = f'{head[:-1]}, "features": [\n{body}\n]}}\n'
    data = text.encode("utf-8")
    if compress:
        data = gzip_lib.compress(data, compresslevel=6, mtime=0)
    elif as_zip:
        stem = path.name[:-4]
        entry = zipfile.ZipInfo(stem if stem.endswith(".geojson") else f"{stem}.geojson")
        entry.compress_type = zipfile.ZIP_DEFLATED  # fixed 1980-01-01 date: same bytes
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr(entry, data)
        data = buffer.getvalue()
    return write_bytes_atomic(path, data)


def _parse_json(raw: bytes, source: str) -> Any:
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip_lib.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DataError(f"{source}: damaged gzip file ({exc}); export it again") from exc
    try:
        return json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise DataError(f"{source}: not UTF-8 text, so not GeoJSON") from exc
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{source}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
            "the file is damaged or not GeoJSON - export it again from QuPath "
            "(File > Export objects as GeoJSON)"
        ) from exc


def _load_json(path: Path) -> Any:
    """Parsed JSON of a plain, .gz or .zip file; a zip's several JSON entries are merged
    into one list of features, as QuPath does."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise DataError(f"{path}: no such GeoJSON file") from exc
    if raw[:4] != b"PK\x03\x04":
        return _parse_json(raw, str(path))
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            names = sorted(
                n for n in archive.namelist() if n.lower().endswith((".geojson", ".json"))
            )
            entries = [(n, archive.read(n)) for n in names]
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"{path}: damaged zip file ({exc}); export it again") from exc
    if not entries:
        raise DataError(f"{path}: the zip archive holds no .geojson or .json file")
    if len(entries) == 1:
        return _parse_json(entries[0][1], f"{path}:{entries[0][0]}")
    features: list[Any] = []
    for name, data in entries:
        features += _feature_list(_parse_json(data, f"{path}:{name}"), Path(f"{path}:{name}"))
    return features


def _feature_list(data: Any, path: Path) -> list[Any]:
    if isinstance(data, list):
        return data
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a GeoJSON object or list, got {type(data).__name__}")
    kind = data.get("type")
    if kind == "FeatureCollection":
        features = data.get("features")
        if not isinstance(features, list):
            raise DataError(f"{path}: FeatureCollection has no 'features' list")
        return features
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


def _color(value: Any) -> RGB | None:
    if isinstance(value, list) and len(value) == 3:
        try:
            return (int(value[0]) & 255, int(value[1]) & 255, int(value[2]) & 255)
        except (TypeError, ValueError):
            return None
    if isinstance(value, int) and not isinstance(value, bool):  # packed (A)RGB, as QuPath v0.2
        return ((value >> 16) & 255, (value >> 8) & 255, value & 255)
    return None


def _classification(value: Any) -> tuple[str | None, RGB | None]:
    if isinstance(value, str):
        return (value or None), None
    if not isinstance(value, dict):
        return None, None
    name = value.get("name")
    if name is None and isinstance(value.get("names"), list):
        name = ": ".join(str(n) for n in value["names"])
    color = _color(value.get("color", value.get("colorRGB")))
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


def _imported(feature: Any, index: int, path: Path) -> ImportedObject:
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
    class_name, class_color = _classification(properties.get("classification"))
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
        color=_color(properties.get("color")) or class_color,
        name=None if name is None else str(name),
        measurements=_measurements(properties.get("measurements")),
        properties=properties,
        id=str(raw_id) if raw_id is not None and raw_id not in _LEGACY_TYPE_IDS else None,
        nucleus_geometry=nucleus,
        repaired=repaired,
    )


def read_geojson(
    path: str | os.PathLike[str],
    *,
    slide_dimensions_px: tuple[int, int] | None = None,
    mpp: float | None = None,
) -> list[ImportedObject]:
    """Objects of a GeoJSON file (QuPath or ours, plain or ``.gz``), in file order.

    With ``slide_dimensions_px`` (level-0 width, height) the coordinates are checked against
    the slide (:func:`check_coordinate_space`).
    """
    path = Path(path)
    features = _feature_list(_load_json(path), path)
    objects = [_imported(feature, i, path) for i, feature in enumerate(features)]
    fixed = [(i, o.name) for i, o in enumerate(objects) if o.repaired]
    if fixed:
        shown = ", ".join(f"{i} ({name!r})" if name else str(i) for i, name in fixed[:5])
        shown += ", ..." if len(fixed) > 5 else ""
        warnings.warn(
            f"{path}: {len(fixed)} self-intersecting polygon(s) repaired with make_valid "
            f"(features {shown}); check their outlines",
            stacklevel=2,
        )
    if slide_dimensions_px is not None:
        geometries = [o.geometry for o in objects]
        check_coordinate_space(geometries, slide_dimensions_px, mpp=mpp, source=str(path))
    return objects


def read_geojson_context(path: str | os.PathLike[str]) -> ExportContext | None:
    """The ``ExportContext`` stored in a file written by :func:`write_geojson`, else None."""
    path = Path(path)
    data = _load_json(path)
    if isinstance(data, dict) and isinstance(data.get(METADATA_KEY), dict):
        return ExportContext.from_dict(data[METADATA_KEY], source=str(path))
    return None
