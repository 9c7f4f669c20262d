"""Outer contours of pixel sets as OpenCV's ``findContours`` traces them.

HistoPLUS removes duplicate cells by intersecting their contours: OpenCV's outer border
(Suzuki & Abe's border following, 8-connected, through the centres of the boundary pixels,
``CHAIN_APPROX_SIMPLE`` keeping only the ends of straight runs). :func:`outer_contour`
follows the same border, so the polygons, their areas and their intersections are the same.
"""

from __future__ import annotations

import numpy as np

# The 8 neighbours in counter-clockwise order on screen (y down): E, NE, N, NW, W, SW, S, SE.
_STEPS = ((0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1), (1, 0), (1, 1))


def _direction(d_row: int, d_col: int) -> int:
    return _STEPS.index((d_row, d_col))


def outer_contour(mask: np.ndarray) -> np.ndarray:
    """(K, 2) int (x, y) pixel indices of the outer border of the first foreground part met
    in raster order of ``mask`` (H, W), starting at its top-left pixel; straight runs keep
    their two ends only. Empty (0, 2) for an empty mask; one point for a single pixel."""
    mask = np.asarray(mask, dtype=bool)
    found = np.flatnonzero(mask)
    if found.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    padded = np.pad(mask, 1)
    start = divmod(int(found[0]), mask.shape[1])
    start = (start[0] + 1, start[1] + 1)

    def inside(point: tuple[int, int]) -> bool:
        return bool(padded[point])

    # Clockwise from the west neighbour (background by raster order) for the first step.
    west = _direction(0, -1)
    first = None
    for k in range(8):
        d = (west - k) % 8
        candidate = (start[0] + _STEPS[d][0], start[1] + _STEPS[d][1])
        if inside(candidate):
            first = candidate
            break
    if first is None:
        return np.array([[start[1] - 1, start[0] - 1]], dtype=np.int64)
    points = [start]
    previous, current = first, start
    while True:
        back = _direction(previous[0] - current[0], previous[1] - current[1])
        for k in range(1, 9):
            d = (back + k) % 8
            candidate = (current[0] + _STEPS[d][0], current[1] + _STEPS[d][1])
            if inside(candidate):
                break
        if candidate == start and current == first:
            break
        previous, current = current, candidate
        points.append(current)
    ring = np.array(points, dtype=np.int64)
    return _simplify(ring[:, ::-1] - 1)


def _simplify(ring: np.ndarray) -> np.ndarray:
    """``ring`` (closed, (x, y)) without the points inside straight runs (the start kept)."""
    if len(ring) < 3:
        return ring
    before = ring - np.roll(ring, 1, axis=0)
    after = np.roll(ring, -1, axis=0) - ring
    keep = np.any(before != after, axis=1)
    keep[0] = True
    return ring[keep]
