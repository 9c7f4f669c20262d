"""Geometry of synthetic tissue: tissue pieces, epithelial rings, and the cell table.

All coordinates are pixels of the rendered image (x = column, y = row; pixel centres at
integers), all radii pixels unless a name says µm. Irregular outlines are polar functions
``r(θ) = r0 * (1 + Σ_k a_k cos(k θ + φ_k))`` with ``k = 2, 3, ...``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from functools import cached_property

import numpy as np

from napari_imilia.demo.synthetic import looks

Box = tuple[float, float, float, float]
"""(x, y, width, height) in pixels."""
RingWindow = tuple[int, tuple[slice, slice], np.ndarray, np.ndarray, np.ndarray]
"""(ring index, (row slice, column slice) of a window, ρ, inner radius, outer radius)."""


def modulation(theta: np.ndarray, amp: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """``1 + Σ_k amp_k cos(k θ + phase_k)``; ``amp``/``phase`` broadcast as (..., K)."""
    k = np.arange(2, amp.shape[-1] + 2, dtype=np.float64)
    return 1.0 + np.sum(amp * np.cos(k * theta[..., None] + phase), axis=-1)


_LUT_BINS = 4096


def modulation_table(amp: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """:func:`modulation` at ``_LUT_BINS`` angles over [-π, π) (``amp``, ``phase``: (..., K))."""
    bins = (np.arange(_LUT_BINS) + 0.5) * (2 * np.pi / _LUT_BINS) - np.pi
    return modulation(bins, amp[..., None, :], phase[..., None, :]).astype(np.float32)


def modulation_lookup(theta: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Values of a :func:`modulation_table` at angles ``theta`` (rad): fast for rasters."""
    index = ((theta + np.pi) * (_LUT_BINS / (2 * np.pi))).astype(np.int64)
    return table[np.clip(index, 0, _LUT_BINS - 1)].astype(theta.dtype, copy=False)


@dataclass(frozen=True)
class BlobTissue:
    """Tissue pieces: irregular ellipses centred at (x, y) with half-axes (rx, ry) px."""

    x: np.ndarray
    y: np.ndarray
    rx: np.ndarray
    ry: np.ndarray
    angle: np.ndarray
    amp: np.ndarray
    phase: np.ndarray

    def _inside(self, index: int, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """Points (broadcast ``xs``, ``ys`` px) inside piece ``index``."""
        dtype = np.result_type(xs, ys)
        cos, sin = np.cos(self.angle[index]), np.sin(self.angle[index])
        dx, dy = xs - dtype.type(self.x[index]), ys - dtype.type(self.y[index])
        u = dx * dtype.type(cos / self.rx[index]) + dy * dtype.type(sin / self.rx[index])
        v = dy * dtype.type(cos / self.ry[index]) - dx * dtype.type(sin / self.ry[index])
        rho = np.hypot(u, v)
        slack = np.abs(self.amp[index]).sum()
        inside = rho <= 1 - slack
        edge = (rho > 1 - slack) & (rho <= 1 + slack)
        theta = np.arctan2(v[edge], u[edge])
        table = modulation_table(self.amp[index], self.phase[index])
        inside[edge] = rho[edge] <= modulation_lookup(theta, table)
        return inside

    def contains(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """Whether points (px) lie in any piece."""
        inside = np.zeros(np.shape(xs), dtype=bool)
        for index in range(len(self.x)):
            inside |= self._inside(index, xs, ys)
        return inside

    def mask(self, x0: int, y0: int, width: int, height: int) -> np.ndarray:
        """(height, width) bool tissue mask of the window whose top-left pixel is (x0, y0)."""
        mask = np.zeros((height, width), dtype=bool)
        for index in range(len(self.x)):
            reach = max(self.rx[index], self.ry[index]) * (1 + np.abs(self.amp[index]).sum())
            c0 = max(int(self.x[index] - reach) - x0, 0)
            c1 = min(int(self.x[index] + reach) + 2 - x0, width)
            r0 = max(int(self.y[index] - reach) - y0, 0)
            r1 = min(int(self.y[index] + reach) + 2 - y0, height)
            if c0 >= c1 or r0 >= r1:
                continue
            xs = np.arange(x0 + c0, x0 + c1, dtype=np.float32)[None, :]
            ys = np.arange(y0 + r0, y0 + r1, dtype=np.float32)[:, None]
            mask[r0:r1, c0:c1] |= self._inside(index, xs, ys)
        return mask


@dataclass(frozen=True)
class ArrayTissue:
    """Tissue given as a bool image; points outside it take the nearest edge pixel's value."""

    image: np.ndarray

    def contains(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        rows = np.clip(np.rint(ys).astype(np.int64), 0, self.image.shape[0] - 1)
        cols = np.clip(np.rint(xs).astype(np.int64), 0, self.image.shape[1] - 1)
        return self.image[rows, cols]

    def mask(self, x0: int, y0: int, width: int, height: int) -> np.ndarray:
        rows = np.clip(np.arange(y0, y0 + height), 0, self.image.shape[0] - 1)
        cols = np.clip(np.arange(x0, x0 + width), 0, self.image.shape[1] - 1)
        return self.image[np.ix_(rows, cols)]


@dataclass(frozen=True)
class Rings:
    """Epithelial rings: epithelium lies between ``inner * m(θ)`` and ``outer * m(θ)``.

    A crypt (``inverted`` False) has its lumen inside ``inner`` and its basal side at
    ``outer``; a surface ring (``inverted`` True) has tissue inside, its basal side at
    ``inner`` and luminal space (no tissue) outside ``outer``.
    """

    x: np.ndarray
    y: np.ndarray
    outer: np.ndarray
    inner: np.ndarray
    amp: np.ndarray
    phase: np.ndarray
    inverted: np.ndarray
    inflamed: np.ndarray

    def __len__(self) -> int:
        return len(self.x)

    @cached_property
    def tables(self) -> np.ndarray:
        """(N, bins) tabulated outline modulation of every ring."""
        return modulation_table(self.amp, self.phase)

    def polar(self, index: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, ...]:
        """(ρ, inner radius, outer radius) of points relative to rings ``index`` (broadcast)."""
        if np.ndim(index) == 0:  # one ring, many pixels: tabulated outline, input precision
            kind = np.result_type(xs, ys).type
            dx, dy = xs - kind(self.x[index]), ys - kind(self.y[index])
            m = modulation_lookup(np.arctan2(dy, dx), self.tables[index])
            inner, outer = kind(self.inner[index]), kind(self.outer[index])
            return np.hypot(dx, dy), inner * m, outer * m
        dx, dy = xs - self.x[index], ys - self.y[index]
        m = modulation(np.arctan2(dy, dx), self.amp[index], self.phase[index])
        return np.hypot(dx, dy), self.inner[index] * m, self.outer[index] * m

    def windows(self, x0: int, y0: int, width: int, height: int) -> Iterator[RingWindow]:
        """Each ring that reaches the ``width`` x ``height`` window whose top-left pixel is
        (x0, y0): its index, its bounding box as slices of the window, and (ρ, inner radius,
        outer radius) of the pixels in that box (float32 pixel grid). A surface ring's box is
        the whole window (its luminal space, outside ``outer``, is unbounded)."""
        reach = self.outer * (1 + np.abs(self.amp).sum(axis=1)) + 2
        reach[self.inverted] = 1e12
        c0 = np.clip(np.floor(self.x - reach) - x0, 0, width).astype(np.int64)
        c1 = np.clip(np.ceil(self.x + reach) + 1 - x0, 0, width).astype(np.int64)
        r0 = np.clip(np.floor(self.y - reach) - y0, 0, height).astype(np.int64)
        r1 = np.clip(np.ceil(self.y + reach) + 1 - y0, 0, height).astype(np.int64)
        for index in np.flatnonzero((c0 < c1) & (r0 < r1)):
            xs = np.arange(x0 + c0[index], x0 + c1[index], dtype=np.float32)[None, :]
            ys = np.arange(y0 + r0[index], y0 + r1[index], dtype=np.float32)[:, None]
            rho, inner, outer = self.polar(index, xs, ys)
            window = (slice(r0[index], r1[index]), slice(c0[index], c1[index]))
            yield index, window, rho, inner, outer

    @staticmethod
    def concat(parts: list[Rings]) -> Rings:
        names = [f.name for f in fields(Rings)]
        if not parts:
            return Rings(*([np.zeros(0)] * 4 + [np.zeros((0, 3))] * 2 + [np.zeros(0, bool)] * 2))
        return Rings(*(np.concatenate([getattr(part, name) for part in parts]) for name in names))


@dataclass
class CellTable:
    """Cells as arrays: nucleus centre (px), look index, nucleus size (µm), angle, lobes."""

    x: np.ndarray = field(default_factory=lambda: np.zeros(0))
    y: np.ndarray = field(default_factory=lambda: np.zeros(0))
    look: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    major_um: np.ndarray = field(default_factory=lambda: np.zeros(0))
    minor_um: np.ndarray = field(default_factory=lambda: np.zeros(0))
    angle: np.ndarray = field(default_factory=lambda: np.zeros(0))
    lobes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.x)

    def take(self, keep: np.ndarray) -> CellTable:
        return CellTable(*(getattr(self, name)[keep] for name in CELL_TABLE_FIELDS))

    @staticmethod
    def concat(parts: list[CellTable]) -> CellTable:
        return CellTable(
            *(np.concatenate([getattr(p, name) for p in parts]) for name in CELL_TABLE_FIELDS)
        )


CELL_TABLE_FIELDS: tuple[str, ...] = ("x", "y", "look", "major_um", "minor_um", "angle", "lobes")


@dataclass(frozen=True)
class Ellipses:
    """Painted, unlabelled ellipses (goblet mucin, abscess debris): centre/half-axes px, HER."""

    x: np.ndarray
    y: np.ndarray
    semi_a: np.ndarray
    semi_b: np.ndarray
    angle: np.ndarray
    her: np.ndarray

    @staticmethod
    def concat(parts: list[Ellipses]) -> Ellipses:
        if not parts:
            return Ellipses(*([np.zeros(0)] * 5), np.zeros((0, 3)))
        names = [f.name for f in fields(Ellipses)]
        return Ellipses(
            *(np.concatenate([getattr(part, name) for part in parts]) for name in names)
        )


def in_boxes(xs: np.ndarray, ys: np.ndarray, boxes: list[Box]) -> np.ndarray:
    """Index of the first box holding each point, or -1."""
    which = np.full(np.shape(xs), -1, dtype=np.int64)
    for index in reversed(range(len(boxes))):
        bx, by, bw, bh = boxes[index]
        inside = (xs >= bx) & (xs < bx + bw) & (ys >= by) & (ys < by + bh)
        which[inside] = index
    return which


def greedy_non_overlapping(
    xs: np.ndarray, ys: np.ndarray, radius: np.ndarray, n_fixed: int = 0
) -> np.ndarray:
    """Keep mask of discs where each disc is dropped if it overlaps an earlier kept one.

    The first ``n_fixed`` discs are always kept (they do not conflict among themselves). The
    result equals a sequential greedy pass in index order, computed in vectorised rounds.
    """
    from scipy.spatial import cKDTree

    n = len(xs)
    keep = np.ones(n, dtype=bool)
    if n < 2:
        return keep
    points = np.column_stack([xs, ys])
    pairs = cKDTree(points).query_pairs(2 * float(radius.max()), output_type="ndarray")
    if len(pairs) == 0:
        return keep
    lo, hi = pairs.min(axis=1), pairs.max(axis=1)
    gap = np.hypot(xs[lo] - xs[hi], ys[lo] - ys[hi])
    conflict = (gap < radius[lo] + radius[hi]) & (hi >= n_fixed)
    lo, hi = lo[conflict], hi[conflict]
    state = np.zeros(n, dtype=np.int8)  # 0 undecided, 1 kept, -1 dropped
    state[:n_fixed] = 1
    while (state == 0).any():
        blocked = np.zeros(n, dtype=bool)
        blocked[hi[state[lo] == 1]] = True
        state[(state == 0) & blocked] = -1
        pending = np.zeros(n, dtype=bool)
        pending[hi[state[lo] == 0]] = True
        state[(state == 0) & ~pending] = 1
    return state == 1


def sample_shapes(
    rng: np.random.Generator, look: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Nucleus (major µm, minor µm, angle rad, lobes) for cells of the given look indices."""
    n = len(look)
    major, minor, lobes = np.zeros(n), np.zeros(n), np.ones(n, dtype=np.int64)
    noise = rng.standard_normal((n, 2))
    lobe_draw = rng.random(n)
    for index, name in enumerate(looks.LOOK_NAMES):
        sel = look == index
        if not sel.any():
            continue
        spec = looks.CELL_LOOKS[name]
        mean_major, mean_minor = spec.nucleus_um
        major[sel] = np.clip(
            mean_major + spec.nucleus_sd_um * noise[sel, 0], 0.8 * mean_major, 1.2 * mean_major
        )
        ratio = (mean_minor / mean_major) * np.clip(1 + 0.05 * noise[sel, 1], 0.9, 1.1)
        minor[sel] = np.minimum(major[sel] * ratio, major[sel])
        low, high = spec.lobes
        lobes[sel] = low + np.floor(lobe_draw[sel] * (high - low + 1)).astype(np.int64)
    return major, minor, rng.uniform(0, np.pi, n), lobes


def cell_extent(cells: CellTable, mpp: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cell centres (px) and radii (px) of discs holding each whole cell (with cytoplasm)."""
    cx, cy = cells.x.copy(), cells.y.copy()
    radius = cells.major_um / 2 / mpp
    for index, name in enumerate(looks.LOOK_NAMES):
        spec = looks.CELL_LOOKS[name]
        sel = cells.look == index
        if spec.cell_um is None or not sel.any():
            continue
        scale = cells.major_um[sel] / spec.nucleus_um[0]
        shift = spec.nucleus_offset_um * scale / mpp
        cx[sel] -= shift * np.cos(cells.angle[sel])
        cy[sel] -= shift * np.sin(cells.angle[sel])
        radius[sel] = spec.cell_um[0] * scale / 2 / mpp
    return cx, cy, radius
