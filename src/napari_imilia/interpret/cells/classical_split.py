"""Watershed splitting of touching nuclei and grouping of lobes (the ``classical`` backend's
steps 4 and 5; lengths in µm, areas in µm²)."""

from __future__ import annotations

from typing import Protocol

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import watershed


class LobeParams(Protocol):
    """The ``SegmentationParams`` fields ``group_lobes`` reads."""

    lobe_max_area_um2: float
    lobe_gap_um: float
    lobed_max_area_um2: float
    min_area_um2: float
    max_area_um2: float


def disk(radius_px: float) -> np.ndarray:
    """(2r + 1, 2r + 1) bool disk footprint of radius ``radius_px`` rounded to whole pixels."""
    r = max(0, round(radius_px))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return xx * xx + yy * yy <= r * r + r  # r + r: rounder small disks


def split_nuclei(
    foreground: np.ndarray, mpp: float, split_depth_um: float, distance_smooth_um: float
) -> np.ndarray:
    """Watershed of the inverted, smoothed distance map (µm), one basin per h-maximum.

    Equivalent to markers from ``skimage.morphology.h_maxima(distance, split_depth_um)``
    but ~10x faster: watershed from every local maximum, then adjacent basins merge, highest
    saddle first, while the saddle is less than ``split_depth_um`` below the lower peak.
    """
    if not foreground.any():
        return np.zeros(foreground.shape, dtype=np.int32)
    distance = ndi.distance_transform_edt(foreground) * mpp
    smooth = ndi.gaussian_filter(distance, distance_smooth_um / mpp) * foreground
    maxima = (smooth >= ndi.maximum_filter(smooth, size=3)) & foreground
    markers, n = ndi.label(maxima, structure=np.ones((3, 3)))
    basins = watershed(-smooth, markers, mask=foreground)
    peak = np.zeros(n + 1)
    np.maximum.at(peak, basins.ravel(), smooth.ravel())
    pairs, saddles = basin_saddles(basins, smooth)
    parent = np.arange(n + 1)

    def root(k: int) -> int:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for index in np.argsort(-saddles, kind="stable"):
        a, b = root(pairs[index, 0]), root(pairs[index, 1])
        if a != b and saddles[index] > min(peak[a], peak[b]) - split_depth_um:
            low, high = (a, b) if peak[a] < peak[b] else (b, a)
            parent[low] = high
    roots = np.array([root(k) for k in range(n + 1)])
    return roots[basins].astype(np.int32)


def basin_saddles(basins: np.ndarray, height: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Adjacent basin pairs (4-neighbours) and the highest pass between each pair."""
    pairs, passes = [], []
    for a, b, ha, hb in (
        (basins[:, :-1], basins[:, 1:], height[:, :-1], height[:, 1:]),
        (basins[:-1, :], basins[1:, :], height[:-1, :], height[1:, :]),
    ):
        touch = (a != b) & (a > 0) & (b > 0)
        lo, hi = np.minimum(a[touch], b[touch]), np.maximum(a[touch], b[touch])
        pairs.append(np.column_stack([lo, hi]))
        passes.append(np.minimum(ha[touch], hb[touch]))
    pair = np.concatenate(pairs)
    value = np.concatenate(passes)
    if len(pair) == 0:
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0)
    unique, inverse = np.unique(pair, axis=0, return_inverse=True)
    saddle = np.full(len(unique), -np.inf)
    np.maximum.at(saddle, inverse.ravel(), value)
    return unique, saddle


def group_lobes(labels: np.ndarray, mpp: float, p: LobeParams) -> tuple[np.ndarray, dict[int, int]]:
    """Merge clusters of small fragments into lobed nuclei, drop objects out of size range,
    relabel 1..N; returns labels and the lobe count of each final label."""
    n = int(labels.max())
    if n == 0:
        return labels, {}
    area_um2 = np.bincount(labels.ravel(), minlength=n + 1) * mpp * mpp
    small = area_um2 < p.lobe_max_area_um2
    small[0] = False
    small_mask = small[labels]
    gap_px = p.lobe_gap_um / mpp
    grown = ndi.binary_dilation(small_mask, disk(gap_px / 2)) if small_mask.any() else small_mask
    groups, _ = ndi.label(grown)
    group_of = np.zeros(n + 1, dtype=np.int64)
    group_of[labels[small_mask]] = groups[small_mask]
    target = np.arange(n + 1)
    lobes = np.ones(n + 1, dtype=np.int64)
    bridge = np.zeros(labels.shape, dtype=np.int32)
    closing = disk(gap_px / 2 + 1)
    pad = closing.shape[0]
    boxes = ndi.find_objects(groups)
    for group in np.unique(group_of[group_of > 0]):
        members = np.flatnonzero(group_of == group)
        if len(members) < 2 or area_um2[members].sum() > p.lobed_max_area_um2:
            continue
        target[members] = members[0]
        lobes[members[0]] = len(members)
        rs, cs = boxes[group - 1]
        crop = (
            slice(max(rs.start - pad, 0), rs.stop + pad),
            slice(max(cs.start - pad, 0), cs.stop + pad),
        )
        member_mask = np.isin(labels[crop], members)
        closed = ndi.binary_closing(member_mask, closing, border_value=0)
        bridge[crop][closed & (labels[crop] == 0)] = members[0]
    merged = target[labels]
    merged = np.where(bridge > 0, bridge, merged)
    final_area = np.bincount(merged.ravel(), minlength=n + 1) * mpp * mpp
    keep = (final_area >= p.min_area_um2) & (final_area <= p.max_area_um2)
    keep[0] = False
    keep &= target == np.arange(n + 1)
    lut = np.zeros(n + 1, dtype=np.int32)
    lut[keep] = np.arange(1, int(keep.sum()) + 1)
    lobe_counts = {int(lut[k]): int(lobes[k]) for k in np.flatnonzero(keep)}
    return lut[merged], lobe_counts
