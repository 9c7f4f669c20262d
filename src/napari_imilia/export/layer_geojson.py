"""napari Shapes and Labels layer data as QuPath GeoJSON objects, in level-0 pixels (no Qt).

A layer is given as napari hands it to writers: its data and its attributes (``scale``,
``translate``, ``features``, ``metadata``, ``shape_type``, ``name``...). Shape vertices go
through the layer's scale and translate to world µm, then to level-0 px with ``mpp`` (see
:mod:`napari_imilia.export.layers`). A Labels image is placed by ``metadata['level0_xy']``
and ``metadata['level0_per_px']`` (what the tile inspector stores) or else by its scale and
translate. Per-object columns of ``features`` (napari's ``layer.features`` table) become
QuPath properties: ``objectType``, ``name``, ``classification`` (or ``class_name`` /
``reviewer_class``), numeric columns as ``measurements``, text columns as ``metadata``.
Class colours and the class a layer role gives its objects are passed in by the caller
(this module knows no cell or review classes; ``review.exports`` has the project's).
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import shapely
from shapely.geometry import LineString

from napari_imilia.errors import DataError
from napari_imilia.export.context import classification, stable_id
from napari_imilia.export.geojson_objects import (
    COORD_DECIMALS,
    clean_measurements,
    geometry_json,
    prepare_polygon,
)
from napari_imilia.export.layers import (
    PIXEL_CENTRE_PX,
    labels_to_geometries,
    layer_to_level0,
    shape_geometry,
)

#: Layer metadata keys napari-imilia writes on its own layers.
MPP_KEY = "imilia_mpp"
EXPORT_KEY = "imilia_export"
#: Feature columns read as the class name, in order of preference.
CLASS_COLUMNS: tuple[str, ...] = ("classification", "class_name", "reviewer_class")
#: Object types a layer may give; others (e.g. 'cell' without nucleus) become detections.
LAYER_OBJECT_TYPES: tuple[str, ...] = ("annotation", "detection", "tile")
#: Class name -> RGB 0-255 colour of a classification (others: a stable colour per name).
ClassColors = Mapping[str, Sequence[int]]
_NOT_METADATA = frozenset({"id", "objectType", "name", "metadata", "index", *CLASS_COLUMNS})


def layer_mpp(meta: Mapping[str, Any], fallback: float | None = None) -> float | None:
    """µm per level-0 pixel of a layer: ``imilia_mpp``, a slide summary's ``mpp`` or
    ``mpp`` in its metadata, else ``fallback`` (e.g. the open slide's)."""
    metadata = meta.get("metadata") or {}
    slide = metadata.get("imilia_slide")
    for value in (
        metadata.get(MPP_KEY),
        slide.get("mpp") if isinstance(slide, Mapping) else None,
        metadata.get("mpp"),
        fallback,
    ):
        if isinstance(value, int | float) and math.isfinite(value) and value > 0:
            return float(value)
    return None


def _row_properties(
    row: Mapping[str, Any], default_type: str, class_colors: ClassColors | None
) -> dict[str, Any]:
    """QuPath properties from one ``layer.features`` row (see the module docstring)."""
    object_type = str(row.get("objectType") or default_type)
    if object_type not in LAYER_OBJECT_TYPES:
        object_type = "detection"
    properties: dict[str, Any] = {"objectType": object_type}
    name = row.get("name")
    if isinstance(name, str) and name:
        properties["name"] = name
    class_name = next(
        (row[c] for c in CLASS_COLUMNS if isinstance(row.get(c), str) and row.get(c)), None
    )
    if class_name:
        color = (class_colors or {}).get(class_name)
        properties["classification"] = classification(class_name, color)
    numbers = {
        k: v
        for k, v in row.items()
        if k not in _NOT_METADATA
        and isinstance(v, int | float | np.integer | np.floating | bool | np.bool_)
    }
    measurements = clean_measurements(numbers, "layer features")
    if measurements:
        properties["measurements"] = measurements
    metadata: dict[str, str] = {}
    if isinstance(row.get("metadata"), str) and row["metadata"]:
        try:
            parsed = json.loads(row["metadata"])
        except ValueError:
            parsed = {"metadata": row["metadata"]}
        if isinstance(parsed, dict):
            metadata.update({str(k): str(v) for k, v in parsed.items()})
    for key, value in row.items():
        if key not in _NOT_METADATA and isinstance(value, str) and value:
            metadata[str(key)] = value
    if metadata:
        properties["metadata"] = metadata
    return properties


def _table_rows(layer_table: Any, n: int) -> list[dict[str, Any]]:
    """The ``n`` rows of a layer's ``features`` table as dicts (empty dicts without one)."""
    if layer_table is None or len(layer_table) == 0:
        return [{} for _ in range(n)]
    table = pd.DataFrame(layer_table).reset_index(drop=True)
    if len(table) != n:
        raise DataError(f"layer has {n} objects but {len(table)} feature rows")
    rows = table.to_dict(orient="records")
    return [{str(k): (None if _is_missing(v) else v) for k, v in row.items()} for row in rows]


def _is_missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _object_id(row: Mapping[str, Any], *seed: object) -> str:
    raw = row.get("id")
    if isinstance(raw, str):
        try:
            return str(uuid.UUID(raw))
        except ValueError:
            pass
    return stable_id(*seed)


def _geometry_json(geometry: Any, what: str) -> dict[str, Any]:
    if isinstance(geometry, LineString):
        rounded = shapely.transform(geometry, lambda xy: np.round(xy, COORD_DECIMALS) + 0.0)
        return geometry_json(rounded)
    return geometry_json(prepare_polygon(geometry, what))


def shapes_layer_to_features(
    data: Sequence[np.ndarray],
    meta: Mapping[str, Any],
    mpp: float,
    *,
    class_colors: ClassColors | None = None,
) -> list[dict[str, Any]]:
    """QuPath objects of a Shapes layer (``data``: vertices per shape in layer coordinates;
    ``meta``: its attributes). Areas (polygon, rectangle, ellipse) become Polygons, lines
    and paths LineStrings; ``objectType`` defaults to annotation; classifications take
    their colour from ``class_colors``."""
    name = str(meta.get("name") or "shapes")
    types = meta.get("shape_type") or ["polygon"] * len(data)
    if isinstance(types, str):
        types = [types] * len(data)
    rows = _table_rows(meta.get("features"), len(data))
    objects = []
    for i, (vertices, kind) in enumerate(zip(data, types, strict=True)):
        what = f"shape {i} of layer {name!r}"
        xy = layer_to_level0(vertices, mpp, meta.get("scale"), meta.get("translate"))
        geometry = shape_geometry(xy, str(kind), what)
        geometry_dict = _geometry_json(geometry, what)
        digest = hashlib.sha256(json.dumps(geometry_dict).encode()).hexdigest()
        objects.append(
            {
                "type": "Feature",
                "id": _object_id(rows[i], "shape", name, i, digest),
                "geometry": geometry_dict,
                "properties": _row_properties(rows[i], "annotation", class_colors),
            }
        )
    return objects


def labels_placement(
    meta: Mapping[str, Any], mpp: float | None
) -> tuple[tuple[float, float], float]:
    """(level0_xy, level0_per_px) of a Labels layer: from its metadata, else from its
    scale/translate (µm) and ``mpp`` (pixel (r, c) centred at translate + (r, c) * scale)."""
    metadata = meta.get("metadata") or {}
    if metadata.get("level0_xy") is not None and metadata.get("level0_per_px") is not None:
        x0, y0 = (float(v) for v in metadata["level0_xy"])
        return (x0, y0), float(metadata["level0_per_px"])
    if mpp is None:
        raise DataError(
            f"labels layer {meta.get('name')!r} has no level0_xy / level0_per_px metadata and "
            "its µm/px is unknown; open its slide with napari-imilia first"
        )
    scale = np.asarray(meta.get("scale") if meta.get("scale") is not None else (1.0, 1.0))[-2:]
    translate = np.asarray(
        meta.get("translate") if meta.get("translate") is not None else (0.0, 0.0)
    )[-2:]
    if not math.isclose(float(scale[0]), float(scale[1]), rel_tol=1e-6):
        raise DataError(f"labels layer {meta.get('name')!r} has non-square pixels {tuple(scale)}")
    per_px = float(scale[1]) / mpp
    corner = translate / mpp + PIXEL_CENTRE_PX - per_px / 2
    return (float(corner[1]), float(corner[0])), per_px


def labels_layer_to_features(
    data: Any,
    meta: Mapping[str, Any],
    mpp: float | None,
    *,
    class_colors: ClassColors | None = None,
    role_classes: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """QuPath detections, one per label of a 2-D Labels layer, classified and measured from
    the ``features`` row whose ``label`` (or ``index``) column equals the label. A label
    without a class takes the class ``role_classes`` gives the layer's ``imilia_role``
    metadata (e.g. the tile inspector's epithelium mask: Epithelium); classifications take
    their colour from ``class_colors``."""
    name = str(meta.get("name") or "labels")
    image = data[0] if isinstance(data, list | tuple) else data  # multiscale: finest level
    image = np.asarray(image)
    if image.ndim != 2:
        raise DataError(
            f"labels layer {name!r}: only 2-D labels can be exported, got {image.shape}"
        )
    level0_xy, per_px = labels_placement(meta, mpp)
    by_label: dict[int, dict[str, Any]] = {}
    layer_table = meta.get("features")
    if layer_table is not None and len(layer_table):
        table = pd.DataFrame(layer_table)
        key = next((c for c in ("label", "index") if c in table.columns), None)
        if key is not None:
            for row in _table_rows(table, len(table)):
                if row.get(key) is not None:
                    by_label[int(row[key])] = row
    role = (meta.get("metadata") or {}).get("imilia_role")
    default_class = (role_classes or {}).get(role) if isinstance(role, str) else None
    objects = []
    for label, geometry in labels_to_geometries(image, level0_xy, per_px).items():
        row = dict(by_label.get(label, {}))
        row.pop("label", None)
        row.setdefault("name", f"{name} {label}")
        if default_class and not any(row.get(c) for c in CLASS_COLUMNS):
            row["class_name"] = default_class
        what = f"label {label} of layer {name!r}"
        objects.append(
            {
                "type": "Feature",
                "id": _object_id(row, "label", name, label, level0_xy, per_px),
                "geometry": _geometry_json(geometry, what),
                "properties": _row_properties(row, "detection", class_colors),
            }
        )
    return objects
