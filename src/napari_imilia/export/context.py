"""What every exported file says about how it was made, plus deterministic ids and colours."""

from __future__ import annotations

import colorsys
import hashlib
import math
import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from napari_imilia import __version__
from napari_imilia.errors import DataError

#: Name of the foreign member that carries ``ExportContext`` in a GeoJSON FeatureCollection.
METADATA_KEY = "imilia"
#: Version of the layout of the ``imilia`` metadata block and of the CSV sidecar.
EXPORT_FORMAT_VERSION = 1
#: Namespace of the uuid5 ids written into GeoJSON, so re-exports give identical ids.
ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "napari-imilia/export")

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class ExportContext:
    """Provenance written into every GeoJSON and CSV export.

    ``mpp`` is level-0 µm per pixel; ``tile_px`` the tile size in pixels at the model's
    magnification. Coordinates in every export are level-0 pixels, (x, y), top-left origin.
    """

    slide_id: str
    slide_path: str | os.PathLike[str]  # stored as str
    model_name: str
    model_sha256: str
    extractor: str
    mpp: float
    tile_px: int
    software_version: str = field(default=__version__)

    def __post_init__(self) -> None:
        # normalise so a context equals itself after a trip through JSON
        object.__setattr__(self, "slide_path", os.fspath(self.slide_path))
        object.__setattr__(self, "mpp", float(self.mpp))
        object.__setattr__(self, "tile_px", int(self.tile_px))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict, including the coordinate convention."""
        return {
            "format_version": EXPORT_FORMAT_VERSION,
            "software": "napari-imilia",
            "software_version": str(self.software_version),
            "slide_id": str(self.slide_id),
            "slide_path": os.fspath(self.slide_path),
            "model_name": str(self.model_name),
            "model_sha256": str(self.model_sha256),
            "extractor": str(self.extractor),
            "mpp": float(self.mpp),
            "tile_px": int(self.tile_px),
            "coordinates": "level-0 pixels, (x, y), top-left origin",
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "metadata") -> ExportContext:
        """Inverse of :meth:`to_dict`; ``source`` names the file in error messages."""
        try:
            return cls(
                slide_id=str(data["slide_id"]),
                slide_path=str(data["slide_path"]),
                model_name=str(data["model_name"]),
                model_sha256=str(data["model_sha256"]),
                extractor=str(data["extractor"]),
                mpp=float(data["mpp"]),
                tile_px=int(data["tile_px"]),
                software_version=str(data.get("software_version", "unknown")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(
                f"{source}: export metadata is incomplete or malformed ({exc!r}); "
                "export the file again with napari-imilia"
            ) from exc


def stable_id(*parts: object) -> str:
    """A uuid5 string determined by ``parts``: the same content always gets the same id."""
    return str(uuid.uuid5(ID_NAMESPACE, "\x1f".join(str(p) for p in parts)))


def stable_ids(rows: Iterable[Sequence[object]]) -> list[str]:
    """``stable_id(*row)`` of each row (the same ids), without making UUID objects: for the
    10^5-10^6 objects of a cell export."""
    namespace = ID_NAMESPACE.bytes
    ids = []
    for row in rows:
        text = "\x1f".join(str(p) for p in row).encode("utf-8")
        digest = bytearray(hashlib.sha1(namespace + text).digest()[:16])
        digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
        digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
        h = digest.hex()
        ids.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return ids


def color_for_name(name: str) -> RGB:
    """A stable, saturated RGB colour (0-255) for a class name without a defined colour."""
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    hue = digest[0] / 255.0
    red, green, blue = colorsys.hsv_to_rgb(hue, 0.75, 0.9)
    return (round(red * 255), round(green * 255), round(blue * 255))


def check_rgb(color: Any, what: str = "colour") -> RGB:
    """Validate an RGB triple of 0-255 numbers; returns it as ints."""
    try:
        values = [float(c) for c in color]
    except (TypeError, ValueError) as exc:
        raise DataError(f"{what} must be three numbers 0-255; got {color!r}") from exc
    if len(values) != 3 or not all(math.isfinite(v) and 0 <= v <= 255 for v in values):
        raise DataError(f"{what} must be three numbers 0-255; got {color!r}")
    return (round(values[0]), round(values[1]), round(values[2]))


def classification(name: str, color: Any | None = None) -> dict[str, Any]:
    """QuPath's ``classification`` member: ``{"name": ..., "color": [r, g, b]}``."""
    rgb = color_for_name(name) if color is None else check_rgb(color, f"colour of {name!r}")
    return {"name": str(name), "color": list(rgb)}
