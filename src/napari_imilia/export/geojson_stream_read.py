"""Reading many small GeoJSON objects (cells) back as :class:`ObjectBatch` columns, in limits.

A file in our layout (one feature per line after the ``FeatureCollection`` header: what
:class:`~napari_imilia.export.geojson_stream.GeoJSONStreamWriter` and
:func:`~napari_imilia.export.write_geojson` write) is parsed one line at a time, in constant
memory; any other GeoJSON (QuPath's pretty-printed files, a zip) is read whole within the same
limits (:func:`~napari_imilia.trust.json_limits.read_json_entries`) and walked the same way.
The file is untrusted: the limits of :class:`~napari_imilia.trust.json_limits.ImportLimits`
apply (bytes read, objects, integer digits, nesting, coordinates relative to the slide,
colours 0-255) and each refusal is a ``DataError`` naming the file and the feature.

A feature becomes its Point, or its ring: ``nucleusGeometry`` when present (a QuPath cell's
nucleus), else the exterior of its Polygon (of the largest part of a MultiPolygon), with the
ring's area centroid. Self-intersecting rings are kept and counted in one warning; other
geometry types raise ``DataError``.
"""

from __future__ import annotations

import gzip
import itertools
import json
import math
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from napari_imilia.errors import DataError
from napari_imilia.export.context import METADATA_KEY, ExportContext
from napari_imilia.export.geojson_read import _classification, _feature_list, _measurements
from napari_imilia.export.geojson_stream import ObjectBatch
from napari_imilia.trust.json_limits import (
    LIMIT_ENV,
    ImportLimits,
    json_depth,
    parse_json,
    read_json_entries,
)

#: Objects per batch handed out by the reader.
BATCH_OBJECTS = 50_000
#: Longest accepted line (one feature) of a line-per-feature file.
MAX_LINE_BYTES = 1 << 20
_HEADER_PREFIX = b'{"type": "FeatureCollection"'
_HEADER_END = b'"features": ['


class _Collector:
    """Features read so far (raw lists), turned into an ``ObjectBatch`` by :meth:`take`."""

    def __init__(self, source: str, bound_px: float, limits: ImportLimits) -> None:
        self.source, self.bound_px, self.limits = source, bound_px, limits
        self.total = 0
        self.invalid = 0
        self.object_type = "cell"
        self._class_ids: dict[tuple[str | None, Any], int] = {}
        self._seen_classes: dict[tuple[Any, ...], tuple[str | None, Any]] = {}
        self._reset()

    def _reset(self) -> None:
        self.index: list[int] = []
        self.names: list[str] = []
        self.class_index: list[int] = []
        self.geometries: list[Any] = []
        self.kinds: list[str] = []
        self.measurements: list[dict[str, float]] = []
        self.metadata: list[dict[str, str]] = []

    def add(self, feature: Any, index: int) -> None:
        what = f"{self.source}: feature {index}"
        if not isinstance(feature, dict):
            raise DataError(f"{what} is {type(feature).__name__}, not an object")
        self.total += 1
        self.limits.check_count(self.total, "features", self.source)
        properties = feature.get("properties") or {}
        if not isinstance(properties, dict):
            raise DataError(f"{what} has 'properties' that are not an object")
        self.object_type = str(properties.get("objectType", self.object_type))
        geometry = feature.get("nucleusGeometry", properties.get("nucleusGeometry"))
        kind, coords = _points_of(
            geometry if geometry is not None else feature.get("geometry"), what
        )
        name, color = self._classification(properties.get("classification"), what)
        self.class_index.append(
            -1 if name is None else self._class_ids.setdefault((name, color), len(self._class_ids))
        )
        self.index.append(index)
        self.kinds.append(kind)
        self.geometries.append(coords)
        self.names.append(str(properties.get("name", "")))
        self.measurements.append(_measurements(properties.get("measurements")))
        meta = properties.get("metadata")
        self.metadata.append(
            {str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {}
        )

    def _classification(self, value: Any, what: str) -> tuple[str | None, Any]:
        """``geojson_read._classification``, remembered for the usual ``{name, color}``."""
        if isinstance(value, dict) and len(value) == 2 and isinstance(value.get("color"), list):
            key = (value.get("name"), *value["color"])
            found = self._seen_classes.get(key)
            if found is None:
                found = self._seen_classes[key] = _classification(value, what)
            return found
        return _classification(value, what)

    def take(self) -> ObjectBatch | None:
        n = len(self.names)
        if n == 0:
            return None
        if len(set(self.kinds)) > 1:
            raise DataError(f"{self.source}: mixes points and polygons; read it with read_geojson")
        classes = sorted(self._class_ids.items(), key=lambda item: item[1])
        keys = sorted({k for m in self.measurements for k in m})
        meta_keys = sorted({k for m in self.metadata for k in m})
        batch = ObjectBatch(
            names=self.names,
            class_index=np.asarray(self.class_index, dtype=np.int32),
            classes=[key for key, _ in classes],  # type: ignore[misc]
            x=np.zeros(n),
            y=np.zeros(n),
            measurements={
                k: np.array([m.get(k, math.nan) for m in self.measurements]) for k in keys
            },
            metadata={k: [m.get(k, "") for m in self.metadata] for k in meta_keys},
            object_type=self.object_type,
        )
        if self.kinds[0] == "Point":
            xy = self._coordinates(self.geometries, np.arange(n + 1))
            batch.x, batch.y = xy[:, 0].copy(), xy[:, 1].copy()
        else:
            lengths = np.fromiter((len(r) for r in self.geometries), dtype=np.int64, count=n)
            offsets = np.concatenate([[0], np.cumsum(lengths)])
            short = np.flatnonzero(lengths < 4)
            if short.size:
                raise DataError(
                    f"{self.source}: feature {self.index[short[0]]}: a ring needs at least 3 "
                    "distinct points (4 with the closing one)"
                )
            flat = [p for ring in self.geometries for p in ring]
            batch.ring_offsets, batch.ring_xy = offsets, self._coordinates(flat, offsets)
            batch.x, batch.y = ring_centroids(offsets, batch.ring_xy)
            self.invalid += _count_invalid(offsets, batch.ring_xy)
        self._reset()
        return batch

    def _coordinates(self, points: list[Any], offsets: np.ndarray) -> np.ndarray:
        """(m, 2) float array of [x, y] positions, every number checked (finite, in bound)."""
        # fast, at C speed: every position a list of two numbers (ints or floats, not bools)
        regular = set(map(type, points)) <= {list}
        regular = regular and set(map(len, points)) <= {2}
        numbers = list(itertools.chain.from_iterable(points)) if regular else []
        regular = regular and set(map(type, numbers)) <= {float, int}
        xy = np.asarray(numbers, dtype=np.float64).reshape(-1, 2) if regular else None
        if not regular:  # find the feature with a malformed position
            for k, point in enumerate(points):
                if not (
                    isinstance(point, list)
                    and len(point) >= 2
                    and all(isinstance(v, int | float) and not isinstance(v, bool) for v in point)
                ):
                    raise DataError(f"{self._what(offsets, k)}: position {point!r} is not [x, y]")
            xy = np.asarray([p[:2] for p in points], dtype=np.float64)
        xy = xy[:, :2]
        bad = ~np.isfinite(xy).all(axis=1) | (np.abs(xy).max(axis=1) > self.bound_px)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"{self._what(offsets, k)}: coordinate {xy[k].tolist()} is NaN, infinite or "
                f"beyond the import limit of {self.bound_px:.6g} level-0 px (relative to the "
                f"slide; {LIMIT_ENV['coordinate_factor']} raises it; see docs/security.md)"
            )
        return xy

    def _what(self, offsets: np.ndarray, point: int) -> str:
        ring = int(np.searchsorted(offsets, point, side="right") - 1)
        return f"{self.source}: feature {self.index[min(ring, len(self.index) - 1)]}"


def _points_of(geometry: Any, what: str) -> tuple[str, Any]:
    """("Point", [x, y]) or ("Polygon", ring positions) of a feature's geometry."""
    if not isinstance(geometry, dict):
        raise DataError(f"{what}: has no geometry object")
    kind, coords = geometry.get("type"), geometry.get("coordinates")
    if kind == "Point" and isinstance(coords, list):
        return "Point", coords
    if kind == "Polygon" and isinstance(coords, list) and coords and isinstance(coords[0], list):
        return "Polygon", coords[0]
    if kind == "MultiPolygon" and isinstance(coords, list) and coords:
        rings = [p[0] for p in coords if isinstance(p, list) and p and isinstance(p[0], list)]
        if len(rings) != len(coords):
            raise DataError(f"{what}: a MultiPolygon part has no ring")
        return "Polygon", max(rings, key=lambda ring: abs(_ring_area(ring, what)))
    raise DataError(
        f"{what}: geometry {kind!r} is not a Point, Polygon or MultiPolygon with coordinates"
    )


def _ring_area(ring: list[Any], what: str) -> float:
    try:
        xy = np.asarray(ring, dtype=np.float64)[:, :2]
    except (TypeError, ValueError, IndexError):
        raise DataError(f"{what}: a ring's positions are not [x, y] numbers") from None
    x, y = xy[:, 0], xy[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def ring_centroids(offsets: np.ndarray, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Area centroid (x, y) of each ring (the mean of its points when it has no area)."""
    starts = offsets[:-1]
    n = len(starts)
    ring_id = np.repeat(np.arange(n), np.diff(offsets))
    nxt = np.arange(len(xy)) + 1
    nxt[offsets[1:] - 1] = starts  # wrap each ring onto its first point
    x0, y0 = xy[:, 0], xy[:, 1]
    x1, y1 = x0[nxt], y0[nxt]
    cross = x0 * y1 - x1 * y0
    area2 = np.bincount(ring_id, cross, minlength=n)
    cx = np.bincount(ring_id, (x0 + x1) * cross, minlength=n)
    cy = np.bincount(ring_id, (y0 + y1) * cross, minlength=n)
    counts = np.maximum(np.diff(offsets), 1)
    flat = np.abs(area2) < 1e-9
    safe = np.where(flat, 1.0, area2)
    mean_x = np.bincount(ring_id, x0, minlength=n) / counts
    mean_y = np.bincount(ring_id, y0, minlength=n) / counts
    return np.where(flat, mean_x, cx / (3 * safe)), np.where(flat, mean_y, cy / (3 * safe))


def _count_invalid(offsets: np.ndarray, xy: np.ndarray) -> int:
    import shapely

    ring_id = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    rings = shapely.linearrings(xy, indices=ring_id)
    return int(np.count_nonzero(~shapely.is_valid(shapely.polygons(rings))))


def _opener(path: Path) -> Any:
    """``gzip.open`` for a gzipped file, else ``open``."""
    with open(path, "rb") as handle:
        return gzip.open if handle.read(2) == b"\x1f\x8b" else open


def _parse_line(line: bytes, source: str, limits: ImportLimits) -> Any:
    """One feature's JSON within ``limits``. Lines that nest deeper than a MultiPolygon's
    coordinates can (five brackets in a row) or hold a run of more digits than an integer may
    have go through the full check (``parse_json``); the others are parsed directly (a run
    of digits that long is refused there, a float's digits included)."""
    if b"[[[[[" in line or b"1" * (limits.max_int_digits + 1) in line.translate(_DIGITS):
        return parse_json(line, source, limits)
    try:
        return orjson.loads(line)  # same values as json.loads, several times faster
    except orjson.JSONDecodeError:
        pass  # NaN / Infinity, or damaged: the standard reader says which, checks follow
    try:
        return json.loads(line)
    except json.JSONDecodeError as error:
        raise DataError(f"{source}: not valid JSON ({error.msg}); the file is damaged") from error
    except (RecursionError, ValueError, OverflowError) as error:
        raise DataError(f"{source}: JSON outside the import limits ({error})") from error


#: Bytes translated to "1" for a digit, "0" for anything else (runs of digits, found fast).
_DIGITS = bytes(49 if 48 <= i <= 57 else 48 for i in range(256))


def _line_features(path: Path, limits: ImportLimits) -> Iterator[Any] | None:
    """Features of a file in our line-per-feature layout, one line at a time; None when the
    file is in another layout."""
    opener = _opener(path)
    with opener(path, "rb") as probe:
        first = probe.readline(MAX_LINE_BYTES + 1)
    if not (first.startswith(_HEADER_PREFIX) and first.rstrip().endswith(_HEADER_END)):
        return None
    if json_depth(first) > limits.max_depth:
        raise DataError(f"{path}: header nested over the import limit of {limits.max_depth}")

    def features() -> Iterator[Any]:
        read = len(first)
        with opener(path, "rb") as stream:
            stream.readline(MAX_LINE_BYTES + 1)
            for number, line in enumerate(stream, start=2):
                read += len(line)
                if read > limits.max_bytes:
                    raise DataError(
                        f"{path}: more than {limits.max_bytes >> 20} MiB of JSON, the import "
                        f"limit ({LIMIT_ENV['max_bytes']} raises it; see docs/security.md)"
                    )
                if len(line) > MAX_LINE_BYTES:
                    raise DataError(f"{path}: line {number} is over {MAX_LINE_BYTES} bytes")
                text = line.strip().rstrip(b",")
                if text in (b"]}", b""):
                    continue
                yield _parse_line(text, f"{path}: line {number}", limits)

    return features()


def _whole_file_features(path: Path, limits: ImportLimits) -> list[Any]:
    found: list[Any] = []
    for source, data in read_json_entries(path, limits):
        found += _feature_list(data, Path(source))
    return found


def iter_object_batches(
    path: str | os.PathLike[str],
    *,
    slide_dimensions_px: tuple[int, int] | None = None,
    limits: ImportLimits | None = None,
    batch_objects: int = BATCH_OBJECTS,
) -> Iterator[ObjectBatch]:
    """The objects of a GeoJSON file as batches of at most ``batch_objects`` (see the module
    docstring); coordinates beyond ``limits.coordinate_bound_px(slide_dimensions_px)``,
    malformed features and files over a limit raise ``DataError`` naming the feature."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such GeoJSON file")
    limits = limits or ImportLimits.from_env()
    collector = _Collector(str(path), limits.coordinate_bound_px(slide_dimensions_px), limits)
    features = _line_features(path, limits)
    if features is None:
        features = iter(_whole_file_features(path, limits))
    for index, feature in enumerate(features):
        collector.add(feature, index)
        if len(collector.names) >= batch_objects:
            batch = collector.take()
            if batch is not None:
                yield batch
    batch = collector.take()
    if batch is not None:
        yield batch
    if collector.invalid:
        warnings.warn(
            f"{path}: {collector.invalid} self-intersecting ring(s) kept as they are "
            "(their centroid and class are still used)",
            stacklevel=2,
        )


def read_stream_context(path: str | os.PathLike[str]) -> ExportContext | None:
    """The ``ExportContext`` in the header line of a file in our layout, else None."""
    path = Path(path)
    with _opener(path)(path, "rb") as stream:
        first = stream.readline(MAX_LINE_BYTES + 1).rstrip()
    if not (first.startswith(_HEADER_PREFIX) and first.endswith(_HEADER_END)):
        return None
    data = parse_json(first[: -len(_HEADER_END)].rstrip().rstrip(b",") + b"}", str(path))
    meta = data.get(METADATA_KEY) if isinstance(data, dict) else None
    return ExportContext.from_dict(meta, source=str(path)) if isinstance(meta, dict) else None
