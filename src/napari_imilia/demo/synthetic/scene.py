"""A synthetic mucosa scene: tissue, crypts (or surface epithelium), cells, inflamed areas.

The scene is pure geometry (arrays of shapes in pixels of the rendered image); ``raster``
turns any window of it into pixels, so a large slide can be drawn strip by strip.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from napari_imilia.demo.synthetic import looks
from napari_imilia.demo.synthetic.crypts import (
    abscess_contents,
    crypt_rings,
    ring_cells,
    surface_ring,
)
from napari_imilia.demo.synthetic.shapes import (
    ArrayTissue,
    BlobTissue,
    Box,
    CellTable,
    Ellipses,
    Rings,
    cell_extent,
    greedy_non_overlapping,
    in_boxes,
    sample_shapes,
)

#: Cells and crypts are generated this far (µm) beyond the image so edges show cut cells.
SCENE_MARGIN_UM = 40.0
#: Pitch (µm) of the coarse grid of slowly varying stain density and stroma paleness.
LOWFREQ_PITCH_UM = 40.0
#: Stroma cells are drawn from this many times the wanted number of candidates, then placed
#: one by one (dropping overlaps) until the wanted density is reached or space runs out.
_OVERSAMPLING = 4
#: Cells may come this close (fraction of the sum of whole-cell radii): cytoplasm may touch.
_PACKING = 0.9


@dataclass
class Scene:
    """Everything needed to draw any window of a synthetic image (coordinates in px)."""

    width_px: int
    height_px: int
    mpp: float
    seed: int
    tissue: BlobTissue | ArrayTissue
    rings: Rings
    cells: CellTable
    paints: Ellipses
    inflamed_boxes: list[Box]
    stain: looks.Stain
    lowfreq: np.ndarray
    lowfreq_pitch_px: float

    def tissue_at(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """Whether points are tissue (lumina of crypts included, luminal space excluded)."""
        inside = self.tissue.contains(xs, ys)
        for index in np.flatnonzero(self.rings.inverted):
            rho, _, outer = self.rings.polar(index, xs, ys)
            inside &= rho <= outer
        return inside


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream])


def build_scene(
    width_px: int,
    height_px: int,
    mpp: float,
    seed: int,
    *,
    tissue: BlobTissue | ArrayTissue,
    epithelium: str,
    inflamed_boxes: list[Box],
    composition: dict[str, float],
    inflamed_composition: dict[str, float],
    density_per_mm2: float,
    cells: CellTable | None = None,
) -> Scene:
    """Place crypts, epithelial nuclei, lamina propria cells and inflammation (px, µm/px)."""
    margin = SCENE_MARGIN_UM / mpp
    bounds = (-margin, -margin, width_px + margin, height_px + margin)
    if epithelium == "crypts":
        rings = crypt_rings(_rng(seed, 1), bounds, tissue, inflamed_boxes, mpp)
    elif epithelium == "surface":
        rings = surface_ring(_rng(seed, 1), width_px, height_px, mpp)
    else:
        rings = Rings.concat([])
    pitch = LOWFREQ_PITCH_UM / mpp
    epithelial, paints = ring_cells(_rng(seed, 3), rings, mpp, bounds)
    scene = Scene(
        width_px=width_px,
        height_px=height_px,
        mpp=mpp,
        seed=seed,
        tissue=tissue,
        rings=rings,
        cells=CellTable(),
        paints=paints,
        inflamed_boxes=list(inflamed_boxes),
        stain=looks.stain_for_seed(seed),
        lowfreq=_lowfreq_grid(_rng(seed, 2), width_px, height_px, pitch),
        lowfreq_pitch_px=pitch,
    )
    if cells is not None:
        scene.cells = cells
        return scene
    abscess, debris = abscess_contents(_rng(seed, 4), rings, mpp)
    scene.paints = Ellipses.concat([paints, debris])
    lamina, process, targets = _lamina_propria(
        scene, _rng(seed, 5), bounds, (composition, inflamed_composition), density_per_mm2
    )
    candidates = CellTable.concat([epithelial, abscess, lamina])
    cx, cy, radius = cell_extent(candidates, mpp)
    keep = greedy_non_overlapping(cx, cy, _PACKING * radius, n_fixed=len(epithelial))
    lamina_keep = keep[len(epithelial) + len(abscess) :]
    for index, target in enumerate(targets):  # random sequential adsorption up to the target
        lamina_keep[np.flatnonzero(lamina_keep & (process == index))[target:]] = False
    scene.cells = candidates.take(keep)
    return scene


def _lowfreq_grid(rng: np.random.Generator, width: int, height: int, pitch: float) -> np.ndarray:
    """(rows, cols, 2) smooth N(0, 1)-like fields: stain density, stroma paleness."""
    from scipy.ndimage import gaussian_filter

    shape = (math.ceil(height / pitch) + 4, math.ceil(width / pitch) + 4, 2)
    grid = gaussian_filter(rng.standard_normal(shape), sigma=(1.5, 1.5, 0), mode="wrap")
    return (grid / grid.std(axis=(0, 1))).astype(np.float32)


def _lamina_propria(
    scene: Scene,
    rng: np.random.Generator,
    bounds: tuple[float, float, float, float],
    mixes: tuple[dict[str, float], dict[str, float]],
    density_per_mm2: float,
) -> tuple[CellTable, np.ndarray, list[int]]:
    """Random stroma cell candidates: the normal mix everywhere, the inflamed mix in boxes.

    Returns the candidates (``_OVERSAMPLING`` times too many, in random order), the process
    (0 base, i inflamed box i - 1) of each, and how many each process should keep.
    """
    normal_mix, inflamed_mix = mixes
    processes = [(bounds, normal_mix, density_per_mm2, -1)]
    for index, box in enumerate(scene.inflamed_boxes):
        x0, y0 = max(box[0], bounds[0]), max(box[1], bounds[1])
        x1, y1 = min(box[0] + box[2], bounds[2]), min(box[1] + box[3], bounds[3])
        if x1 > x0 and y1 > y0:
            density = density_per_mm2 * looks.INFLAMED_DENSITY_FACTOR
            processes.append(((x0, y0, x1, y1), inflamed_mix, density, index))
    tables, owners, targets = [], [], []
    for process, ((x0, y0, x1, y1), mix, density, box_index) in enumerate(processes):
        area_mm2 = (x1 - x0) * (y1 - y0) * (scene.mpp / 1000) ** 2
        wanted = int(rng.poisson(density * area_mm2))
        n = _OVERSAMPLING * wanted
        names = list(mix)
        look = np.array([looks.LOOK_NAMES.index(name) for name in names])
        look = look[rng.choice(len(names), size=n, p=np.array([mix[k] for k in names]))]
        x, y = rng.uniform(x0, x1, n), rng.uniform(y0, y1, n)
        _cluster_red_cells(rng, look, x, y, scene.mpp)
        table = CellTable(x, y, look, *sample_shapes(rng, look))
        ok = in_boxes(x, y, scene.inflamed_boxes) == box_index
        ok[ok] = _in_stroma(scene, table.take(ok))
        tables.append(table.take(ok))
        owners.append(np.full(int(ok.sum()), process))
        targets.append(round(wanted * ok.mean()) if n else 0)
    return CellTable.concat(tables), np.concatenate(owners), targets


def _cluster_red_cells(
    rng: np.random.Generator, look: np.ndarray, x: np.ndarray, y: np.ndarray, mpp: float
) -> None:
    """Move red cells into small groups (capillary cross-sections), in place."""
    red = np.flatnonzero(look == looks.LOOK_NAMES.index("Red blood cell"))
    leaders = red[::4]
    for offset in range(1, 4):
        followers = red[offset::4]
        x[followers] = x[leaders[: followers.size]] + rng.normal(0, 4.5 / mpp, followers.size)
        y[followers] = y[leaders[: followers.size]] + rng.normal(0, 4.5 / mpp, followers.size)


def _in_stroma(scene: Scene, cells: CellTable) -> np.ndarray:
    """Whether each whole cell lies in lamina propria: in tissue, clear of every epithelium."""
    cx, cy, radius = cell_extent(cells, scene.mpp)
    ok = scene.tissue_at(cx, cy)
    for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        ok &= scene.tissue_at(cx + dx * radius, cy + dy * radius)
    rings, margin = scene.rings, radius + 0.5 / scene.mpp
    for index in np.flatnonzero(rings.inverted):
        rho, inner, _ = rings.polar(index, cx, cy)
        ok &= rho < inner - margin
    crypts = np.flatnonzero(~rings.inverted)
    if crypts.size and cx.size:
        from scipy.spatial import cKDTree

        k = min(3, crypts.size)
        _, near = cKDTree(np.column_stack([rings.x[crypts], rings.y[crypts]])).query(
            np.column_stack([cx, cy]), k=k
        )
        for column in np.atleast_2d(near.T):
            rho, _, outer = rings.polar(crypts[column], cx, cy)
            ok &= rho > outer + margin
    return ok
