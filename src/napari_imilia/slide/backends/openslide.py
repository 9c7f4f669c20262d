"""OpenSlide backend: MIRAX, Hamamatsu VMS/VMU, Sakura SVSLIDE, Zeiss CZI, and a fallback.

For the formats tiffslide cannot read, and as a user-selected backend for any slide OpenSlide
reads (``backend="openslide"``, ``--slide-backend openslide``). Every level is a
:class:`~.base.RegionArray` over ``OpenSlide.read_region`` (OpenSlide decodes only the tiles a
region covers); transparent, unscanned areas are composited on white.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from napari_imilia.errors import SlideError, one_line
from napari_imilia.slide.backends.base import (
    RegionArray,
    SlideSource,
    build_or_close,
    composite_on_white,
)

#: OpenSlide's vendor names and what we call the format.
OPENSLIDE_FORMATS: dict[str, str] = {
    "aperio": "Aperio SVS",
    "dicom": "DICOM WSI",
    "hamamatsu": "Hamamatsu NDPI/VMS/VMU",
    "leica": "Leica SCN",
    "mirax": "MIRAX",
    "philips": "Philips TIFF",
    "sakura": "Sakura SVSLIDE",
    "trestle": "Trestle TIFF",
    "ventana": "Ventana BIF",
    "zeiss": "Zeiss CZI",
    "generic-tiff": "pyramidal TIFF",
}
#: OpenSlide's default tile for levels whose tile size it does not report (px).
DEFAULT_TILE_PX = 256


def openslide_vendor(path: Path) -> str | None:
    """OpenSlide's vendor name for ``path`` ("mirax", "aperio"...) or None; reads headers only."""
    import openslide

    try:
        return openslide.OpenSlide.detect_format(str(path))
    except Exception:
        return None


def open_openslide(path: Path) -> SlideSource:
    """Open ``path`` (for DICOM, a file of the series) with OpenSlide."""
    import openslide

    target = path
    if path.is_dir():
        from napari_imilia.slide.backends.dicom import dicom_files

        files = dicom_files(path)
        if not files:
            raise SlideError(f"{path.name} is a folder without DICOM files OpenSlide could read")
        target = files[0]
    try:
        handle = openslide.OpenSlide(str(target))
    except Exception as error:
        raise SlideError(
            f"{path.name} is not a whole-slide image that OpenSlide can read: {one_line(error)}"
        ) from error
    return build_or_close(handle, path, lambda: _source(handle, path), one_line)


def _source(handle: Any, path: Path) -> SlideSource:
    import openslide

    props = dict(handle.properties)
    vendor = props.get(openslide.PROPERTY_NAME_VENDOR)
    width0 = handle.level_dimensions[0][0]
    arrays = []
    tile_shapes = []
    for level, (width, height) in enumerate(handle.level_dimensions):
        arrays.append(RegionArray((height, width), _reader(handle, level)))
        tile_w = int(props.get(f"openslide.level[{level}].tile-width", DEFAULT_TILE_PX))
        tile_h = int(props.get(f"openslide.level[{level}].tile-height", DEFAULT_TILE_PX))
        tile_shapes.append((tile_h, tile_w))
    mpp_x = props.get(openslide.PROPERTY_NAME_MPP_X)
    mpp_y = props.get(openslide.PROPERTY_NAME_MPP_Y)
    mpp_xy = (float(mpp_x), float(mpp_y or mpp_x)) if mpp_x else None
    objective = props.get(openslide.PROPERTY_NAME_OBJECTIVE_POWER)
    associated = handle.associated_images
    return SlideSource(
        format_name=_format_name(vendor, path),
        backend="openslide",
        arrays=arrays,
        downsamples=[width0 / width for width, _ in handle.level_dimensions],
        tile_shapes=tile_shapes,
        mpp_xy=mpp_xy,
        mpp_origin="openslide.mpp-x" if mpp_xy else None,
        objective_power=float(objective) if objective else None,
        vendor=vendor,
        properties=props,
        associated_image_names=tuple(associated.keys()),
        read_associated=lambda name: composite_on_white(np.asarray(associated[name])),
        close=handle.close,
        files=tuple(_slide_files(path)),
    )


def _format_name(vendor: str | None, path: Path) -> str:
    """Our name for OpenSlide's vendor; Hamamatsu's three formats told apart by the ending."""
    if vendor == "hamamatsu" and path.suffix.lower() in (".ndpi", ".vms", ".vmu"):
        return f"Hamamatsu {path.suffix[1:].upper()}"
    return OPENSLIDE_FORMATS.get(vendor or "", vendor or "unknown")


def _reader(handle: Any, level: int) -> Any:
    downsample = handle.level_downsamples[level]

    def read(x: int, y: int, width: int, height: int) -> np.ndarray:
        # OpenSlide takes the top-left in level-0 pixels
        origin = (round(x * downsample), round(y * downsample))
        region = handle.read_region(origin, level, (width, height))
        return composite_on_white(np.asarray(region))

    return read


def _slide_files(path: Path) -> list[Path]:
    """The slide file and, for MIRAX, the files of its companion folder (same stem)."""
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file())
    companion = path.with_suffix("")
    if path.suffix.lower() == ".mrxs" and companion.is_dir():
        return [path, *sorted(p for p in companion.iterdir() if p.is_file())]
    return [path]
