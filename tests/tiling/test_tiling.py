"""Tile grid geometry, read levels, tissue fractions and tile pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from skimage.transform import resize

from napari_imilia.errors import ImiliaError, SlideMPPError
from napari_imilia.slide import open_slide
from napari_imilia.tiling.grid import (
    TileReader,
    box_tissue_fraction,
    make_tile_grid,
    read_tile,
    resize_tile,
    round_half_up,
)
from napari_imilia.tiling.tissue import TissueMask, detect_tissue
from support.images import ellipse, synthetic_he, write_pyramid_tiff

PYRAMID_MPP = 0.25
PYRAMID_HW = (1536, 2048)  # level 0 at 0.25 µm/px; levels at 0.5 and 1.0 µm/px


@pytest.fixture(scope="module")
def pyramid(tmp_path_factory) -> Path:
    tissue = ellipse(PYRAMID_HW, (768, 1024), (650, 900))
    path = tmp_path_factory.mktemp("pyramid") / "pyramid.tiff"
    return write_pyramid_tiff(path, synthetic_he(tissue, seed=2), mpp=PYRAMID_MPP, n_levels=3)


@pytest.fixture(scope="module")
def pyramid_tissue(pyramid) -> TissueMask:
    with open_slide(pyramid) as slide:
        return detect_tissue(slide)


@pytest.mark.parametrize(
    ("target_mpp", "footprint", "read_level", "read_size"),
    [(0.5, 448, 1, 224), (1.0, 896, 2, 224), (0.75, 672, 1, 336), (0.25, 224, 0, 224)],
)
def test_pyramid_footprint_and_read_level(
    pyramid, pyramid_tissue, target_mpp, footprint, read_level, read_size
):
    with open_slide(pyramid) as slide:
        grid = make_tile_grid(slide, pyramid_tissue, target_mpp=target_mpp, tile_px=224)
    assert grid.n_tiles > 0
    assert grid.footprint_px == footprint
    assert (grid.width == footprint).all() and (grid.height == footprint).all()
    assert grid.read_level == read_level and grid.read_size_px == read_size
    assert (grid.x % footprint == 0).all() and (grid.y % footprint == 0).all()
    assert grid.coords.shape == (grid.n_tiles, 2) and grid.coords.dtype == np.int64


def test_tile_pixels_equal_a_resize_of_read_region(pyramid, pyramid_tissue):
    with open_slide(pyramid) as slide:
        grid = make_tile_grid(slide, pyramid_tissue, target_mpp=0.75, tile_px=224)
        for index in (0, grid.n_tiles // 2, grid.n_tiles - 1):
            xy = (int(grid.x[index]), int(grid.y[index]))
            region = slide.read_region(xy, 1, (336, 336))
            tile = read_tile(slide, grid, index)
            assert tile.shape == (224, 224, 3) and tile.dtype == np.uint8
            np.testing.assert_array_equal(tile, resize_tile(region, 224))
            smooth = resize(region, (224, 224), anti_aliasing=True, preserve_range=True)
            assert np.abs(tile.astype(float) - smooth).mean() < 6.0
            np.testing.assert_array_equal(read_tile(slide, grid, index), tile)  # deterministic


def test_tile_read_at_the_native_level_needs_no_resize(pyramid, pyramid_tissue):
    with open_slide(pyramid) as slide:
        grid = make_tile_grid(slide, pyramid_tissue, target_mpp=0.5, tile_px=224)
        xy = (int(grid.x[3]), int(grid.y[3]))
        np.testing.assert_array_equal(
            read_tile(slide, grid, 3), slide.read_region(xy, 1, (224, 224))
        )
        with pytest.raises(IndexError):
            read_tile(slide, grid, grid.n_tiles)


def test_tiles_past_the_slide_edge_are_white_outside(pyramid, pyramid_tissue):
    with open_slide(pyramid) as slide:
        grid = make_tile_grid(slide, pyramid_tissue, target_mpp=1.0, min_tissue_fraction=0.0)
        assert grid.n_tiles == 3 * 2  # ceil(2048 / 896) x ceil(1536 / 896)
        reader = TileReader(slide, grid)
        corner = int(np.flatnonzero((grid.x == 1792) & (grid.y == 896))[0])
        tile = reader(corner)  # level-2 pixels 448..672 x 224..448 of a 512 x 384 level
        assert (tile[160:, :] == 255).all() and (tile[:, 64:] == 255).all()
        assert (tile[:160, :64] < 255).any()
        np.testing.assert_array_equal(tile, slide.read_region((1792, 896), 2, (224, 224)))


def test_real_svs_footprint_rounding_and_tissue_fractions(small_svs):
    with open_slide(small_svs) as slide:
        tissue = detect_tissue(slide)
        grid = make_tile_grid(slide, tissue, target_mpp=0.5, tile_px=224)
        everything = make_tile_grid(slide, tissue, target_mpp=0.5, min_tissue_fraction=0.0)
    assert pytest.approx(224.449, abs=1e-3) == 224 * 0.5 / 0.499
    assert grid.footprint_px == 224 and grid.read_level == 0 and grid.read_size_px == 224
    assert (grid.x % 224 == 0).all() and (grid.y % 224 == 0).all()
    assert everything.n_tiles == 10 * 14  # ceil(2220 / 224) x ceil(2967 / 224)
    assert 10 < grid.n_tiles < everything.n_tiles
    fractions = everything.tissue_fraction
    assert ((fractions >= 0) & (fractions <= 1)).all()
    assert (grid.tissue_fraction >= 0.5).all()
    # 224 level-0 px = 14 mask px of 16 level-0 px: each tile covers whole mask pixels.
    upsampled = np.kron(tissue.mask, np.ones((16, 16), dtype=bool))
    padded = np.zeros((14 * 224, 10 * 224), dtype=bool)
    padded[: upsampled.shape[0], : upsampled.shape[1]] = upsampled
    for x, y, fraction in zip(everything.x, everything.y, fractions, strict=True):
        assert fraction == pytest.approx(padded[y : y + 224, x : x + 224].mean())


def test_table_ids_and_hash(small_svs):
    with open_slide(small_svs) as slide:
        tissue = detect_tissue(slide)
        grid = make_tile_grid(slide, tissue)
        again = make_tile_grid(slide, tissue)
        other_size = make_tile_grid(slide, tissue, tile_px=256)
        other_mpp = make_tile_grid(slide, tissue, target_mpp=1.0, tile_px=112)
        stricter = make_tile_grid(slide, tissue, min_tissue_fraction=0.9)
        overlapping = make_tile_grid(slide, tissue, overlap_px=24)
    frame = grid.to_frame()
    assert list(frame.columns) == ["tile_id", "x", "y", "width", "height", "tissue_fraction"]
    assert len(frame) == grid.n_tiles == len(grid)
    assert frame["tile_id"].iloc[0] == f"{grid.x[0]}_{grid.y[0]}"
    assert frame["tile_id"].is_unique
    assert grid.tiling_sha256 == again.tiling_sha256
    hashes = {g.tiling_sha256 for g in (grid, other_size, other_mpp, stricter, overlapping)}
    assert len(hashes) == 5
    assert other_mpp.footprint_px == 224 and other_mpp.read_level == 0  # lazy levels: never
    assert other_mpp.read_size_px == 224
    assert overlapping.stride_px == 224 - round_half_up(24 * 0.5 / 0.499)
    assert (overlapping.x % overlapping.stride_px == 0).all()


def test_take_keeps_the_selected_tiles_and_the_grid_parameters(pyramid, pyramid_tissue):
    with open_slide(pyramid) as slide:
        grid = make_tile_grid(slide, pyramid_tissue, target_mpp=0.5, tile_px=224)
    first = grid.take(slice(0, 3))
    assert first.tile_ids == grid.tile_ids[:3]
    np.testing.assert_array_equal(first.tissue_fraction, grid.tissue_fraction[:3])
    np.testing.assert_array_equal(first.width, grid.width[:3])
    odd = grid.take(np.arange(grid.n_tiles) % 2 == 1)
    assert odd.tile_ids == grid.tile_ids[1::2]
    np.testing.assert_array_equal(odd.height, grid.height[1::2])
    assert (odd.read_level, odd.read_size_px, odd.stride_px, odd.footprint_px) == (
        grid.read_level,
        grid.read_size_px,
        grid.stride_px,
        grid.footprint_px,
    )
    assert first.tiling_sha256 != grid.tiling_sha256 != odd.tiling_sha256


def test_box_fraction_outside_the_mask_is_background():
    mask = TissueMask(
        mask=np.ones((4, 4), dtype=bool),
        mpp=8.0,
        level0_per_px=16.0,
        saturation_threshold=0.1,
        min_od=0.1,
        min_tissue_area_um2=0.0,
    )
    fractions = box_tissue_fraction(mask, np.array([0, 32, 64, 2]), np.array([0, 32, 0, 2]), 64)
    np.testing.assert_allclose(fractions, [1.0, 0.25, 0.0, 1.0])
    tiny = box_tissue_fraction(mask, np.array([60]), np.array([0]), 4)  # under one mask px
    np.testing.assert_allclose(tiny, [1.0])


def test_errors_without_mpp_and_for_bad_parameters(small_levels_tiff, pyramid, pyramid_tissue):
    with open_slide(small_levels_tiff) as slide, pytest.raises(SlideMPPError, match="--mpp"):
        make_tile_grid(slide, pyramid_tissue)
    with open_slide(pyramid) as slide:
        with pytest.raises(ImiliaError, match="overlap_px"):
            make_tile_grid(slide, pyramid_tissue, overlap_px=224)
        with pytest.raises(ImiliaError, match="positive"):
            make_tile_grid(slide, pyramid_tissue, tile_px=0)
