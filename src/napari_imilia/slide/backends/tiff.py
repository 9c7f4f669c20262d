"""tiffslide backend: SVS, generic/OME pyramidal TIFF, NDPI, SCN, Philips TIFF, BIF.

Levels are tiffslide's zarr arrays (tifffile decodes one tile per chunk read). An OME-TIFF's
pixel size and objective come from its OME-XML (:mod:`.ome`), which tiffslide does not read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from napari_imilia.errors import SlideError, one_line
from napari_imilia.slide.backends.base import SlideSource, build_or_close
from napari_imilia.slide.backends.ome import parse_ome

#: tifffile's format flags, most specific first, and the name we show for each.
TIFF_FORMATS: tuple[tuple[str, str], ...] = (
    ("is_ome", "OME-TIFF"),
    ("is_svs", "Aperio SVS"),
    ("is_ndpi", "Hamamatsu NDPI"),
    ("is_scn", "Leica SCN"),
    ("is_philips", "Philips TIFF"),
    ("is_bif", "Ventana BIF"),
)


def open_tiffslide(path: Path) -> SlideSource:
    """Open ``path`` with tiffslide; raises ``SlideError`` for what it cannot read."""
    import tiffslide

    try:
        handle = tiffslide.TiffSlide(path)
    except Exception as error:  # tifffile/PIL raise many types for non-slides
        raise SlideError(
            f"{path.name} is not a whole-slide image that tiffslide can read "
            f"(SVS, generic/OME pyramidal TIFF, NDPI, SCN, BIF...): {one_line(error)}"
        ) from error
    return build_or_close(handle, path, lambda: _source(handle, path), one_line)


def _source(handle: Any, path: Path) -> SlideSource:
    _check_complete(handle, path)
    tiff = handle.ts_tifffile
    properties = {k: _plain(v) for k, v in handle.properties.items()}
    mpp_xy, origin = _tiff_mpp(properties)
    objective = properties.get("tiffslide.objective-power")
    objective_power = float(objective) if objective else None
    format_name = _format_name(tiff, handle.level_count)
    if getattr(tiff, "is_ome", False) and tiff.ome_metadata:
        size, magnification, problem = parse_ome(tiff.ome_metadata)
        if size is not None:
            mpp_xy, origin = (size.mpp_x, size.mpp_y), size.origin
            properties["imilia.ome-physical-size"] = size.origin
        elif problem:
            properties["imilia.ome-physical-size-problem"] = problem
        objective_power = magnification or objective_power
    group = handle.zarr_group
    arrays = [group[str(index)] for index in range(handle.level_count)]
    return SlideSource(
        format_name=format_name,
        backend="tiffslide",
        arrays=arrays,
        downsamples=[float(ds) for ds in handle.level_downsamples],
        tile_shapes=[tuple(int(c) for c in array.chunks[:2]) for array in arrays],
        mpp_xy=mpp_xy,
        mpp_origin=origin,
        objective_power=objective_power,
        vendor=properties.get("tiffslide.vendor"),
        properties=properties,
        associated_image_names=tuple(handle.associated_images.keys()),
        read_associated=lambda name: np.asarray(handle.associated_images[name].convert("RGB")),
        close=handle.close,
        files=(path,),
    )


def _format_name(tiff: Any, level_count: int) -> str:
    for flag, name in TIFF_FORMATS:
        if getattr(tiff, flag, False):
            return name
    return "pyramidal TIFF" if level_count > 1 else "TIFF"


def _tiff_mpp(properties: dict[str, Any]) -> tuple[tuple[float, float] | None, str | None]:
    mpp_x = properties.get("tiffslide.mpp-x")
    if not mpp_x:
        return None, None
    mpp_y = properties.get("tiffslide.mpp-y") or mpp_x
    return (float(mpp_x), float(mpp_y)), "tiffslide.mpp-x (vendor metadata or resolution tags)"


def _check_complete(handle: Any, path: Path) -> None:
    """Raise if any image tile or strip points beyond the end of the file (truncated copy)."""
    size = path.stat().st_size
    tiff = handle.ts_tifffile
    for page in tiff.pages:
        offsets = np.asarray(page.dataoffsets, dtype=np.int64)
        counts = np.asarray(page.databytecounts, dtype=np.int64)
        if offsets.size and int((offsets + counts).max()) > size:
            raise SlideError(
                f"{path.name} is truncated or corrupt: its image data runs past the end of the "
                f"file ({size} bytes); copy the slide again"
            )


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value
