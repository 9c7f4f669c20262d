"""Export of cells in HistoPLUS's JSON format (see ``histoplus_json`` for the format and its
coordinate space), so that cells from any backend open in tools that read HistoPLUS output."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi
from skimage.measure import find_contours

from napari_imilia.errors import DataError
from napari_imilia.files import write_text_atomic
from napari_imilia.interpret.cells.histoplus_json import deepzoom_downsample, deepzoom_level_count
from napari_imilia.interpret.cells.measure import PIXEL_CENTRE, index_to_level0
from napari_imilia.interpret.cells.types import CELL_CLASSES, TileCells


def write_histoplus_json(
    path: str | os.PathLike[str],
    tiles: Sequence[TileCells],
    *,
    level0_dimensions: tuple[int, int],
    deepzoom_level: int | None = None,
    tile_size: int = 224,
    model_name: str | None = None,
    inference_mpp: float | None = None,
) -> Path:
    """Write cells in HistoPLUS's JSON format (atomically); returns the path.

    Cells are re-binned, as HistoPLUS does, into ``tile_size`` tiles of DeepZoom
    ``deepzoom_level`` by centroid (default: the level whose downsample equals the first
    tile's ``level0_per_px``, which must then be a power of two). Polygons are the centres of
    each label's boundary pixels (OpenCV's convention), so reading the file back at the same
    resolution rebuilds the labels; cell types are ``CELL_CLASSES`` names; NaN confidence is
    written as null. Only tiles holding cells are written.
    """
    count = deepzoom_level_count(level0_dimensions)
    if deepzoom_level is None:
        if not tiles:
            raise DataError("write_histoplus_json: no tiles and no deepzoom_level given")
        exponent = math.log2(tiles[0].level0_per_px)
        if abs(exponent - round(exponent)) > 1e-6:
            raise DataError(
                f"cells at {tiles[0].level0_per_px} level-0 px per pixel do not sit on a "
                "DeepZoom level; pass deepzoom_level="
            )
        deepzoom_level = count - 1 - round(exponent)
    d = deepzoom_downsample(deepzoom_level, level0_dimensions)
    binned: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for cells in tiles:
        rings = _boundary_rings(cells)
        for i, row in enumerate(cells.table.itertuples(index=False)):
            # continuous level-0 -> pixel-index units of the DeepZoom level (OpenCV's)
            centroid = np.array([row.centroid_x, row.centroid_y]) / d - PIXEL_CENTRE
            key = (int(centroid[0] // tile_size), int(centroid[1] // tile_size))
            offset = np.array(key, dtype=np.float64) * tile_size
            members = binned.setdefault(key, [])
            probability = float(row.probability)
            members.append(
                {
                    "cell_id": float(len(members)),
                    "cell_type": CELL_CLASSES[int(row.class_id)],
                    "confidence": probability if math.isfinite(probability) else None,
                    "coordinates": (rings[i] / d - PIXEL_CENTRE - offset).tolist(),
                    "centroid": (centroid - offset).tolist(),
                }
            )
    first = tiles[0] if tiles else None
    document = {
        "model_name": model_name or f"napari-imilia:{first.backend if first else 'none'}",
        "inference_mpp": float(inference_mpp or (first.mpp if first else 0.0)),
        "cell_masks": [
            {
                "x": float(x),
                "y": float(y),
                "level": float(deepzoom_level),
                "width": float(tile_size),
                "height": float(tile_size),
                "masks": binned[(x, y)],
            }
            for x, y in sorted(binned)
        ],
    }
    return write_text_atomic(path, json.dumps(document, separators=(",", ":")))


def _boundary_rings(cells: TileCells) -> list[np.ndarray]:
    """Per row: level-0 (x, y) centres of the label's boundary pixels, in contour order
    (the row's own contour when its label is absent or under 3 pixels across)."""
    x0, y0 = cells.level0_xy
    s = cells.level0_per_px
    boxes = ndi.find_objects(cells.labels)
    rings = []
    for i, label in enumerate(cells.table["label"].to_numpy()):
        box = boxes[label - 1] if 0 < label <= len(boxes) else None
        ring = None
        if box is not None:
            mask = np.pad(cells.labels[box] == label, 1)
            ring = _pull_inside(max(find_contours(mask.astype(np.float32), 0.5), key=len), mask)
        if ring is None or len(np.unique(ring, axis=0)) < 3:
            rings.append(np.asarray(cells.contours[i], dtype=np.float64))
            continue
        rows, cols = ring[:, 0] + box[0].start - 1, ring[:, 1] + box[1].start - 1
        rings.append(np.column_stack([index_to_level0(cols, x0, s), index_to_level0(rows, y0, s)]))
    return rings


def _pull_inside(ring: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Marching-squares points (half-way between an inside and an outside pixel centre)
    moved onto the inside pixel centre; consecutive repeats removed."""
    half_row = np.abs(ring[:, 0] - np.round(ring[:, 0])) > 0.25
    step = np.where(half_row[:, None], [[0.5, 0.0]], [[0.0, 0.5]])
    low, high = ring - step, ring + step
    low_inside = mask[np.rint(low[:, 0]).astype(int), np.rint(low[:, 1]).astype(int)]
    pulled = np.rint(np.where(low_inside[:, None], low, high))
    keep = np.ones(len(pulled), dtype=bool)
    keep[1:] = np.any(pulled[1:] != pulled[:-1], axis=1)
    return pulled[keep]
