"""tiffslide backend: SVS, generic/OME pyramidal TIFF, NDPI, SCN, Philips TIFF, BIF.

Levels are tiffslide's zarr arrays (tifffile decodes one tile per chunk read). An OME-TIFF's
pixel size and objective come from its OME-XML (:mod:`.ome`), which tiffslide does not read.
"""

from __future__ import annotations

import os
import struct
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


#: At most this many image file directories (pages and SubIFDs) are walked in one TIFF;
#: whole-slide images have tens.
MAX_IFDS = 100_000
#: TIFF tag of the SubIFDs (pyramid levels of OME-TIFF and others) and its value types.
SUBIFDS_TAG = 330
_SUBIFD_TYPES = {4: 4, 13: 4, 16: 8, 18: 8}  # LONG, IFD: 4 bytes; LONG8, IFD8: 8 bytes


def open_tiffslide(path: Path) -> SlideSource:
    """Open ``path`` with tiffslide; raises ``SlideError`` for what it cannot read."""
    import tiffslide

    check_ifd_chain(path)
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


def check_ifd_chain(path: Path) -> int:
    """Walk the TIFF's chain of image file directories, and the SubIFD chains they name,
    reading only their headers; returns how many there are. Raises ``SlideError`` when a
    chain points back into itself (tifffile would follow it forever) or holds more than
    :data:`MAX_IFDS`. A chain may join one already walked (SubIFDs listed and also linked);
    one that runs off the file is left for tifffile to report."""
    from tifffile import TIFF

    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        header = handle.read(16)
        order = "<" if header[:2] == b"II" else ">"
        big = len(header) >= 4 and struct.unpack(order + "H", header[2:4])[0] == 43
        if big:
            kind = TIFF.BIG_LE if order == "<" else TIFF.BIG_BE
        elif order == "<":
            kind = TIFF.NDPI_LE if path.suffix.lower() == ".ndpi" else TIFF.CLASSIC_LE
        else:
            kind = TIFF.CLASSIC_BE
        at = 8 if big else 4
        if len(header) < at + kind.offsetsize:
            return 0
        first = struct.unpack(kind.offsetformat, header[at : at + kind.offsetsize])[0]
        seen: set[int] = set()
        chains = [first]
        while chains:
            offset, this_chain = chains.pop(), set()
            while 0 < offset < size and (offset in this_chain or offset not in seen):
                if offset in this_chain:
                    raise SlideError(
                        f"{path.name} is corrupt: its chain of TIFF image directories loops "
                        f"(the directory at byte {offset} is reached twice); copy the slide again"
                    )
                if len(seen) >= MAX_IFDS:
                    raise SlideError(
                        f"{path.name} has more than {MAX_IFDS:,} TIFF image directories; it is "
                        "not a whole-slide image napari-imilia reads"
                    )
                seen.add(offset)
                this_chain.add(offset)
                offset, subifds = _read_ifd(handle, offset, kind)
                chains.extend(subifds)
    return len(seen)


def _read_ifd(handle: Any, offset: int, kind: Any) -> tuple[int, list[int]]:
    """(offset of the next directory or 0, offsets of its SubIFDs) of the directory at
    ``offset``; (0, []) when it cannot be read."""
    handle.seek(offset)
    raw = handle.read(kind.tagnosize)
    if len(raw) < kind.tagnosize:
        return 0, []
    count = struct.unpack(kind.tagnoformat, raw)[0]
    if count > 4096:  # tifffile's own limit: it stops there too
        return 0, []
    entries = handle.read(count * kind.tagsize + kind.offsetsize)
    if len(entries) < count * kind.tagsize + kind.offsetsize:
        return 0, []
    following = struct.unpack(kind.offsetformat, entries[-kind.offsetsize :])[0]
    subifds: list[int] = []
    if not kind.is_ndpi:
        for index in range(count):
            entry = entries[index * kind.tagsize : (index + 1) * kind.tagsize]
            tag, type_, n = struct.unpack(
                kind.tagformat1 + kind.tagformat2[1], entry[: -kind.tagoffsetthreshold]
            )
            if tag == SUBIFDS_TAG and type_ in _SUBIFD_TYPES and 0 < n <= MAX_IFDS:
                subifds = _subifd_offsets(handle, kind, entry, _SUBIFD_TYPES[type_], n)
    return following, subifds


def _subifd_offsets(handle: Any, kind: Any, entry: bytes, item: int, n: int) -> list[int]:
    value = entry[-kind.tagoffsetthreshold :]
    code = kind.byteorder + ("I" if item == 4 else "Q")
    if item * n > kind.tagoffsetthreshold:
        at = struct.unpack(kind.offsetformat, value[: kind.offsetsize])[0]
        handle.seek(at)
        value = handle.read(item * n)
        if len(value) < item * n:
            return []
    return [struct.unpack_from(code, value, i * item)[0] for i in range(n)]
