"""Whole-slide feature extraction with its HDF5 cache (the tile feed: test_tile_feed.py)."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import h5py
import numpy as np
import pytest

from napari_imilia.errors import FeatureCacheError, SlideMPPError
from napari_imilia.features.cache import read_features
from napari_imilia.features.extract import (
    ExtractionCancelled,
    extract_slide_features,
    feature_attrs,
    feature_cache_path,
)
from napari_imilia.slide import open_slide
from napari_imilia.tiling.grid import make_tile_grid, read_tile
from napari_imilia.tiling.tissue import NoTissueError, detect_tissue
from support.images import ellipse, synthetic_he, write_pyramid_tiff
from support.processes import assert_no_decode_processes

SHAPE_HW = (1024, 1536)  # 0.5 µm/px, so tiles at 0.5 µm/px read level 0 as is


def _write(path: Path, seed: int) -> Path:
    tissue = ellipse(SHAPE_HW, (512, 768), (450, 700))
    return write_pyramid_tiff(path, synthetic_he(tissue, seed=seed), mpp=0.5, n_levels=2)


@pytest.fixture(autouse=True)
def decode_in_the_caller(monkeypatch):
    """The cache tests decode in the caller (fast); decoding in processes, with extraction
    and cancellation, is tested in test_tile_feed.py."""
    monkeypatch.setattr(
        "napari_imilia.features.extract.default_decode_workers", lambda device="cpu": 0
    )


@pytest.fixture(scope="module")
def slide_path(tmp_path_factory) -> Path:
    return _write(tmp_path_factory.mktemp("features") / "case-01.tiff", seed=3)


@pytest.fixture
def slide(slide_path):
    with open_slide(slide_path) as opened:
        yield opened


@pytest.fixture
def grid(slide):
    return make_tile_grid(slide, detect_tissue(slide), target_mpp=0.5, tile_px=64)


class SpyExtractor:
    """Mean and standard deviation of each channel; counts the tiles it embeds."""

    dim = 6
    tile_px = 64
    target_mpp = 0.5

    def __init__(self, name: str = "spy", weights_sha256: str | None = "a" * 64) -> None:
        self.name = name
        self.weights_sha256 = weights_sha256
        self.calls = 0
        self.tiles = 0

    def embed(self, tiles_uint8: np.ndarray) -> np.ndarray:
        self.calls += 1
        self.tiles += len(tiles_uint8)
        pixels = tiles_uint8.reshape(len(tiles_uint8), -1, 3).astype(np.float32)
        return np.concatenate([pixels.mean(axis=1), pixels.std(axis=1)], axis=1)


# -- features and the cache ----------------------------------------------------------------


def test_features_are_written_reread_and_reused(slide, grid, tmp_path):
    spy = SpyExtractor()
    reports: list[tuple[int, int]] = []
    bag = extract_slide_features(
        slide,
        grid,
        spy,
        cache_dir=tmp_path,
        batch_size=16,
        progress=lambda d, t: reports.append((d, t)),
    )
    assert spy.tiles == grid.n_tiles and spy.calls == -(-grid.n_tiles // 16)
    assert bag.features.shape == (grid.n_tiles, 6) and bag.features.dtype == np.float32
    np.testing.assert_array_equal(bag.coords, grid.coords)
    expected = np.stack([SpyExtractor().embed(read_tile(slide, grid, i)[None])[0] for i in (0, 9)])
    np.testing.assert_allclose(bag.features[[0, 9]], expected, rtol=1e-6)
    assert reports[0] == (0, grid.n_tiles) and reports[-1] == (grid.n_tiles, grid.n_tiles)
    assert [d for d, _ in reports] == sorted(d for d, _ in reports)

    path = feature_cache_path(tmp_path, slide)
    assert path == tmp_path / "case-01.h5" and path.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case-01.h5"]
    stored = read_features(path)
    np.testing.assert_array_equal(stored.features, bag.features)
    np.testing.assert_array_equal(stored.coords, grid.coords)
    assert stored.attrs["slide_quick_hash"] == slide.quick_hash()
    assert stored.attrs["tiling_sha256"] == grid.tiling_sha256
    assert stored.attrs["extractor"] == "spy" and stored.attrs["tile_px"] == 64

    again = SpyExtractor()
    reused = extract_slide_features(slide, grid, again, cache_dir=tmp_path, progress=False)
    assert again.calls == 0
    np.testing.assert_array_equal(reused.features, bag.features)


@pytest.mark.parametrize(
    "change", ["extractor", "weights", "target_mpp", "tile_px", "tiling", "slide"]
)
def test_cache_is_invalidated_when_a_key_changes(slide, grid, tmp_path, change):
    extract_slide_features(slide, grid, SpyExtractor(), cache_dir=tmp_path, progress=False)
    before = read_features(feature_cache_path(tmp_path, slide)).attrs
    spy, used_slide, used_grid = SpyExtractor(), slide, grid
    tissue = detect_tissue(slide)
    if change == "extractor":
        spy = SpyExtractor(name="other")
    elif change == "weights":
        spy = SpyExtractor(weights_sha256="b" * 64)
    elif change == "target_mpp":
        used_grid = make_tile_grid(slide, tissue, target_mpp=1.0, tile_px=32)
    elif change == "tile_px":
        used_grid = make_tile_grid(slide, tissue, target_mpp=0.5, tile_px=96)
    elif change == "tiling":
        used_grid = make_tile_grid(slide, tissue, target_mpp=0.5, tile_px=64, overlap_px=16)
    else:  # same name, size, MPP and tiling; other pixels
        (tmp_path / "other").mkdir()
        other = _write(tmp_path / "other" / "case-01.tiff", seed=4)
        used_slide = open_slide(other)
    try:
        extract_slide_features(used_slide, used_grid, spy, cache_dir=tmp_path, progress=False)
    finally:
        if used_slide is not slide:
            used_slide.close()
    assert spy.calls > 0
    after = read_features(feature_cache_path(tmp_path, slide)).attrs
    assert after != before


def test_cancel_leaves_no_file(slide, grid, tmp_path):
    cancel = threading.Event()
    cancel.set()
    spy = SpyExtractor()
    with pytest.raises(ExtractionCancelled, match=r"case-01\.tiff.*0 of"):
        extract_slide_features(slide, grid, spy, cache_dir=tmp_path, cancel=cancel, progress=False)
    assert spy.calls == 0

    cancel.clear()

    def cancel_after_first_batch(done: int, total: int) -> None:
        if done > 0:
            cancel.set()

    with pytest.raises(ExtractionCancelled, match="no feature file was written"):
        extract_slide_features(
            slide,
            grid,
            SpyExtractor(),
            cache_dir=tmp_path,
            batch_size=8,
            cancel=cancel,
            progress=cancel_after_first_batch,
        )
    assert list(tmp_path.iterdir()) == []
    assert_no_decode_processes()


def test_cache_file_without_coords_is_reported(slide, grid, tmp_path):
    attrs = feature_attrs(slide, grid, SpyExtractor())
    path = feature_cache_path(tmp_path, slide)
    with h5py.File(path, "w") as h5:
        h5.create_dataset("features", data=np.zeros((grid.n_tiles, 6), np.float32))
        for key, value in attrs.items():
            h5.attrs[key] = value if value is not None else "null"
    with pytest.raises(FeatureCacheError, match="no 'coords' dataset"):
        extract_slide_features(slide, grid, SpyExtractor(), cache_dir=tmp_path, progress=False)


def test_no_cache_dir_no_tissue_and_no_mpp(slide, grid, small_levels_tiff, tmp_path):
    spy = SpyExtractor()
    bag = extract_slide_features(slide, grid, spy, cache_dir=None, progress=True, decode_workers=0)
    assert spy.tiles == grid.n_tiles and bag.attrs["n_tiles"] == grid.n_tiles

    tissue = detect_tissue(slide)
    empty = make_tile_grid(slide, tissue, min_tissue_fraction=1.01)
    with pytest.raises(NoTissueError, match=r"case-01\.tiff"):
        extract_slide_features(slide, empty, spy, cache_dir=tmp_path, progress=False)

    copy = shutil.copy(small_levels_tiff, tmp_path / "levels.tiff")
    with open_slide(copy, mpp=0.5) as known:
        tiny_grid = make_tile_grid(
            known, detect_tissue(known, min_tissue_area_um2=0), min_tissue_fraction=0.0
        )
    with open_slide(copy) as unknown, pytest.raises(SlideMPPError, match="--mpp"):
        extract_slide_features(unknown, tiny_grid, spy, cache_dir=tmp_path, progress=False)
    assert not any(tmp_path.glob("*.h5"))


def test_builtin_extractor_end_to_end(slide, grid, tmp_path):
    extractors = pytest.importorskip("napari_imilia.features.extractors")
    extractor = extractors.create_extractor("imilia-stain-stats", device="cpu")
    first = slice(0, 12)
    some = grid.take(first)
    bag = extract_slide_features(slide, some, extractor, cache_dir=tmp_path, progress=False)
    assert bag.features.shape == (12, extractor.dim)
    assert np.isfinite(bag.features).all()
    assert bag.attrs["extractor_weights_sha256"] == extractor.weights_sha256
    again = extract_slide_features(slide, some, extractor, cache_dir=tmp_path, progress=False)
    np.testing.assert_array_equal(again.features, bag.features)
