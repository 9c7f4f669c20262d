"""Bad tiles through the cell backends and the whole tile inspection: blank, out of tissue,
out of focus, pen-marked, not H&E (pure blue, pure green, brown/blue IHC-like, greyscale).
Each gives zero cells or a flag, never a crash."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_imilia.demo.synthetic import render_tile
from napari_imilia.interpret import TileBox, inspect_tile
from napari_imilia.interpret.cells import CELL_FLAGS
from napari_imilia.interpret.cells.classical import ClassicalBackend
from napari_imilia.interpret.epithelium import segment_epithelium
from napari_imilia.slide import open_slide

SIZE = 224


def _noisy(rgb, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, 4, (SIZE, SIZE, 3))
    return np.clip(np.asarray(rgb, np.float64) + noise, 0, 255).astype(np.uint8)


def _he() -> np.ndarray:
    return render_tile(SIZE, 0.5, seed=3, inflamed=True).rgb


def _ihc_like() -> np.ndarray:
    """Brown (DAB) and blue (hematoxylin) blobs on a pale blue-grey background."""
    rng = np.random.default_rng(1)
    rows, cols = np.mgrid[0:SIZE, 0:SIZE]
    image = np.empty((SIZE, SIZE, 3))
    image[:] = (200, 205, 225)
    for k in range(60):
        x, y = rng.uniform(0, SIZE, 2)
        inside = (cols - x) ** 2 + (rows - y) ** 2 < rng.uniform(3, 6) ** 2
        image[inside] = (120, 70, 30) if k % 2 else (90, 100, 170)
    return _noisy(image)


def _pen_marked() -> np.ndarray:
    """The H&E tile crossed by a blue and a black pen stroke, 12 px (6 µm) wide."""
    rgb = _he()
    rows, cols = np.mgrid[0:SIZE, 0:SIZE]
    rgb[np.abs(rows - 0.7 * cols - 40) < 6] = (20, 40, 160)
    rgb[np.abs(rows - 0.7 * cols - 120) < 6] = (30, 30, 30)
    return rgb


def _blurred() -> np.ndarray:
    blurred = ndi.gaussian_filter(_he().astype(np.float32), (2.0, 2.0, 0))  # σ = 1 µm
    return blurred.round().astype(np.uint8)


def _greyscale() -> np.ndarray:
    return np.repeat(_he().mean(axis=2, keepdims=True), 3, axis=2).astype(np.uint8)


BAD_TILES = {
    # name: (tile, flag expected, zero cells expected)
    "blank glass": (lambda: np.full((SIZE, SIZE, 3), 245, np.uint8), "no_tissue", True),
    "black": (lambda: np.zeros((SIZE, SIZE, 3), np.uint8), "not_he", True),
    "pure blue": (lambda: _noisy(np.broadcast_to([40, 60, 200], (SIZE, SIZE, 3))), "not_he", True),
    "pure green": (lambda: _noisy(np.broadcast_to([40, 180, 60], (SIZE, SIZE, 3))), "not_he", True),
    "IHC-like brown/blue": (_ihc_like, "not_he", True),
    "greyscale": (_greyscale, "not_he", True),
    "pen-marked": (_pen_marked, "ink", False),
    "out of focus": (_blurred, "out_of_focus", False),
}


@pytest.fixture(scope="module")
def classical() -> ClassicalBackend:
    return ClassicalBackend()


@pytest.mark.parametrize("name", list(BAD_TILES))
def test_classical_backend_flags_bad_tiles(classical, name):
    make, flag, no_cells = BAD_TILES[name]
    rgb = make()
    cells = classical.segment(rgb, mpp=0.5, level0_xy=(0, 0), level0_per_px=1.0)
    assert flag in cells.flags and set(cells.flags) <= set(CELL_FLAGS)
    if no_cells:
        assert cells.n_cells == 0 and not cells.labels.any()
    else:
        assert cells.n_cells > 20  # the usable part of the tile still gives its cells
    epithelium = segment_epithelium(rgb, mpp=0.5)  # never crashes either
    assert epithelium.mask.shape == rgb.shape[:2]


def test_good_he_tile_has_no_flag(classical):
    cells = classical.segment(_he(), mpp=0.5, level0_xy=(0, 0), level0_per_px=1.0)
    assert cells.flags == [] and cells.n_cells > 50


def test_pen_strokes_never_become_nuclei(classical):
    rgb = _pen_marked()
    ink = np.all(rgb == (20, 40, 160), axis=2) | np.all(rgb == (30, 30, 30), axis=2)
    cells = classical.segment(rgb, mpp=0.5, level0_xy=(0, 0), level0_per_px=1.0)
    assert (cells.labels[ink] > 0).mean() < 0.01


@pytest.mark.parametrize("name", ["blank glass", "pure blue", "pen-marked", "out of focus"])
def test_cellvit_backend_flags_bad_tiles(name):
    from napari_imilia.interpret.cells.cellvit import (
        HISTOPLUS_20X,
        CellViT,
        CellViTBackend,
        scaled_down,
    )

    config = scaled_down(HISTOPLUS_20X, embed_dim=32, depth=4, num_heads=2, grid=4)
    model = CellViT(config).init_random(seed=3).eval()
    backend = CellViTBackend(model, device="cpu", window_px=112, overlap_px=16)
    make, flag, _ = BAD_TILES[name]
    cells = backend.segment(make(), mpp=0.5, level0_xy=(0, 0), level0_per_px=1.0)
    assert flag in cells.flags
    if flag == "no_tissue":
        assert cells.n_cells == 0


def test_inspect_tile_on_bad_tiles_of_a_slide(tiff_writer, tmp_path: Path):
    """Pen-marked, IHC-like and blurred tiles pasted into a slide, plus glass and a box
    outside the slide: ``inspect_tile`` returns flags (and markers), never raises."""
    names = ["pen-marked", "IHC-like brown/blue", "out of focus"]
    height, width = SIZE, SIZE * (len(names) + 1)
    canvas = np.full((height, width, 3), 250, np.uint8)
    for k, name in enumerate(names):
        canvas[:, SIZE * k : SIZE * (k + 1)] = BAD_TILES[name][0]()

    def pattern(ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        return canvas[np.clip(ys, 0, height - 1), np.clip(xs, 0, width - 1)]

    path = tiff_writer(tmp_path / "bad.tiff", (height, width), mpp=0.5, pattern=pattern)
    with open_slide(path) as slide:
        for k, name in enumerate([*names, "blank glass"]):
            result = inspect_tile(slide, TileBox(name, SIZE * k, 0, SIZE, SIZE))
            assert BAD_TILES[name][1] in result.flags, (name, result.flags)
            assert result.markers.n_cells == result.n_cells
        outside = inspect_tile(slide, TileBox("far", 10 * width, 0, SIZE, SIZE))
    assert outside.flags == ["no_tissue"] and outside.n_cells == 0
