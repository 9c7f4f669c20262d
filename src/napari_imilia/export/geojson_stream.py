"""QuPath GeoJSON of many small objects (cells), written as a stream of columns.

:func:`~napari_imilia.export.read_geojson_file` builds one repaired shapely object per
feature: right for annotations, far too slow for the 10^5-10^6 cells of a slide census.
Here objects travel as an :class:`ObjectBatch` (columns: names, classes, centroids, one ring
per object as offsets into a coordinate array, numeric measurements, text metadata) and are
written one feature per line by :class:`GeoJSONStreamWriter`, batch after batch, so memory
holds one batch; :mod:`napari_imilia.export.geojson_stream_read` reads them back the same way.
Coordinates are level-0 pixels, (x, y), top-left origin, rounded to 0.01 px; rings are
closed and counter-clockwise in (x, y) values, as ``geojson_objects`` writes them.
"""

from __future__ import annotations

import gzip
import io
import itertools
import json
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from json.encoder import encode_basestring
from pathlib import Path
from typing import IO, Any

import numpy as np

from napari_imilia.errors import DataError
from napari_imilia.export.context import METADATA_KEY, ExportContext, classification, stable_ids
from napari_imilia.export.geojson_objects import COORD_DECIMALS
from napari_imilia.files import atomic_path

#: Objects per batch handed out by the reader.
BATCH_OBJECTS = 50_000
#: Longest accepted line (one feature) of a line-per-feature file.
MAX_LINE_BYTES = 1 << 20
_HEADER_PREFIX = b'{"type": "FeatureCollection"'


@dataclass
class ObjectBatch:
    """Objects as columns. ``class_index[i]`` indexes ``classes`` (-1: unclassified);
    ``x``, ``y``: centroids (level-0 px); ``ring_offsets`` (n + 1) into ``ring_xy`` (m, 2)
    level-0 (x, y), or None for points; ``measurements``: name -> (n,) float (NaN: none);
    ``metadata``: name -> n texts ('' : none)."""

    names: list[str]
    class_index: np.ndarray
    classes: list[tuple[str, tuple[int, int, int] | None]]
    x: np.ndarray
    y: np.ndarray
    ring_offsets: np.ndarray | None = None
    ring_xy: np.ndarray | None = None
    measurements: dict[str, np.ndarray] = field(default_factory=dict)
    metadata: dict[str, list[str]] = field(default_factory=dict)
    object_type: str = "cell"

    def __len__(self) -> int:
        return len(self.names)

    def class_names(self) -> list[str | None]:
        """Each object's class name (None when unclassified)."""
        names = [name for name, _ in self.classes]
        return [names[i] if i >= 0 else None for i in self.class_index.tolist()]

    def ring(self, i: int) -> np.ndarray:
        """(k, 2) ring of object ``i`` (closed: first point repeated last)."""
        if self.ring_offsets is None or self.ring_xy is None:
            raise DataError("these objects are points; they have no ring")
        return self.ring_xy[self.ring_offsets[i] : self.ring_offsets[i + 1]]


# ----------------------------------------------------------------------------- writing
def _closed_ccw_rings(offsets: np.ndarray, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each ring rounded to 0.01 px, closed, with positive signed area in (x, y) values
    (RFC 7946 counter-clockwise), as QuPath and ``geojson_objects`` write them."""
    offsets = np.asarray(offsets, dtype=np.int64)
    xy = np.round(np.asarray(xy, dtype=np.float64), COORD_DECIMALS) + 0.0
    starts, ends = offsets[:-1], offsets[1:]
    if np.any(ends - starts < 3):
        raise DataError("every ring needs at least 3 points")
    open_rings = np.flatnonzero(np.any(xy[starts] != xy[ends - 1], axis=1))
    if open_rings.size:  # repeat the first point at the end of each open ring
        xy = np.insert(xy, ends[open_rings], xy[starts[open_rings]], axis=0)
        grown = np.zeros(len(starts), dtype=np.int64)
        grown[open_rings] = 1
        offsets = np.concatenate([[0], np.cumsum(np.diff(offsets) + grown)])
        starts, ends = offsets[:-1], offsets[1:]
    lengths = ends - starts
    ring_id = np.repeat(np.arange(len(starts)), lengths)
    position = np.arange(len(xy)) - starts[ring_id]
    nxt = np.minimum(np.arange(len(xy)) + 1, len(xy) - 1)
    last = position == lengths[ring_id] - 1
    cross = np.where(last, 0.0, xy[:, 0] * xy[nxt, 1] - xy[nxt, 0] * xy[:, 1])
    clockwise = np.bincount(ring_id, cross, minlength=len(starts)) < 0
    flip = clockwise[ring_id]
    order = np.where(flip, ends[ring_id] - 1 - position, np.arange(len(xy)))
    return offsets, xy[order]


class GeoJSONStreamWriter:
    """Writes a FeatureCollection one batch at a time, one feature per line, atomically
    (the file appears complete on :meth:`close`, or not at all). ``.gz`` names are gzipped.

    Each object gets a stable uuid5 id from the slide, its name and its centroid, and its
    ring as ``geometry`` (a Polygon; a Point when the batch has no rings). Our backends
    segment nuclei only, so a cell's outline is its nucleus: ``nucleus_geometry=True``
    repeats it as QuPath's ``nucleusGeometry`` (twice the bytes; QuPath reads a cell
    without one as a cell whose outline is given).
    """

    def __init__(
        self, path: str | os.PathLike[str], ctx: ExportContext, *, nucleus_geometry: bool = False
    ) -> None:
        self.path = Path(path)
        self.ctx = ctx
        self.nucleus_geometry = nucleus_geometry
        self.n_features = 0
        self._atomic = atomic_path(self.path)
        tmp = self._atomic.__enter__()
        raw = open(tmp, "wb")  # noqa: SIM115 - closed in close()
        self._raw = raw
        self._stream: IO[bytes] = (
            gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0)
            if self.path.name.endswith(".gz")
            else raw
        )
        self._text = io.TextIOWrapper(self._stream, encoding="utf-8", newline="\n")
        head = json.dumps({"type": "FeatureCollection", METADATA_KEY: ctx.to_dict()})
        self._text.write(f'{head[:-1]}, "features": [\n')

    def __enter__(self) -> GeoJSONStreamWriter:
        return self

    def __exit__(self, kind: Any, value: Any, traceback: Any) -> None:
        self.close(ok=kind is None)

    def write(self, batch: ObjectBatch) -> None:
        """Append ``batch``'s objects."""
        n = len(batch)
        if n == 0:
            return
        for name, column in batch.measurements.items():
            if len(column) != n:
                raise DataError(f"measurement {name!r} has {len(column)} values for {n} objects")
        x = np.round(np.asarray(batch.x, dtype=np.float64), COORD_DECIMALS) + 0.0
        y = np.round(np.asarray(batch.y, dtype=np.float64), COORD_DECIMALS) + 0.0
        geometries = _geometry_texts(batch, x, y)
        props = _property_texts(batch)
        kind, slide = batch.object_type, self.ctx.slide_id
        ids = stable_ids(
            (kind, slide, name, f"{xi:.2f}", f"{yi:.2f}")
            for name, xi, yi in zip(batch.names, x.tolist(), y.tolist(), strict=True)
        )
        nucleus = self.nucleus_geometry and batch.ring_offsets is not None
        lines = [
            f'{{"type": "Feature", "id": "{fid}", "geometry": {geometry}'
            + (f', "nucleusGeometry": {geometry}' if nucleus else "")
            + f', "properties": {{{prop}}}}}'
            for fid, geometry, prop in zip(ids, geometries, props, strict=True)
        ]
        separator = ",\n" if self.n_features else ""
        self._text.write(separator + ",\n".join(lines))
        self.n_features += n

    def close(self, *, ok: bool = True) -> Path:
        """Finish the file (``ok``: move it into place; else discard it)."""
        if self._text.closed:
            return self.path
        self._text.write("\n]}\n")
        self._text.flush()
        self._text.close()  # closes the gzip stream and the raw file too
        if ok:
            self._atomic.__exit__(None, None, None)
        else:
            self._atomic.__exit__(DataError, DataError("discarded"), None)
        return self.path


def write_object_batches(
    path: str | os.PathLike[str],
    batches: Iterator[ObjectBatch] | Sequence[ObjectBatch],
    ctx: ExportContext,
    *,
    nucleus_geometry: bool = False,
) -> int:
    """Write every batch into one file (see :class:`GeoJSONStreamWriter`); returns the count."""
    with GeoJSONStreamWriter(path, ctx, nucleus_geometry=nucleus_geometry) as writer:
        for batch in batches:
            writer.write(batch)
    return writer.n_features


def _number_columns(values: np.ndarray) -> tuple[np.ndarray, int]:
    """Each value (rounded to 0.01) as fixed-width ASCII, right-aligned (leading spaces are
    JSON whitespace): an (n, width) uint8 array. Vectorised: no Python float per number."""
    hundredths = np.rint(np.asarray(values, dtype=np.float64) * 100).astype(np.int64)
    negative = hundredths < 0
    magnitude = np.abs(hundredths)
    whole = magnitude // 100
    n_digits = len(str(int(whole.max()))) if whole.size else 1
    signed = bool(negative.any())
    width = n_digits + 3 + int(signed)
    out = np.full((len(hundredths), width), ord(" "), dtype=np.uint8)
    out[:, -1] = 48 + magnitude % 10
    out[:, -2] = 48 + (magnitude // 10) % 10
    out[:, -3] = ord(".")
    digits = np.ones(len(whole), dtype=np.int64)  # digits of each whole part
    for place in range(1, n_digits):
        digits += whole >= 10**place
    rest = whole.copy()
    for place in range(n_digits):
        column = width - 4 - place
        shown = place < digits
        out[shown, column] = 48 + rest[shown] % 10
        rest //= 10
    if signed:
        rows = np.flatnonzero(negative)
        out[rows, width - 4 - digits[rows]] = ord("-")
    return out, width


def _point_texts(xy: np.ndarray) -> tuple[str, int]:
    """All points as one ASCII text of fixed-width ``[x,y],`` tokens, and the token width."""
    columns, width = _number_columns(xy.reshape(-1))
    pairs = columns.reshape(len(xy), 2 * width)
    token = np.empty((len(xy), 2 * width + 4), dtype=np.uint8)
    token[:, 0] = ord("[")
    token[:, 1 : 1 + width] = pairs[:, :width]
    token[:, 1 + width] = ord(",")
    token[:, 2 + width : 2 + 2 * width] = pairs[:, width:]
    token[:, -2] = ord("]")
    token[:, -1] = ord(",")
    return token.tobytes().decode("ascii"), 2 * width + 4


def _geometry_texts(batch: ObjectBatch, x: np.ndarray, y: np.ndarray) -> list[str]:
    """GeoJSON geometry text per object: its ring as a Polygon, else its centroid as a
    Point. Every coordinate is formatted at once (``_point_texts``), then cut per ring."""
    if batch.ring_offsets is None or batch.ring_xy is None:
        text, size = _point_texts(np.stack([x, y], axis=1))
        return [
            f'{{"type": "Point", "coordinates": {text[i * size : (i + 1) * size - 1]}}}'
            for i in range(len(x))
        ]
    offsets, xy = _closed_ccw_rings(batch.ring_offsets, batch.ring_xy)
    text, size = _point_texts(xy)
    bounds = (offsets * size).tolist()
    return [
        f'{{"type": "Polygon", "coordinates": [[{text[a : b - 1]}]]}}'
        for a, b in itertools.pairwise(bounds)
    ]


def _property_texts(batch: ObjectBatch) -> list[str]:
    """The ``properties`` members of each object as JSON text (without the braces)."""
    head = f'"objectType": {json.dumps(batch.object_type)}, "name": '
    classes = [
        ", " + json.dumps({"classification": classification(name, color)})[1:-1]
        for name, color in batch.classes
    ]
    names = [head + encode_basestring(str(name)) for name in batch.names]
    class_index = np.asarray(batch.class_index).tolist()
    texts = [
        name + (classes[c] if c >= 0 else "") for name, c in zip(names, class_index, strict=True)
    ]
    if batch.measurements:
        keys = [encode_basestring(str(k)) for k in batch.measurements]
        columns = [np.asarray(v, dtype=np.float64).tolist() for v in batch.measurements.values()]
        for i, values in enumerate(zip(*columns, strict=True)):
            shown = [f"{k}: {v!r}" for k, v in zip(keys, values, strict=True) if math.isfinite(v)]
            if shown:
                texts[i] += ', "measurements": {' + ", ".join(shown) + "}"
    if batch.metadata:
        keys = [encode_basestring(str(k)) for k in batch.metadata]
        cache: dict[str, str] = {}
        columns = [[str(v) for v in values] for values in batch.metadata.values()]
        for i, values in enumerate(zip(*columns, strict=True)):
            shown = [
                f"{k}: {cache.get(v) or cache.setdefault(v, encode_basestring(v))}"
                for k, v in zip(keys, values, strict=True)
                if v
            ]
            if shown:
                texts[i] += ', "metadata": {' + ", ".join(shown) + "}"
    return texts
