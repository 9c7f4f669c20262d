"""Hostile TIFFs made in milliseconds: an IFD chain that loops, and giant single-level
BigTIFFs whose tiles all share one compressed tile (a 10^6 x 10^6 px slide in ~15 MB)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import tifffile


def write_looped_tiff(path: Path, *, to: str = "first") -> Path:
    """A valid two-page tiled RGB TIFF (512 px, 0.5 µm/px) whose last IFD points back at
    ``to``: "first" (a two-IFD cycle) or "self" (the IFD names itself as the next one)."""
    image = np.full((512, 512, 3), 200, np.uint8)
    resolution = {"resolution": (2e4, 2e4), "resolutionunit": "CENTIMETER"}
    with tifffile.TiffWriter(path) as tiff:
        options = {"tile": (256, 256), "photometric": "rgb", "compression": "zlib", **resolution}
        tiff.write(image, **options)
        tiff.write(image[::2, ::2], subfiletype=1, **options)
    data = bytearray(path.read_bytes())
    offset = first = struct.unpack_from("<I", data, 4)[0]
    while True:
        next_at = offset + 2 + 12 * struct.unpack_from("<H", data, offset)[0]
        following = struct.unpack_from("<I", data, next_at)[0]
        if following == 0:
            struct.pack_into("<I", data, next_at, first if to == "first" else offset)
            break
        offset = following
    path.write_bytes(bytes(data))
    return path


def write_giant_tiff(path: Path, side_px: int, *, tile_px: int = 1024, mpp: float = 0.25) -> Path:
    """A single-level tiled RGB BigTIFF of ``side_px`` x ``side_px`` px whose tiles are all
    the same pink deflate tile (every tile offset points at one copy): a slide no pyramid
    covers, whose level 0 would take ``3 * side_px**2`` bytes decoded."""
    tile = np.empty((tile_px, tile_px, 3), np.uint8)
    tile[:] = (228, 145, 195)
    blob = zlib.compress(tile.tobytes(), 9)
    n_tiles = (-(-side_px // tile_px)) ** 2
    resolution = struct.pack("<II", round(1e4 / mpp), 1)  # px per cm
    # (tag, type, count, value or payload); types: 3 SHORT, 4 LONG, 5 RATIONAL, 16 LONG8
    entries: list[tuple[int, int, int, bytes]] = [
        (256, 16, 1, struct.pack("<Q", side_px)),  # ImageWidth
        (257, 16, 1, struct.pack("<Q", side_px)),  # ImageLength
        (258, 3, 3, struct.pack("<3H", 8, 8, 8)),  # BitsPerSample
        (259, 3, 1, struct.pack("<H", 8)),  # Compression: deflate
        (262, 3, 1, struct.pack("<H", 2)),  # Photometric: RGB
        (277, 3, 1, struct.pack("<H", 3)),  # SamplesPerPixel
        (282, 5, 1, resolution),  # XResolution
        (283, 5, 1, resolution),  # YResolution
        (284, 3, 1, struct.pack("<H", 1)),  # PlanarConfiguration: contig
        (296, 3, 1, struct.pack("<H", 3)),  # ResolutionUnit: cm
        (322, 16, 1, struct.pack("<Q", tile_px)),  # TileWidth
        (323, 16, 1, struct.pack("<Q", tile_px)),  # TileLength
        (324, 16, n_tiles, b""),  # TileOffsets (filled below)
        (325, 16, n_tiles, b""),  # TileByteCounts
    ]
    ifd_at = 16
    ifd_size = 8 + 20 * len(entries) + 8
    payload_at = ifd_at + ifd_size
    blob_at = payload_at + 16 + 2 * 8 * n_tiles + 64  # after the two arrays and the rationals
    arrays = {
        324: np.full(n_tiles, blob_at, "<u8").tobytes(),
        325: np.full(n_tiles, len(blob), "<u8").tobytes(),
    }
    with open(path, "wb") as handle:
        handle.write(b"II+\x00" + struct.pack("<HHQ", 8, 0, ifd_at))
        ifd = bytearray(struct.pack("<Q", len(entries)))
        payloads = bytearray()
        for tag, kind, count, value in entries:
            value = arrays.get(tag, value)
            if len(value) <= 8:
                ifd += struct.pack("<HHQ", tag, kind, count) + value.ljust(8, b"\0")
            else:
                ifd += struct.pack("<HHQQ", tag, kind, count, payload_at + len(payloads))
                payloads += value
        ifd += struct.pack("<Q", 0)
        handle.write(bytes(ifd))
        handle.write(bytes(payloads))
        handle.seek(blob_at)
        handle.write(blob)
    return path
