"""What every backend hands to :class:`~napari_imilia.slide.Slide`: native level arrays + metadata.

A backend opens a slide with its library and returns a :class:`SlideSource`. Its ``arrays``
are (H, W, 3 or 4) uint8 array-likes that dask wraps without reading: tiffslide's zarr arrays,
or :class:`RegionArray` over a library's region reads (wsidicom, OpenSlide), which read only
the rectangle a slice asks for.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

#: ``read(x, y, width, height)`` -> (height, width, C) uint8, in the level's own pixels.
RegionReader = Callable[[int, int, int, int], np.ndarray]

T = TypeVar("T")


@dataclass
class SlideSource:
    """A slide as one backend sees it, before napari-imilia's rules (MPP checks, lazy levels).

    ``arrays``: one array-like per native level, finest first; ``downsamples``: level-0 width
    over each level's width; ``tile_shapes``: native (h, w) tile of each level, to align dask
    chunks; ``mpp_xy``: level-0 (x, y) µm/px from the metadata and ``mpp_origin`` where it
    came from; ``files``: the files that make the slide (for the quick hash).
    """

    format_name: str
    backend: str
    arrays: list[Any]
    downsamples: list[float]
    tile_shapes: list[tuple[int, int]]
    mpp_xy: tuple[float, float] | None
    mpp_origin: str | None
    objective_power: float | None
    vendor: str | None
    properties: dict[str, Any]
    associated_image_names: tuple[str, ...]
    read_associated: Callable[[str], np.ndarray]
    close: Callable[[], None]
    files: tuple[Path, ...]
    token: str = field(default_factory=lambda: uuid.uuid4().hex)

    def __post_init__(self) -> None:
        name = self.files[0].name if self.files else "the slide"
        self.arrays = [
            a if isinstance(a, DecodeChecked) else DecodeChecked(a, name) for a in self.arrays
        ]

    def level_name(self, index: int) -> str:
        """A dask name for native level ``index`` that is unique to this open slide."""
        return f"imilia-{self.backend}-level{index}-{self.token}"


class RegionArray:
    """An (H, W, 3) uint8 array-like whose slices are region reads of one pyramid level.

    Only step-1 slices of rows and columns are supported, which is all dask and
    :mod:`napari_imilia.tiling.grid` ask for. Thread-safe as far as ``read`` is.
    """

    def __init__(self, shape_hw: tuple[int, int], read: RegionReader) -> None:
        self.shape = (int(shape_hw[0]), int(shape_hw[1]), 3)
        self.dtype = np.dtype(np.uint8)
        self.ndim = 3
        self._read = read

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray:
        if not isinstance(key, tuple):
            key = (key,)
        if any(k is Ellipsis for k in key):
            at = next(i for i, k in enumerate(key) if k is Ellipsis)
            fill = (slice(None),) * (3 - len(key) + 1)
            key = key[:at] + fill + key[at + 1 :]
        key = key + (slice(None),) * (3 - len(key))
        rows, cols = (_as_range(k, n) for k, n in zip(key[:2], self.shape[:2], strict=True))
        height, width = rows[1] - rows[0], cols[1] - cols[0]
        if height <= 0 or width <= 0:
            block = np.empty((max(height, 0), max(width, 0), 3), np.uint8)
        else:
            block = np.asarray(self._read(cols[0], rows[0], width, height))[..., :3]
        return block[:, :, key[2]]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return np.asarray(self[:, :], dtype=dtype)


class DecodeChecked:
    """A native level array whose reads that fail in the decoder (a corrupt zlib / JPEG tile,
    a truncated strip) raise a one-line ``SlideError`` naming the slide, not the codec's
    traceback; every read of every backend goes through one."""

    def __init__(self, array: Any, name: str) -> None:
        self._array = array
        self.name = name
        self.shape = tuple(array.shape)
        self.dtype = np.dtype(array.dtype)
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray:
        from napari_imilia.errors import ImiliaError, SlideError, one_line

        try:
            return self._array[key]
        except (ImiliaError, MemoryError, TypeError, IndexError):
            raise
        except Exception as error:  # imagecodecs, zlib, tifffile, OpenSlide, wsidicom...
            raise SlideError(
                f"{self.name}: image data cannot be decoded ({type(error).__name__}: "
                f"{one_line(error, 200)}); the slide file is damaged, copy or export it again"
            ) from error

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return np.asarray(self[:, :], dtype=dtype)


def _as_range(key: Any, size: int) -> tuple[int, int]:
    if isinstance(key, (int, np.integer)):
        index = int(key) + (size if key < 0 else 0)
        return index, index + 1
    if not isinstance(key, slice):
        raise TypeError(f"region arrays take slices, got {key!r}")
    start, stop, step = key.indices(size)
    if step != 1:
        raise TypeError("region arrays only take step-1 slices")
    return start, max(start, stop)


def composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """RGB uint8 of an RGBA image over white: transparent (unscanned) areas become white."""
    rgba = np.asarray(rgba)
    if rgba.shape[-1] == 3:
        return rgba
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0
    rgb = rgba[..., :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
    return (rgb + 0.5).astype(np.uint8)


def build_or_close(
    handle: Any, path: Path, build: Callable[[], T], describe: Callable[[Any], str]
) -> T:
    """``build()`` something over an opened ``handle`` (a source, its levels); on failure
    close ``handle`` and raise ``SlideError`` (a ``SlideError`` as it is, anything else
    naming ``path`` and ``describe(error)``)."""
    from napari_imilia.errors import SlideError

    try:
        return build()
    except SlideError:
        handle.close()
        raise
    except Exception as error:
        handle.close()
        raise SlideError(f"{path.name} could not be read: {describe(error)}") from error
