"""Write QuPath-compatible GeoJSON (level-0 pixels, (x, y), top-left origin).

Written files are one FeatureCollection with a foreign member ``"imilia"`` holding the
``ExportContext`` (RFC 7946 allows foreign members; QuPath ignores them), one feature per
line; gzip-compressed when the name ends in ``.gz``, or a zip archive holding one
``.geojson`` when it ends in ``.zip`` (QuPath 0.4+ imports ``.geojson``, ``.json`` and
``.zip`` but not ``.gz``). The same objects and context give the same bytes. Reading is in
:mod:`napari_imilia.export.geojson_read`.
"""

from __future__ import annotations

import gzip as gzip_lib
import io
import json
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from napari_imilia.errors import DataError
from napari_imilia.export.context import METADATA_KEY, ExportContext
from napari_imilia.files import write_bytes_atomic


def write_geojson(
    path: str | os.PathLike[str],
    geojson_features: Sequence[dict[str, Any]],
    ctx: ExportContext,
    *,
    gzip: bool | None = None,
) -> Path:
    """Write ``geojson_features`` (QuPath objects) as one FeatureCollection with ``ctx`` as
    its ``imilia`` member.

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
    metadata = {**ctx.to_dict(), "n_features": len(geojson_features)}
    lines = []
    for i, feature in enumerate(geojson_features):
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
