"""Tissue detection on the real SVS and on generated pyramids with known tissue and ink.

The pyramid writer the tiling and feature tests share is ``support.images.write_pyramid_tiff``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_imilia.errors import SlideMPPError
from napari_imilia.slide import open_slide
from napari_imilia.tiling.grid import make_tile_grid
from napari_imilia.tiling.tissue import (
    NoTissueError,
    detect_tissue,
    fill_small_holes,
    low_resolution_rgb,
    remove_small_pieces,
    tissue_mask_from_rgb,
)
from support.images import ellipse, synthetic_he, write_pyramid_tiff


def block_mean(mask: np.ndarray, factor: int) -> np.ndarray:
    h, w = mask.shape[0] // factor * factor, mask.shape[1] // factor * factor
    return mask[:h, :w].reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


# -- generated slides (2 µm/px, 2400 x 1800 px, levels 2, 4, 8 µm/px) --------------------

SHAPE_HW = (1800, 2400)
MPP = 2.0


@pytest.fixture(scope="module")
def tissue_truth() -> np.ndarray:
    return ellipse(SHAPE_HW, (900, 1000), (600, 700)) | ellipse(SHAPE_HW, (400, 2000), (200, 180))


@pytest.fixture(scope="module")
def generated(tmp_path_factory, tissue_truth) -> Path:
    path = tmp_path_factory.mktemp("tissue") / "generated.tiff"
    return write_pyramid_tiff(path, synthetic_he(tissue_truth), mpp=MPP, n_levels=3)


@pytest.fixture(scope="module")
def inked(tmp_path_factory, tissue_truth) -> tuple[Path, np.ndarray]:
    image = synthetic_he(tissue_truth, seed=1)
    ink = np.zeros(SHAPE_HW, dtype=bool)
    ink[1500:1560, 100:2300] = True  # blue stripe across the background
    image[1500:1560, 100:2300] = (45, 75, 160)
    ink[100:1000, 2250:2290] = True  # green stripe
    image[100:1000, 2250:2290] = (60, 140, 95)
    ink[80:120, 200:900] = True  # black stripe
    image[80:120, 200:900] = (30, 30, 35)
    path = tmp_path_factory.mktemp("inked") / "inked.tiff"
    return write_pyramid_tiff(path, image, mpp=MPP, n_levels=3), ink


def test_generated_tissue_matches_the_truth_without_reading_level_0(
    generated, tissue_truth, chunk_reads
):
    with open_slide(generated) as slide:
        tissue = detect_tissue(slide)
    assert tissue.mpp == pytest.approx(8.0)
    assert tissue.level0_per_px == pytest.approx(4.0)
    assert tissue.mask.shape == (450, 600)
    assert chunk_reads and all(key.startswith("2/") for key in chunk_reads)
    truth = block_mean(tissue_truth, 4) > 0.5
    assert iou(tissue.mask, truth) >= 0.9
    assert not tissue.mask[:20, :20].any() and not tissue.mask[-20:, -20:].any()
    assert tissue.area_um2 == pytest.approx(tissue_truth.sum() * MPP**2, rel=0.1)


def test_pen_marks_are_excluded(inked, tissue_truth):
    path, ink = inked
    with open_slide(path) as slide:
        tissue = detect_tissue(slide)
        kept_ink = detect_tissue(slide, remove_pen=False)
    ink_low = block_mean(ink, 4) > 0
    assert not (tissue.mask & ink_low).any()
    assert (kept_ink.mask & ink_low).sum() > 0.5 * ink_low.sum(), "without pen removal ink shows"
    assert iou(tissue.mask, block_mean(tissue_truth, 4) > 0.5) >= 0.9
    assert tissue.pen_fraction > 0


def soft_pen_strokes(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``image`` with two hand-drawn-like marker strokes, and where the ink is (alpha > 0.05).

    A blue ring circling the big ellipse just outside it, and a green wave that runs over the
    background and across the small ellipse. Ink is a semi-transparent filter (alpha 0.7-0.8,
    soft edges) multiplying what lies under it, as marker ink on a glass slide does.
    """
    yy, xx = np.mgrid[0 : SHAPE_HW[0], 0 : SHAPE_HW[1]]
    ring_px = (np.hypot((yy - 900) / 640, (xx - 1000) / 750) - 1) * 650  # signed distance
    wave_px = yy - (300 + 120 * np.sin(xx / 90.0))
    strokes = [
        (0.8 * np.clip(1 - np.abs(ring_px) / 14, 0, 1) ** 0.5, (40, 70, 170)),
        (0.7 * np.clip(1 - np.abs(wave_px) / 12, 0, 1) ** 0.5 * (xx > 1600), (40, 150, 90)),
    ]
    out = image.astype(np.float32)
    for alpha, ink_rgb in strokes:
        transmitted = np.asarray(ink_rgb, dtype=np.float32) / 255.0
        out *= 1 - alpha[..., None] * (1 - transmitted)
    ink = (strokes[0][0] > 0.05) | (strokes[1][0] > 0.05)
    return np.clip(out, 0, 255).astype(np.uint8), ink


def test_soft_curved_pen_strokes_give_no_tissue_and_no_tiles(tmp_path, tissue_truth):
    image, ink = soft_pen_strokes(synthetic_he(tissue_truth, seed=3))
    path = write_pyramid_tiff(tmp_path / "marked.tiff", image, mpp=MPP, n_levels=3)
    with open_slide(path) as slide:
        tissue = detect_tissue(slide)
        unfiltered = detect_tissue(slide, remove_pen=False)
        grid = make_tile_grid(slide, tissue, target_mpp=MPP, tile_px=32)
        grid_unfiltered = make_tile_grid(slide, unfiltered, target_mpp=MPP, tile_px=32)
    truth_low = block_mean(tissue_truth, 4) > 0
    ink_on_glass = (block_mean(ink, 4) > 0) & ~truth_low
    assert ink_on_glass.sum() > 5000
    assert not (tissue.mask & ink_on_glass).any()
    assert (unfiltered.mask & ink_on_glass).sum() > 0.5 * ink_on_glass.sum()
    assert iou(tissue.mask, block_mean(tissue_truth, 4) > 0.5) >= 0.97
    # the green wave over the small ellipse stays tissue: ink over tissue is not cut out
    under_wave = truth_low & (block_mean(ink, 4) > 0.5)
    assert under_wave.sum() > 50 and tissue.mask[under_wave].mean() > 0.9

    def true_fractions(g):
        return np.array(
            [
                tissue_truth[y : y + h, x : x + w].mean()
                for x, y, w, h in zip(
                    g.x.tolist(), g.y.tolist(), g.width.tolist(), g.height.tolist(), strict=True
                )
            ]
        )

    assert grid.n_tiles > 500 and true_fractions(grid).min() >= 0.25
    assert (true_fractions(grid_unfiltered) == 0).sum() > 20  # tiles of bare ink without it


def test_blank_slide_gives_an_empty_mask_and_the_grid_names_the_thresholds(tmp_path):
    image = synthetic_he(np.zeros((600, 800), dtype=bool))
    path = write_pyramid_tiff(tmp_path / "blank.tiff", image, mpp=0.5, n_levels=2)
    with open_slide(path) as slide:
        tissue = detect_tissue(slide)
        assert tissue.is_empty and tissue.tissue_fraction == 0
        with pytest.raises(NoTissueError, match=r"no tissue found in blank\.tiff.*saturation >"):
            make_tile_grid(slide, tissue)


def test_real_svs_mask_covers_the_stained_area(small_svs):
    with open_slide(small_svs) as slide:
        tissue = detect_tissue(slide)
        rgb, level0_per_px = low_resolution_rgb(slide, 8.0)
    assert level0_per_px == tissue.level0_per_px == 16.0  # lazy 2x level, then 8x8 blocks
    assert tissue.mpp == pytest.approx(0.499 * 16)
    assert rgb.shape[:2] == tissue.mask.shape == (2967 // 16, 2220 // 16)
    mask = tissue.mask
    assert 0.2 < tissue.tissue_fraction < 0.6
    for corner in (mask[:10, :10], mask[:10, -10:], mask[-10:, :10]):
        assert not corner.any()
    high, low = rgb.max(-1).astype(float), rgb.min(-1).astype(float)
    strongly_stained = (high - low) / np.maximum(high, 1) > 0.3
    assert strongly_stained.sum() > 1000
    assert mask[strongly_stained].mean() > 0.95
    background = rgb.min(-1) > 225
    assert mask[background].mean() < 0.1


def test_explicit_thresholds_are_used_and_reported(small_svs):
    with open_slide(small_svs) as slide:
        strict = detect_tissue(slide, saturation_threshold=0.4, min_od=0.3)
        default = detect_tissue(slide)
    assert strict.saturation_threshold == 0.4 and strict.min_od == 0.3
    assert "saturation > 0.400" in strict.describe()
    assert strict.mask.sum() < default.mask.sum()


def test_slide_without_mpp_asks_for_it(small_levels_tiff):
    with open_slide(small_levels_tiff) as slide, pytest.raises(SlideMPPError, match="--mpp"):
        detect_tissue(slide)


def test_holes_and_small_pieces_follow_the_areas():
    mask = np.zeros((60, 60), dtype=bool)
    mask[10:50, 10:50] = True
    mask[20:23, 20:23] = False  # 9 px hole
    mask[30:40, 30:40] = False  # 100 px hole
    mask[2:4, 55:57] = True  # 4 px piece
    filled = fill_small_holes(mask, max_hole_px=50)
    assert filled[21, 21] and not filled[35, 35]
    cleaned = remove_small_pieces(filled, min_piece_px=10)
    assert not cleaned[2:4, 55:57].any() and cleaned[15, 15]


def test_tissue_mask_from_rgb_thresholds_stay_in_bounds_on_a_blank_image():
    white = np.full((64, 64, 3), 244, dtype=np.uint8)
    white[::2] = 240
    tissue = tissue_mask_from_rgb(white, mpp=8.0)
    assert tissue.is_empty
    assert 0.05 <= tissue.saturation_threshold <= 0.15 and 0.05 <= tissue.min_od <= 0.15
