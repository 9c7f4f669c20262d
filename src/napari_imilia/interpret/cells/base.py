"""The cell-backend interface, a registry of backends by name, and resampling helpers.

A backend turns one RGB tile at ``mpp`` µm/px, whose top-left is ``level0_xy`` (level-0
pixels) and whose pixels each span ``level0_per_px`` level-0 pixels, into a ``TileCells``.
It resamples the tile to its own ``analysis_mpp`` when that differs by more than
``RESAMPLE_TOLERANCE`` and returns labels at that resolution, with ``mpp`` and
``level0_per_px`` of the labels set accordingly.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
from skimage.transform import resize

from napari_imilia.errors import DataError, ImiliaError
from napari_imilia.interpret.cells.stain import check_rgb
from napari_imilia.interpret.cells.types import CellTile, TileCells

#: Relative µm/px difference below which a tile is analysed as given (0.499 counts as 0.5).
RESAMPLE_TOLERANCE = 0.03


@runtime_checkable
class CellBackend(Protocol):
    """Detects, segments and classifies nuclei in RGB tiles."""

    name: str
    analysis_mpp: float

    def segment(
        self,
        tile_rgb: np.ndarray,
        *,
        mpp: float,
        level0_xy: tuple[int, int],
        level0_per_px: float,
        tissue_mask: np.ndarray | None = None,
    ) -> TileCells:
        """Cells of one (H, W, 3) uint8 tile given at ``mpp`` µm/px."""
        ...

    def segment_many(self, tiles: Sequence[CellTile]) -> list[TileCells]:
        """``segment`` for each tile, in order."""
        ...


def segment_each(backend: CellBackend, tiles: Sequence[CellTile]) -> list[TileCells]:
    """``backend.segment`` applied to each ``CellTile`` in turn (a plain ``segment_many``)."""
    return [
        backend.segment(
            tile.rgb,
            mpp=tile.mpp,
            level0_xy=tile.level0_xy,
            level0_per_px=tile.level0_per_px,
            tissue_mask=tile.tissue_mask,
        )
        for tile in tiles
    ]


def check_geometry(mpp: float, level0_per_px: float) -> None:
    """Raise ``DataError`` unless both the µm/px and level-0 pixels per pixel are positive."""
    if not (np.isfinite(mpp) and mpp > 0):
        raise DataError(f"tile µm/px must be a positive number; got mpp={mpp}")
    if not (np.isfinite(level0_per_px) and level0_per_px > 0):
        raise DataError(f"level0_per_px must be a positive number; got {level0_per_px}")


def resample_tile(
    tile_rgb: np.ndarray,
    tissue_mask: np.ndarray | None,
    *,
    mpp: float,
    level0_per_px: float,
    analysis_mpp: float | None,
) -> tuple[np.ndarray, np.ndarray | None, float, float]:
    """The tile (and tissue mask) at ``analysis_mpp``: ``(rgb, mask, mpp, level0_per_px)``.

    The tile is returned unchanged when ``analysis_mpp`` is None or within
    ``RESAMPLE_TOLERANCE`` of ``mpp``. Otherwise RGB is resized with linear interpolation
    (anti-aliased when shrinking) and the mask with nearest neighbour; the returned µm/px
    is the one actually achieved after rounding to whole pixels (from the height).
    """
    rgb = check_rgb(tile_rgb)
    check_geometry(mpp, level0_per_px)
    mask = None if tissue_mask is None else check_mask(tissue_mask, rgb.shape[:2])
    if analysis_mpp is None or abs(mpp / analysis_mpp - 1.0) <= RESAMPLE_TOLERANCE:
        return rgb, mask, float(mpp), float(level0_per_px)
    scale = mpp / analysis_mpp
    height, width = rgb.shape[:2]
    out_hw = (max(1, round(height * scale)), max(1, round(width * scale)))
    resized = resize(rgb, out_hw, order=1, anti_aliasing=scale < 1, preserve_range=True)
    rgb_out = np.clip(np.rint(resized), 0, 255).astype(np.uint8)
    mask_out = None if mask is None else resize_nearest(mask, out_hw)
    ratio = height / out_hw[0]
    return rgb_out, mask_out, float(mpp) * ratio, float(level0_per_px) * ratio


def resize_nearest(image: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """(H, W, ...) image resized to ``out_hw`` by nearest neighbour on pixel centres."""
    height, width = image.shape[:2]
    rows = np.minimum((np.arange(out_hw[0]) + 0.5) * height / out_hw[0], height - 1)
    cols = np.minimum((np.arange(out_hw[1]) + 0.5) * width / out_hw[1], width - 1)
    return image[rows.astype(np.intp)[:, None], cols.astype(np.intp)[None, :]]


def check_mask(mask: np.ndarray, shape: tuple[int, ...], what: str = "tissue mask") -> np.ndarray:
    """``mask`` as bool; ``DataError`` unless its shape is ``shape``."""
    mask = np.asarray(mask)
    if mask.shape != tuple(shape):
        raise DataError(f"{what} has shape {mask.shape} but the tile is {tuple(shape)}")
    return mask.astype(bool, copy=False)


_BACKENDS: dict[str, str | Callable[..., CellBackend]] = {
    "classical": "napari_imilia.interpret.cells.classical:ClassicalBackend",
    "cellvit": "napari_imilia.interpret.cells.cellvit:CellViTBackend",
    "histoplus-json": "napari_imilia.interpret.cells.histoplus_json:HistoPlusJsonBackend",
}


def _key(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def list_cell_backends() -> list[str]:
    """Names accepted by ``create_cell_backend``, sorted."""
    return sorted(_BACKENDS)


def register_cell_backend(name: str, target: str | Callable[..., CellBackend]) -> None:
    """Add a backend: ``target`` is a factory or a ``"module:attribute"`` import path."""
    _BACKENDS[_key(name)] = target


def create_cell_backend(name: str, **options: Any) -> CellBackend:
    """A cell backend by name with its options.

    - ``classical``: ``ClassicalBackend(analysis_mpp=0.5, rules=ClassicalRules(), ...)``;
    - ``cellvit``: ``CellViTBackend(checkpoint, device="auto", batch_size=8)``;
    - ``histoplus-json``: ``HistoPlusJsonBackend(path, slide=... or level0_dimensions=...,
      level0_mpp=...)``.

    Modules are imported only when their backend is created (``cellvit`` needs torch).
    """
    key = _key(name)
    if key not in _BACKENDS:
        raise ImiliaError(
            f"unknown cell backend {name!r}; choose one of {', '.join(list_cell_backends())}"
        )
    target = _BACKENDS[key]
    if isinstance(target, str):
        module_name, _, attribute = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            raise ImiliaError(
                f"cell backend {key!r} is not available: {error}; install its dependencies"
            ) from error
        factory = getattr(module, attribute)
    else:
        factory = target
    try:
        inspect.signature(factory).bind(**options)
    except TypeError as error:
        message = f"cell backend {key!r}: bad options {sorted(options)}: {error}"
        raise ImiliaError(message) from error
    except ValueError:  # no introspectable signature: let the call itself check
        pass
    return factory(**options)
