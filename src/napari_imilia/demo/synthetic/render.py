"""Public rendering functions: H&E-looking tiles and regions with their ground truth."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from napari_imilia.demo.synthetic import looks
from napari_imilia.demo.synthetic.raster import rasterise
from napari_imilia.demo.synthetic.scene import SCENE_MARGIN_UM, Scene, build_scene
from napari_imilia.demo.synthetic.shapes import ArrayTissue, BlobTissue, Box, CellTable

_EPITHELIUM_MODES = {
    True: "crypts",
    False: "none",
    "crypts": "crypts",
    "surface": "surface",
    "none": "none",
}


@dataclass
class PlantedCell:
    """One drawn cell. ``x_px``/``y_px``: nucleus centre in pixels of the rendered image
    (column, row; pixel centres at integers, as skimage's centroids); ``major_um``/
    ``minor_um``: nucleus extent (diameters, µm); ``angle_rad``: major axis from +x towards
    +y; ``lobes``: nuclear lobes (neutrophils 3-5, eosinophils 2)."""

    x_px: float
    y_px: float
    class_name: str
    major_um: float
    minor_um: float
    angle_rad: float
    lobes: int = 1


@dataclass
class SyntheticTile:
    """A rendered image and its ground truth, all (H, W) at ``mpp`` µm/px.

    ``instance_labels``: 0 background, ``k`` the nucleus of ``cells[k - 1]`` (red cells: the
    whole disc); ``class_ids``: index into ``CELL_CLASSES`` per pixel; ``epithelium_mask``:
    crypt/surface epithelium; ``tissue_mask``: tissue (crypt lumina included);
    ``cells``: every cell with at least one visible pixel (a cell cut by the border may have
    its centre just outside); ``inflamed_boxes_px``: planted inflamed areas (x, y, w, h)
    clipped to the image.
    """

    rgb: np.ndarray
    instance_labels: np.ndarray
    class_ids: np.ndarray
    epithelium_mask: np.ndarray
    tissue_mask: np.ndarray
    cells: list[PlantedCell]
    mpp: float
    inflamed_boxes_px: list[Box] = field(default_factory=list)


def render_tile(
    size_px: int = 224,
    mpp: float = 0.5,
    seed: int = 0,
    *,
    composition: dict[str, float] | None = None,
    cell_density_per_mm2: float = looks.DEFAULT_DENSITY_PER_MM2,
    epithelium: bool | str = True,
    inflamed: bool = False,
    background_fraction: float = 0.0,
    cells: Sequence[PlantedCell] | None = None,
) -> SyntheticTile:
    """A square tile of colonic mucosa, ``size_px`` pixels at ``mpp`` µm/px.

    ``composition``: lamina propria class fractions (default: normal, or inflamed when
    ``inflamed``); ``cell_density_per_mm2``: lamina propria cells per mm² of stroma before
    overlap rejection (inflamed tiles multiply it by ``INFLAMED_DENSITY_FACTOR``);
    ``epithelium``: True/"crypts" (crypt rings), "surface" (surface epithelium along the top)
    or False/"none"; ``inflamed``: dense lymphoplasmacytic and granulocytic infiltrate,
    intraepithelial neutrophils and crypt abscesses; ``background_fraction``: about this
    fraction of the tile, along one side, is glass; ``cells``: draw exactly these cells
    (pixel coordinates of the tile) instead of random ones.
    """
    _check_size(size_px, size_px, mpp)
    if not 0.0 <= background_fraction < 1.0:
        raise ValueError(f"background_fraction must be in [0, 1), got {background_fraction}")
    tissue = _edge_tissue(size_px, seed, background_fraction)
    reach = SCENE_MARGIN_UM / mpp + 1  # cells cut by the tile edges are inflamed too
    boxes = [(-reach, -reach, size_px + 2 * reach, size_px + 2 * reach)] if inflamed else []
    return render_region(
        size_px,
        size_px,
        mpp,
        seed,
        inflamed_regions=boxes,
        tissue=tissue,
        composition=composition,
        inflamed_composition=composition,
        cell_density_per_mm2=cell_density_per_mm2,
        epithelium=epithelium,
        cells=cells,
    )


def render_region(
    width_px: int,
    height_px: int,
    mpp: float = 0.5,
    seed: int = 0,
    *,
    inflamed_regions: Sequence[Box] = (),
    tissue: str | np.ndarray = "blob",
    composition: dict[str, float] | None = None,
    inflamed_composition: dict[str, float] | None = None,
    cell_density_per_mm2: float = looks.DEFAULT_DENSITY_PER_MM2,
    epithelium: bool | str = True,
    cells: Sequence[PlantedCell] | None = None,
) -> SyntheticTile:
    """A ``width_px`` x ``height_px`` region at ``mpp`` µm/px with ground truth.

    ``inflamed_regions``: boxes (x, y, w, h) in pixels where the lamina propria is inflamed
    (``inflamed_composition``, default ``INFLAMED_COMPOSITION``, at the density times
    ``INFLAMED_DENSITY_FACTOR``) and crypts are injured; ``composition`` (default
    ``NORMAL_COMPOSITION``) is the mix elsewhere; ``tissue``: "blob" (one irregular piece),
    "full", or an (H, W) bool mask. Other arguments as in :func:`render_tile`.
    """
    scene = make_scene(
        width_px,
        height_px,
        mpp,
        seed,
        inflamed_regions=inflamed_regions,
        tissue=tissue,
        composition=composition,
        inflamed_composition=inflamed_composition,
        cell_density_per_mm2=cell_density_per_mm2,
        epithelium=epithelium,
        cells=cells,
    )
    raster = rasterise(scene, 0, 0, width_px, height_px)
    present = np.unique(raster.labels)
    present = present[present > 0]
    relabel = np.zeros(len(scene.cells) + 1, dtype=np.int32)
    relabel[present] = np.arange(1, present.size + 1, dtype=np.int32)
    return SyntheticTile(
        rgb=raster.rgb,
        instance_labels=relabel[raster.labels],
        class_ids=raster.class_ids,
        epithelium_mask=raster.epithelium_mask,
        tissue_mask=raster.tissue_mask,
        cells=[_planted(scene.cells, index - 1) for index in present],
        mpp=float(mpp),
        inflamed_boxes_px=[_clip_box(box, width_px, height_px) for box in scene.inflamed_boxes],
    )


def make_scene(
    width_px: int,
    height_px: int,
    mpp: float,
    seed: int,
    *,
    inflamed_regions: Sequence[Box] = (),
    tissue: str | np.ndarray | BlobTissue = "blob",
    composition: dict[str, float] | None = None,
    inflamed_composition: dict[str, float] | None = None,
    cell_density_per_mm2: float = looks.DEFAULT_DENSITY_PER_MM2,
    epithelium: bool | str = True,
    cells: Sequence[PlantedCell] | None = None,
) -> Scene:
    """Validate arguments and lay out the scene that :func:`render_region` draws."""
    _check_size(width_px, height_px, mpp)
    if epithelium not in _EPITHELIUM_MODES:
        raise ValueError(
            f"epithelium must be True, False, 'crypts', 'surface' or 'none', got {epithelium!r}"
        )
    if cell_density_per_mm2 < 0:
        raise ValueError(f"cell_density_per_mm2 must be >= 0, got {cell_density_per_mm2}")
    mix = looks.normalised_composition(composition or looks.NORMAL_COMPOSITION)
    inflamed_mix = looks.normalised_composition(inflamed_composition or looks.INFLAMED_COMPOSITION)
    return build_scene(
        int(width_px),
        int(height_px),
        float(mpp),
        int(seed),
        tissue=_tissue(tissue, width_px, height_px, seed),
        epithelium=_EPITHELIUM_MODES[epithelium],
        inflamed_boxes=[tuple(float(v) for v in box) for box in inflamed_regions],
        composition=mix,
        inflamed_composition=inflamed_mix,
        density_per_mm2=float(cell_density_per_mm2),
        cells=None if cells is None else _cell_table(cells),
    )


def tissue_blobs(width_px: int, height_px: int, seed: int, *, n_pieces: int = 1) -> BlobTissue:
    """``n_pieces`` irregular tissue pieces side by side, filling most of the region."""
    rng = np.random.default_rng([seed, 9001])
    column = width_px / n_pieces
    amp = np.concatenate(
        [
            rng.uniform(0, 0.08, (n_pieces, 1)),
            rng.uniform(0, 0.05, (n_pieces, 1)),
            rng.uniform(0, 0.025, (n_pieces, 4)),
        ],
        axis=1,
    )
    reach = 1 + amp.sum(axis=1)
    return BlobTissue(
        x=(np.arange(n_pieces) + 0.5 + rng.uniform(-0.04, 0.04, n_pieces)) * column,
        y=height_px * (0.5 + rng.uniform(-0.04, 0.04, n_pieces)),
        rx=0.44 * column / reach,
        ry=0.42 * height_px / reach,
        angle=rng.uniform(-0.15, 0.15, n_pieces),
        amp=amp,
        phase=rng.uniform(0, 2 * np.pi, amp.shape),
    )


def _check_size(width_px: int, height_px: int, mpp: float) -> None:
    if width_px < 1 or height_px < 1:
        raise ValueError(f"image size must be positive, got {width_px} x {height_px} px")
    if not 0.05 <= mpp <= 20.0:
        raise ValueError(f"mpp must be a pixel size in µm/px between 0.05 and 20, got {mpp}")


def _tissue(
    tissue: str | np.ndarray | BlobTissue, width: int, height: int, seed: int
) -> BlobTissue | ArrayTissue:
    if isinstance(tissue, BlobTissue):
        return tissue
    if isinstance(tissue, np.ndarray):
        if tissue.shape != (height, width):
            raise ValueError(f"tissue mask shape {tissue.shape} != image {(height, width)}")
        return ArrayTissue(tissue.astype(bool))
    if tissue == "blob":
        return tissue_blobs(width, height, seed)
    if tissue == "full":
        return ArrayTissue(np.ones((1, 1), dtype=bool))
    raise ValueError(f"tissue must be 'blob', 'full' or a bool mask, got {tissue!r}")


def _edge_tissue(size_px: int, seed: int, background_fraction: float) -> np.ndarray:
    """Tile tissue mask: glass along one (seeded) side, wavy edge, about the given fraction."""
    if background_fraction <= 0:
        return np.ones((size_px, size_px), dtype=bool)
    rng = np.random.default_rng([seed, 9002])
    x = np.arange(size_px)
    wave = min(background_fraction, 1 - background_fraction) * size_px * 0.2
    edge = background_fraction * size_px + wave * np.sin(
        2 * np.pi * x / (size_px * rng.uniform(0.7, 1.3)) + rng.uniform(0, 2 * np.pi)
    )
    mask = np.arange(size_px)[:, None] >= edge[None, :]
    return np.rot90(mask, k=int(rng.integers(4))).copy()


def _cell_table(cells: Sequence[PlantedCell]) -> CellTable:
    unknown = sorted({c.class_name for c in cells} - set(looks.LOOK_NAMES))
    if unknown:
        raise ValueError(f"cannot draw cells of class {unknown}; choose from {looks.LOOK_NAMES}")
    return CellTable(
        x=np.array([c.x_px for c in cells], dtype=np.float64),
        y=np.array([c.y_px for c in cells], dtype=np.float64),
        look=np.array([looks.LOOK_NAMES.index(c.class_name) for c in cells], dtype=np.int64),
        major_um=np.array([c.major_um for c in cells], dtype=np.float64),
        minor_um=np.array([c.minor_um for c in cells], dtype=np.float64),
        angle=np.array([c.angle_rad for c in cells], dtype=np.float64),
        lobes=np.array([max(1, int(c.lobes)) for c in cells], dtype=np.int64),
    )


def _planted(table: CellTable, index: int) -> PlantedCell:
    return PlantedCell(
        x_px=float(table.x[index]),
        y_px=float(table.y[index]),
        class_name=looks.LOOK_NAMES[int(table.look[index])],
        major_um=float(table.major_um[index]),
        minor_um=float(table.minor_um[index]),
        angle_rad=float(table.angle[index]),
        lobes=int(table.lobes[index]),
    )


def _clip_box(box: Box, width: int, height: int) -> Box:
    x0, y0 = max(box[0], 0.0), max(box[1], 0.0)
    x1, y1 = min(box[0] + box[2], float(width)), min(box[1] + box[3], float(height))
    return (x0, y0, max(x1 - x0, 0.0), max(y1 - y0, 0.0))
