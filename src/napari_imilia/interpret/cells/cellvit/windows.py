"""Sliding windows over tiles of any size, and the stitching of their output maps.

A tile is covered by ``window_px`` square windows overlapping by at least ``overlap_px``
(evenly spread, the last one flush with the tile's end; a tile smaller than a window is
padded by mirroring). Each window owns a *core*: the tile pixels nearer its centre than any
neighbour's, cut in the middle of each overlap, so cores tile the tile exactly and every core
pixel has at least ``overlap_px / 2`` pixels of context on every side that is not the tile's
own edge.

Stitching is done on the maps, before instances exist: each tile pixel's nuclei probability,
HV distances and type probabilities come from the window whose core holds it. Instances are
then extracted once from the stitched maps (``post.hover_instances``), so a nucleus lying
across window borders is one watershed basin of one map: never cut in two, never counted
twice. HoVer-Net's whole-slide inference assembles its output maps the same way.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

#: Window predictor: (B, w, w, 3) uint8 -> nuclei prob (B, w, w), HV (B, 2, w, w) and type
#: probabilities (B, C, w, w), all float32.
Predictor = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Window:
    """One window: its top-left in tile pixels and the [start, stop) rows/cols of its core."""

    top: int
    left: int
    core_rows: tuple[int, int]
    core_cols: tuple[int, int]


@dataclass
class TileMaps:
    """Stitched model outputs of one tile: nuclei probability (H, W), HV (2, H, W), type
    probabilities (C, H, W); float32."""

    nuclei_prob: np.ndarray
    hv: np.ndarray
    type_prob: np.ndarray

    @classmethod
    def empty(cls, height: int, width: int, num_classes: int) -> TileMaps:
        return cls(
            nuclei_prob=np.zeros((height, width), np.float32),
            hv=np.zeros((2, height, width), np.float32),
            type_prob=np.zeros((num_classes, height, width), np.float32),
        )


def axis_windows(length: int, window_px: int, overlap_px: int) -> list[tuple[int, int, int]]:
    """Along one axis: (start, core_start, core_stop) per window, in pixels."""
    if length <= window_px:
        return [(0, 0, length)]
    stride = window_px - overlap_px
    count = math.ceil((length - window_px) / stride) + 1
    starts = [round(i * (length - window_px) / (count - 1)) for i in range(count)]
    cuts = [(starts[i + 1] + starts[i] + window_px) // 2 for i in range(count - 1)]
    bounds = [0, *cuts, length]
    return [(start, bounds[i], bounds[i + 1]) for i, start in enumerate(starts)]


def plan_windows(height: int, width: int, window_px: int, overlap_px: int) -> list[Window]:
    """The windows of an (height, width) tile, row by row; their cores partition the tile."""
    if not 0 <= overlap_px < window_px:
        raise ValueError(f"overlap_px must be in [0, {window_px}); got {overlap_px}")
    rows = axis_windows(height, window_px, overlap_px)
    cols = axis_windows(width, window_px, overlap_px)
    return [
        Window(top=r[0], left=c[0], core_rows=(r[1], r[2]), core_cols=(c[1], c[2]))
        for r in rows
        for c in cols
    ]


def crop_window(tile: np.ndarray, window: Window, window_px: int) -> np.ndarray:
    """The (window_px, window_px, ...) pixels of ``window``, mirrored past the tile's end."""
    crop = tile[window.top : window.top + window_px, window.left : window.left + window_px]
    pad_rows, pad_cols = window_px - crop.shape[0], window_px - crop.shape[1]
    if pad_rows or pad_cols:
        pads = [(0, pad_rows), (0, pad_cols)] + [(0, 0)] * (crop.ndim - 2)
        crop = np.pad(crop, pads, mode="symmetric")
    return crop


def _paste(maps: TileMaps, window: Window, nuclei, hv, types) -> None:
    (r0, r1), (c0, c1) = window.core_rows, window.core_cols
    wr = slice(r0 - window.top, r1 - window.top)
    wc = slice(c0 - window.left, c1 - window.left)
    maps.nuclei_prob[r0:r1, c0:c1] = nuclei[wr, wc]
    maps.hv[:, r0:r1, c0:c1] = hv[:, wr, wc]
    maps.type_prob[:, r0:r1, c0:c1] = types[:, wr, wc]


def predict_tile_maps(
    tiles: Sequence[np.ndarray],
    predictor: Predictor,
    *,
    window_px: int,
    overlap_px: int,
    batch_size: int,
    num_classes: int,
) -> Iterator[tuple[int, TileMaps]]:
    """Run ``predictor`` over the windows of every (H, W, 3) tile, ``batch_size`` windows per
    call (batches span tiles), and yield (tile index, stitched maps) as each tile completes."""
    jobs = [
        (index, window)
        for index, tile in enumerate(tiles)
        for window in plan_windows(tile.shape[0], tile.shape[1], window_px, overlap_px)
    ]
    owners = np.array([index for index, _ in jobs], dtype=np.int64)
    remaining = np.bincount(owners, minlength=len(tiles))
    maps: dict[int, TileMaps] = {}
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start : start + batch_size]
        crops = np.stack([crop_window(tiles[i], w, window_px) for i, w in chunk])
        nuclei, hv, types = predictor(crops)
        if types.shape[1] != num_classes:
            raise ValueError(f"predictor gave {types.shape[1]} classes, not {num_classes}")
        for k, (index, window) in enumerate(chunk):
            if index not in maps:
                height, width = tiles[index].shape[:2]
                maps[index] = TileMaps.empty(height, width, num_classes)
            _paste(maps[index], window, nuclei[k], hv[k], types[k])
            remaining[index] -= 1
            if remaining[index] == 0:
                yield index, maps.pop(index)
