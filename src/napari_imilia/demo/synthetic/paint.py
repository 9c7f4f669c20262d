"""Drawing cells and other ellipses into stain-concentration planes, vectorised.

Every ellipse is rasterised at once per size class: pixel centres inside
``(u / a)^2 + (v / b)^2 <= 1`` in the ellipse's own axes. Cytoplasm first, then the plasma
cell hof, then nuclear lobes, which also write the instance label (global cell index + 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from napari_imilia.demo.synthetic import looks
from napari_imilia.demo.synthetic.scene import Scene
from napari_imilia.demo.synthetic.shapes import CellTable, Ellipses, cell_extent

_CHROMATIN = np.array([looks.CELL_LOOKS[name].chromatin for name in looks.LOOK_NAMES])
_NUCLEUS_HER = np.array(
    [looks.CELL_LOOKS[name].nucleus_her for name in looks.LOOK_NAMES], dtype=np.float32
)


@dataclass(frozen=True)
class _Pixels:
    """Pixels inside ellipses: flat index into the window, owner ellipse, normalised u, v."""

    flat: np.ndarray
    owner: np.ndarray
    u: np.ndarray
    v: np.ndarray

    @property
    def q(self) -> np.ndarray:
        return self.u**2 + self.v**2


def ellipse_pixels(
    x: np.ndarray,
    y: np.ndarray,
    semi_a: np.ndarray,
    semi_b: np.ndarray,
    angle: np.ndarray,
    x0: int,
    y0: int,
    width: int,
    height: int,
) -> _Pixels:
    """Window pixels whose centres lie in each ellipse (global px, half-axes px, angle rad)."""
    half = np.ceil(np.maximum(semi_a, semi_b)).astype(np.int64) + 1
    cx, cy = np.rint(x).astype(np.int64), np.rint(y).astype(np.int64)
    visible = (cx + half >= x0) & (cx - half < x0 + width)
    visible &= (cy + half >= y0) & (cy - half < y0 + height)
    parts = []
    for size in np.unique(half[visible]):
        members = np.flatnonzero(visible & (half == size))
        offsets = np.arange(-size, size + 1)
        n_chunks = max(1, members.size * offsets.size**2 // 2_000_000)
        for chunk in np.array_split(members, n_chunks):
            cols = (cx[chunk] - x0)[:, None, None] + offsets[None, None, :]
            rows = (cy[chunk] - y0)[:, None, None] + offsets[None, :, None]
            dx = (cols + (x0 - x[chunk])[:, None, None]).astype(np.float32)
            dy = (rows + (y0 - y[chunk])[:, None, None]).astype(np.float32)
            cos = (np.cos(angle[chunk])).astype(np.float32)[:, None, None]
            sin = (np.sin(angle[chunk])).astype(np.float32)[:, None, None]
            u = (dx * cos + dy * sin) / semi_a[chunk, None, None].astype(np.float32)
            v = (dy * cos - dx * sin) / semi_b[chunk, None, None].astype(np.float32)
            inside = u * u + v * v <= 1.0
            inside &= (cols >= 0) & (cols < width) & (rows >= 0) & (rows < height)
            hit = np.nonzero(inside)
            parts.append(
                (
                    rows[hit[0], hit[1], 0] * width + cols[hit[0], 0, hit[2]],
                    chunk[hit[0]],
                    u[hit],
                    v[hit],
                )
            )
    if not parts:
        empty = np.zeros(0, np.int64)
        return _Pixels(empty, empty, np.zeros(0, np.float32), np.zeros(0, np.float32))
    return _Pixels(*(np.concatenate(column) for column in zip(*parts, strict=True)))


def paint_ellipses(her: np.ndarray, paints: Ellipses, fine: np.ndarray, x0: int, y0: int) -> None:
    """Unlabelled ellipses (goblet mucin, debris) with their own concentrations."""
    height, width = fine.shape
    px = ellipse_pixels(
        paints.x, paints.y, paints.semi_a, paints.semi_b, paints.angle, x0, y0, width, height
    )
    planes = her.reshape(3, -1)
    texture = 1 + 0.2 * fine.ravel()[px.flat]
    for channel in range(3):
        planes[channel, px.flat] = paints.her[px.owner, channel] * texture


def paint_cells(
    scene: Scene, her: np.ndarray, labels: np.ndarray, fine: np.ndarray, x0: int, y0: int
) -> None:
    """Cytoplasm, plasma-cell hof, then nuclei (labelled with global cell index + 1)."""
    cells, mpp = scene.cells, scene.mpp
    height, width = labels.shape
    if len(cells) == 0:
        return
    cx, cy, radius = cell_extent(cells, mpp)
    near = np.flatnonzero(
        (cx + radius + 2 >= x0)
        & (cx - radius - 2 < x0 + width)
        & (cy + radius + 2 >= y0)
        & (cy - radius - 2 < y0 + height)
    )
    table = cells.take(near)
    planes, fine_flat = her.reshape(3, -1), fine.ravel()
    cyto = _cytoplasm_ellipses(table, mpp)
    px = ellipse_pixels(*cyto[:5], x0, y0, width, height)
    owner_her, texture, granular = cyto[5][px.owner], cyto[6][px.owner], cyto[7][px.owner]
    local = fine_flat[px.flat]
    grain = np.where(granular, np.clip(0.9 + 0.4 * local, 0.45, 1.4), 1 + texture * local)
    for channel in range(3):
        planes[channel, px.flat] = owner_her[:, channel] * grain
    px = ellipse_pixels(*_hof_ellipses(table, mpp), x0, y0, width, height)
    planes[0, px.flat] *= 0.45
    lobes = _lobe_ellipses(table, mpp)
    px = ellipse_pixels(*lobes[:5], x0, y0, width, height)
    cell = lobes[5][px.owner]
    look = table.look[cell]
    shade = _chromatin(look, px, fine_flat[px.flat], table.angle[cell])
    nucleus_her = _NUCLEUS_HER[look]
    red_shade = np.where(nucleus_her[:, 0] == 0, shade, 1.0)  # anucleate red cells
    planes[0, px.flat] = nucleus_her[:, 0] * shade
    planes[1, px.flat] = nucleus_her[:, 1] * red_shade
    planes[2, px.flat] = nucleus_her[:, 2] * red_shade
    labels.reshape(-1)[px.flat] = near[cell] + 1


def _chromatin(look: np.ndarray, px: _Pixels, local: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Relative stain amount inside nuclei: dense, clock face, vesicular, or red-cell disc."""
    q = px.q
    shade = (0.93 + 0.10 * local) * (1 - 0.08 * q)
    kinds = _CHROMATIN[look]
    clock = kinds == "clock"
    phi = np.arctan2(px.v[clock], px.u[clock]) + angle[clock]
    spokes = np.clip(np.cos(5 * phi), 0, 1) * (q[clock] > 0.3)
    shade[clock] = 0.72 + 0.10 * local[clock] + 0.45 * spokes
    vesicular = kinds == "vesicular"
    shade[vesicular] = 0.62 + 0.16 * local[vesicular] + 0.55 * q[vesicular] ** 3
    disc = kinds == "none"
    shade[disc] = 0.62 + 0.38 * q[disc]
    return shade.astype(np.float32)


def _cytoplasm_ellipses(cells: CellTable, mpp: float) -> tuple[np.ndarray, ...]:
    """(x, y, semi_a, semi_b, angle, her (N, 3), texture, granular) of visible cytoplasm."""
    cx, cy, _ = cell_extent(cells, mpp)
    n = len(cells)
    semi_a, semi_b = np.zeros(n), np.zeros(n)
    her, texture, granular = np.zeros((n, 3), np.float32), np.zeros(n), np.zeros(n, bool)
    for index, name in enumerate(looks.LOOK_NAMES):
        spec = looks.CELL_LOOKS[name]
        sel = cells.look == index
        if spec.cell_um is None or not sel.any():
            continue
        scale = cells.major_um[sel] / spec.nucleus_um[0] / 2 / mpp
        semi_a[sel], semi_b[sel] = spec.cell_um[0] * scale, spec.cell_um[1] * scale
        her[sel] = spec.cytoplasm_her
        texture[sel], granular[sel] = spec.cytoplasm_texture, spec.granular
    has = semi_a > 0
    return (
        cx[has],
        cy[has],
        semi_a[has],
        semi_b[has],
        cells.angle[has],
        her[has],
        texture[has],
        granular[has],
    )


def _hof_ellipses(cells: CellTable, mpp: float) -> tuple[np.ndarray, ...]:
    """Pale perinuclear Golgi zone of plasma cells, on the cytoplasm side of the nucleus."""
    sel = cells.look == looks.LOOK_NAMES.index("Plasmocytes")
    angle = cells.angle[sel]
    shift = (cells.major_um[sel] / 2 + 1.0) / mpp
    x = cells.x[sel] - shift * np.cos(angle)
    y = cells.y[sel] - shift * np.sin(angle)
    return x, y, np.full(x.size, 1.3 / mpp), np.full(x.size, 2.0 / mpp), angle


def _lobe_ellipses(cells: CellTable, mpp: float) -> tuple[np.ndarray, ...]:
    """(x, y, semi_a, semi_b, angle, cell index) of every nuclear lobe (px, rad)."""
    parts = []
    for n_lobes in np.unique(cells.lobes):
        idx = np.flatnonzero(cells.lobes == n_lobes)
        major, minor, angle = cells.major_um[idx], cells.minor_um[idx], cells.angle[idx]
        if n_lobes == 1:
            offsets = np.zeros((idx.size, 1, 2))
            semi_a, semi_b, lobe_angle = major[:, None] / 2, minor[:, None] / 2, angle[:, None]
        elif n_lobes == 2:
            d = 0.55 * major
            along = np.stack([np.cos(angle), np.sin(angle)], -1)[:, None, :]
            offsets = along * ((major - d) / 2)[:, None, None] * np.array([-1.0, 1.0])[:, None]
            semi_a, semi_b = np.repeat(d[:, None] / 2, 2, 1), np.repeat(minor[:, None] / 2, 2, 1)
            lobe_angle = np.repeat(angle[:, None], 2, 1)
        else:
            d = 0.42 * major
            step = np.deg2rad(55.0) * (np.arange(n_lobes) - (n_lobes - 1) / 2)
            lobe_angle = angle[:, None] + step[None, :]
            ring = ((major - d) / 2)[:, None, None]
            offsets = ring * np.stack([np.cos(lobe_angle), np.sin(lobe_angle)], -1)
            offsets -= offsets.mean(axis=1, keepdims=True)
            semi_a = np.repeat(d[:, None] / 2, n_lobes, 1)
            semi_b = 0.85 * semi_a
        n = offsets.shape[1]
        parts.append(
            (
                (cells.x[idx, None] + offsets[..., 0] / mpp).ravel(),
                (cells.y[idx, None] + offsets[..., 1] / mpp).ravel(),
                (np.broadcast_to(semi_a, (idx.size, n)) / mpp).ravel(),
                (np.broadcast_to(semi_b, (idx.size, n)) / mpp).ravel(),
                np.broadcast_to(lobe_angle, (idx.size, n)).ravel(),
                np.repeat(idx, n),
            )
        )
    if not parts:
        return tuple([np.zeros(0)] * 5 + [np.zeros(0, np.int64)])
    return tuple(np.concatenate(column) for column in zip(*parts, strict=True))
