"""Epithelium of the scene: crypt rings, a surface band, their nuclei, goblets, abscesses.

Nuclei of columnar cells sit at the basal side of each ring with their long axis radial,
spaced so that their inner tips never touch; inflamed crypts lose goblet cells and crypts,
gain intraepithelial neutrophils and sometimes a crypt abscess (neutrophils in the lumen).
"""

from __future__ import annotations

import math

import numpy as np

from napari_imilia.demo.synthetic import looks
from napari_imilia.demo.synthetic.shapes import (
    ArrayTissue,
    BlobTissue,
    Box,
    CellTable,
    Ellipses,
    Rings,
    greedy_non_overlapping,
    in_boxes,
    modulation,
    sample_shapes,
)

_EPI_BASAL_GAP_UM = 1.5
_EPI_TIP_UM = 12.5
_EPI_TIP_SLOT_UM = 5.0


def crypt_rings(
    rng: np.random.Generator,
    bounds: tuple[float, float, float, float],
    tissue: BlobTissue | ArrayTissue,
    inflamed_boxes: list[Box],
    mpp: float,
) -> Rings:
    """Crypts on a jittered hexagonal grid, fully inside tissue, not overlapping."""
    pitch, jitter = looks.CRYPT_PITCH_UM / mpp, looks.CRYPT_JITTER_UM / mpp
    x_min, y_min, x_max, y_max = bounds
    row_pitch = pitch * math.sqrt(3) / 2
    rows = np.arange(math.floor((y_min - pitch) / row_pitch), math.ceil(y_max / row_pitch) + 2)
    cols = np.arange(math.floor((x_min - pitch) / pitch), math.ceil(x_max / pitch) + 2)
    grid_r, grid_c = np.meshgrid(rows, cols, indexing="ij")
    offset = rng.uniform(0, pitch, 2)
    x = (grid_c + 0.5 * (grid_r % 2)).ravel() * pitch + offset[0]
    y = grid_r.ravel() * row_pitch + offset[1]
    x = x + rng.uniform(-jitter, jitter, x.size)
    y = y + rng.uniform(-jitter, jitter, y.size)
    n = x.size
    inflamed = in_boxes(x, y, inflamed_boxes) >= 0
    abscess = inflamed & (rng.random(n) < looks.CRYPT_ABSCESS_PROBABILITY)
    outer = rng.uniform(*looks.CRYPT_OUTER_RADIUS_UM, n)
    inner = rng.uniform(*looks.CRYPT_LUMEN_RADIUS_UM, n)
    outer[abscess] = rng.uniform(*looks.ABSCESS_OUTER_RADIUS_UM, abscess.sum())
    inner[abscess] = rng.uniform(*looks.ABSCESS_LUMEN_RADIUS_UM, abscess.sum())
    amp = rng.uniform(0.0, 0.07, (n, 3))
    amp[inflamed] = rng.uniform(0.03, 0.10, (inflamed.sum(), 3))
    phase = rng.uniform(0, 2 * np.pi, (n, 3))
    dropout = inflamed & (rng.random(n) < looks.CRYPT_DROPOUT_INFLAMED)
    reach = outer * (1 + amp.sum(axis=1)) / mpp
    theta = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    edge_r = (outer[:, None] * modulation(theta[None, :], amp[:, None], phase[:, None]) + 6) / mpp
    edge_x = x[:, None] + edge_r * np.cos(theta)
    edge_y = y[:, None] + edge_r * np.sin(theta)
    in_tissue = tissue.contains(edge_x, edge_y).all(axis=1) & tissue.contains(x, y)
    visible = (x + reach > x_min) & (x - reach < x_max) & (y + reach > y_min) & (y - reach < y_max)
    order = np.flatnonzero(in_tissue & visible & ~dropout)
    gap = 4.0 / mpp
    keep = order[greedy_non_overlapping(x[order], y[order], reach[order] + gap)]
    return Rings(
        x[keep],
        y[keep],
        outer[keep] / mpp,
        inner[keep] / mpp,
        amp[keep],
        phase[keep],
        np.zeros(keep.size, bool),
        inflamed[keep],
    )


def surface_ring(rng: np.random.Generator, width: int, height: int, mpp: float) -> Rings:
    """A gently curved surface epithelium along the top, as a huge inverted ring."""
    radius = 20.0 * max(width, height)
    top = height * rng.uniform(0.12, 0.22)
    return Rings(
        np.array([width / 2 + rng.uniform(-0.2, 0.2) * width]),
        np.array([top + radius]),
        np.array([radius]),
        np.array([radius - looks.SURFACE_EPITHELIUM_UM / mpp]),
        np.zeros((1, 3)),
        np.zeros((1, 3)),
        np.ones(1, bool),
        np.zeros(1, bool),
    )


def _slot_angles(rings: Rings, index: int, mpp: float, bounds: tuple[float, ...]) -> np.ndarray:
    """Angles of epithelial nuclei: equal arc spacing where nuclei tips are tightest."""
    slot = _EPI_TIP_SLOT_UM / mpp
    if rings.inverted[index]:
        cx, cy, radius = rings.x[index], rings.y[index], rings.inner[index]
        corners = np.arctan2(
            np.array([bounds[1], bounds[3]]) - cy, np.array([[bounds[0]], [bounds[2]]]) - cx
        )
        step = slot / (radius + _EPI_BASAL_GAP_UM / mpp)
        return np.arange(corners.min(), corners.max() + step, step)
    theta = np.linspace(0, 2 * np.pi, 361)
    m = modulation(theta, rings.amp[index], rings.phase[index])
    tip = np.maximum(rings.outer[index] * m - _EPI_TIP_UM / mpp, 1.0)
    arc = np.concatenate([[0.0], np.cumsum(0.5 * (tip[1:] + tip[:-1]) * np.diff(theta))])
    n = int(arc[-1] // slot)
    if n < 4:
        return np.zeros(0)
    return np.interp((np.arange(n) + 0.5) * arc[-1] / n, arc, theta)


def ring_cells(
    rng: np.random.Generator, rings: Rings, mpp: float, bounds: tuple[float, ...]
) -> tuple[CellTable, Ellipses]:
    """Epithelial nuclei along every ring, intraepithelial neutrophils, goblet cells."""
    epithelial = looks.LOOK_NAMES.index("Epithelial")
    neutrophil = looks.LOOK_NAMES.index("Neutrophils")
    tables, goblets = [], []
    for index in range(len(rings)):
        theta = _slot_angles(rings, index, mpp, bounds)
        if theta.size == 0:
            continue
        n = theta.size
        look = np.full(n, epithelial)
        if rings.inflamed[index] and not rings.inverted[index]:
            for slot in rng.choice(
                n, min(rng.poisson(looks.INTRAEPITHELIAL_NEUTROPHILS_MEAN), n // 5), replace=False
            ):
                look[(slot + np.arange(-1, 2)) % n] = -1
                look[slot] = neutrophil
        major, minor, _, lobes = sample_shapes(rng, np.maximum(look, 0))
        m = modulation(theta, rings.amp[index], rings.phase[index])
        inner, outer = rings.inner[index] * m, rings.outer[index] * m
        sign = -1.0 if rings.inverted[index] else 1.0
        basal = inner if rings.inverted[index] else outer
        depth = np.where(look == neutrophil, 6.5 / mpp, (_EPI_BASAL_GAP_UM + major / 2) / mpp)
        rho = basal - sign * depth
        tip = basal - sign * (depth + major / 2 / mpp)
        fits = look >= 0
        if not rings.inverted[index]:
            fits &= tip >= inner + 1.0 / mpp
        angle = np.where(look == neutrophil, rng.uniform(0, np.pi, n), theta)
        x, y = rings.x[index] + rho * np.cos(theta), rings.y[index] + rho * np.sin(theta)
        fits &= (x > bounds[0]) & (x < bounds[2]) & (y > bounds[1]) & (y < bounds[3])
        tables.append(CellTable(x, y, look, major, minor, angle, lobes).take(fits))
        if not rings.inverted[index]:
            goblets.append(_goblets(rng, rings, index, theta, look, mpp))
    cells = CellTable.concat(tables) if tables else CellTable()
    return cells, Ellipses.concat(goblets)


def _goblets(
    rng: np.random.Generator,
    rings: Rings,
    index: int,
    theta: np.ndarray,
    look: np.ndarray,
    mpp: float,
) -> Ellipses:
    """Pale mucin vacuoles between nuclei, on the luminal side of a crypt."""
    probability = looks.GOBLET_PROBABILITY[int(rings.inflamed[index])]
    between = theta + np.roll(theta, -1) + 2 * np.pi * (np.arange(theta.size) == theta.size - 1)
    between = between / 2
    keep = (rng.random(theta.size) < probability) & (look >= 0) & (np.roll(look, -1) >= 0)
    between = between[keep]
    m = modulation(between, rings.amp[index], rings.phase[index])
    inner = rings.inner[index] * m
    tip = rings.outer[index] * m - _EPI_TIP_UM / mpp
    semi_radial = np.minimum(0.4 * (tip - inner), 3.0 / mpp)
    rho = (inner + tip) / 2
    semi_tangential = np.minimum(2.8 / mpp, 0.45 * rho * (2 * np.pi / max(theta.size, 1)))
    ok = semi_radial > 1.2 / mpp
    her = np.tile(looks.GOBLET_HER, (ok.sum(), 1))
    return Ellipses(
        rings.x[index] + (rho * np.cos(between))[ok],
        rings.y[index] + (rho * np.sin(between))[ok],
        semi_radial[ok],
        semi_tangential[ok],
        between[ok],
        her,
    )


def abscess_contents(
    rng: np.random.Generator, rings: Rings, mpp: float
) -> tuple[CellTable, Ellipses]:
    """Neutrophils and debris in the dilated lumen of inflamed crypts (crypt abscesses)."""
    neutrophil = looks.LOOK_NAMES.index("Neutrophils")
    cell_radius = looks.CELL_LOOKS["Neutrophils"].cell_um[0] / 2 / mpp
    lumen_min = rings.inner * (1 - np.abs(rings.amp).sum(axis=1))
    dilated = rings.inner >= looks.ABSCESS_LUMEN_RADIUS_UM[0] / mpp - 1e-9
    host = np.flatnonzero(~rings.inverted & dilated & (lumen_min > cell_radius))
    xs, ys, debris = [], [], []
    for index in host:
        free = lumen_min[index] - cell_radius
        count = rng.poisson(free**2 / cell_radius**2 * 0.9) + 1
        rho, phi = free * np.sqrt(rng.random(count)), rng.uniform(0, 2 * np.pi, count)
        xs.append(rings.x[index] + rho * np.cos(phi))
        ys.append(rings.y[index] + rho * np.sin(phi))
        blob_r = lumen_min[index] * np.sqrt(rng.random(3))
        blob_phi = rng.uniform(0, 2 * np.pi, 3)
        debris.append(
            Ellipses(
                rings.x[index] + blob_r * np.cos(blob_phi),
                rings.y[index] + blob_r * np.sin(blob_phi),
                rng.uniform(1.5, 3.5, 3) / mpp,
                rng.uniform(1.0, 2.5, 3) / mpp,
                rng.uniform(0, np.pi, 3),
                np.tile(looks.DEBRIS_HER, (3, 1)),
            )
        )
    if not xs:
        return CellTable(), Ellipses.concat([])
    x, y = np.concatenate(xs), np.concatenate(ys)
    look = np.full(x.size, neutrophil)
    return CellTable(x, y, look, *sample_shapes(rng, look)), Ellipses.concat(debris)
