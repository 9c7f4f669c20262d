"""IMILIA's DeepZoom tiles against openslide's own DeepZoomGenerator (test-only dependency)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import NEEDS_SLIDES, TEST_DATA
from napari_imilia.errors import ImiliaError
from napari_imilia.slide import open_slide
from napari_imilia.tiling.deepzoom import (
    DeepZoomGeometry,
    deepzoom_grid,
    load_tiles_coords,
)

openslide = pytest.importorskip("openslide")
from openslide.deepzoom import DeepZoomGenerator  # noqa: E402
from PIL import Image  # noqa: E402

SMALL_HE = TEST_DATA / "small_HE.svs"


def _pattern(shape_hw: tuple[int, int], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0 : shape_hw[0], 0 : shape_hw[1]]
    image = np.stack([(xs * 3) % 256, (ys * 5) % 256, (xs + ys) % 256], axis=-1)
    image = image + rng.integers(0, 20, image.shape)
    image[200:700, 300:1100] = (190, 110, 170)  # "tissue"
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def pyramid(tmp_path_factory) -> Path:
    """A 3-level tiled TIFF (1500 x 1000 px at 0.25 µm/px, then /2, /4), zlib: lossless, so
    openslide and tiffslide read the same pixels."""
    import tifffile

    path = tmp_path_factory.mktemp("dz") / "pyramid.tiff"
    level0 = _pattern((1000, 1500))
    levels = [level0, level0[::2, ::2].copy(), level0[::4, ::4].copy()]
    resolution = {"resolution": (1e4 / 0.25, 1e4 / 0.25), "resolutionunit": "CENTIMETER"}
    with tifffile.TiffWriter(path) as tif:
        for k, level in enumerate(levels):
            tif.write(
                level,
                tile=(128, 128),
                photometric="rgb",
                compression="zlib",
                subfiletype=0 if k == 0 else 1,
                **resolution,
            )
    return path


def _slides(pyramid: Path) -> list[Path]:
    return [p for p in (pyramid, SMALL_HE) if p.is_file()]


def test_geometry_is_openslides(pyramid):
    for path in _slides(pyramid):
        reference = DeepZoomGenerator(openslide.OpenSlide(str(path)), tile_size=224, overlap=0)
        with open_slide(path) as slide:
            geometry = DeepZoomGeometry.for_slide(slide)
        assert geometry.level_count == reference.level_count
        assert geometry.dz_dimensions == reference.level_dimensions
        for level in range(reference.level_count):
            assert geometry.level_tiles(level) == reference.level_tiles[level]
        for level in range(max(0, reference.level_count - 4), reference.level_count):
            cols, rows = reference.level_tiles[level]
            for col in range(cols):
                for row in range(rows):
                    (x, y), slide_level, (w, h) = reference.get_tile_coordinates(level, (col, row))
                    assert geometry.tile(level, col, row) == (x, y, slide_level, w, h)


def test_pixels_are_deepzooms_including_edge_tiles(pyramid):
    checked = 0
    for path, tolerance in ((pyramid, 0), (SMALL_HE, 2)):
        if not path.is_file():
            continue
        osr = openslide.OpenSlide(str(path))
        reference = DeepZoomGenerator(osr, tile_size=224, overlap=0)
        levels = range(reference.level_count - 3, reference.level_count)
        with open_slide(path) as slide:
            for dz_level in levels:
                cols, rows = reference.level_tiles[dz_level]
                coords = np.array([(dz_level, c, r) for c in range(cols) for r in range(rows)])
                grid = deepzoom_grid(slide, coords=coords)
                reader = grid.reader(slide)
                edge_seen, compared = False, 0
                for index, (_, col, row) in enumerate(coords):
                    region = reader.region(index)
                    expected = np.asarray(reference.get_tile(dz_level, (int(col), int(row))))
                    if region.shape != expected.shape:  # DeepZoom resized it (LANCZOS)
                        continue
                    edge_seen |= region.shape[0] < 224 or region.shape[1] < 224
                    compared += 1
                    diff = np.abs(region.astype(int) - expected.astype(int)).max()
                    assert diff <= tolerance, (path.name, dz_level, col, row, diff)
                    # IMILIA: read_region at DeepZoom's level and size, resized to 224 px
                    args = reference.get_tile_coordinates(dz_level, (int(col), int(row)))
                    imilia = osr.read_region(*args).convert("RGB").resize((224, 224))
                    ours = reader(index)
                    assert ours.shape == (224, 224, 3)
                    assert np.abs(ours.astype(int) - np.asarray(imilia, int)).max() <= max(
                        tolerance, 1
                    )
                assert edge_seen or compared == 0  # DeepZoom resizes every tile here
                checked += compared
        osr.close()
    assert checked >= 35 + 6 + 4  # the pyramid's three levels at least


def test_tiles_csv_holds_deepzooms_level0_boxes(pyramid):
    osr = openslide.OpenSlide(str(pyramid))
    reference = DeepZoomGenerator(osr, tile_size=224, overlap=0)
    level = reference.level_count - 2  # 0.5 µm/px, read from the /2 level
    cols, rows = reference.level_tiles[level]
    coords = np.array([(level, c, r) for r in range(rows) for c in range(cols)])
    with open_slide(pyramid) as slide:
        grid = deepzoom_grid(slide, coords=coords)
    frame = grid.to_frame()
    assert grid.target_mpp == pytest.approx(0.5)
    assert (frame["dz_col"].tolist(), frame["dz_row"].tolist()) == (
        coords[:, 1].tolist(),
        coords[:, 2].tolist(),
    )
    for (_, col, row), record in zip(coords, frame.itertuples(), strict=True):
        (x, y), _, _ = reference.get_tile_coordinates(level, (int(col), int(row)))
        assert (record.x, record.y) == (x, y)
        assert record.width == min(448, 1500 - x) and record.height == min(448, 1000 - y)
    assert len(set(grid.tiling_sha256 for _ in range(2))) == 1


def test_tissue_filtered_grid_and_coords_files(pyramid, tmp_path):
    from napari_imilia.tiling.tissue import detect_tissue

    with open_slide(pyramid) as slide:
        tissue = detect_tissue(slide)
        grid = deepzoom_grid(slide, tissue_mask=tissue, target_mpp=0.5, min_tissue_fraction=0.5)
        every = deepzoom_grid(slide, tissue_mask=tissue, target_mpp=0.5, min_tissue_fraction=0.0)
        assert 0 < grid.n_tiles < every.n_tiles == 4 * 3  # 750 x 500 px at 0.5 µm/px
        assert (grid.tissue_fraction >= 0.5).all() and grid.dz_level == every.dz_level
        path = tmp_path / "tiles_coords.npy"
        np.save(path, np.stack([np.full(grid.n_tiles, grid.dz_level), grid.col, grid.row], 1))
        again = deepzoom_grid(slide, coords=load_tiles_coords(path))
        assert np.array_equal(again.coords, grid.coords)
        bad = tmp_path / "bad.npy"
        np.save(bad, np.zeros((4, 2)))
        with pytest.raises(ImiliaError, match=r"\(n_tiles, 3\)"):
            load_tiles_coords(bad)
        with pytest.raises(ImiliaError, match="cannot read"):
            load_tiles_coords(tmp_path / "missing.npy")
        with pytest.raises(ImiliaError, match="outside level"):
            deepzoom_grid(slide, coords=np.array([[grid.dz_level, 99, 0]]))
    assert Image is not None


def test_predict_with_imilias_tiles_and_protocol(tmp_path, capsys):
    import json

    import h5py
    import pandas as pd

    from napari_imilia.cli import main
    from napari_imilia.mil import load_model
    from support.models import small_model

    if not SMALL_HE.is_file():
        pytest.skip(NEEDS_SLIDES)
    reference = DeepZoomGenerator(openslide.OpenSlide(str(SMALL_HE)), tile_size=224, overlap=0)
    level = reference.level_count - 1  # 0.499 µm/px: the full-resolution level
    coords = np.array([(level, c, r) for c, r in [(0, 0), (3, 5), (9, 13), (9, 2), (4, 13)]])
    npy = tmp_path / "tiles_coords.npy"
    np.save(npy, coords)
    model = small_model(tmp_path)
    out = tmp_path / "out"
    args = ["predict", str(SMALL_HE), "--out", str(out), "--model", str(model)]
    assert main([*args, "--tiles-from", str(npy)]) == 0
    tiles = pd.read_csv(out / "small_HE" / "tiles.csv")
    assert len(tiles) == len(coords)
    for (_, col, row), record in zip(coords, tiles.itertuples(), strict=True):
        (x, y), _, (w, h) = reference.get_tile_coordinates(level, (int(col), int(row)))
        assert (record.x, record.y, record.width, record.height) == (x, y, w, h)
    assert tiles["width"].tolist()[2:4] == [2220 - 9 * 224] * 2  # edge tiles: 204 px
    info = json.loads((out / "small_HE" / "slide.json").read_text())
    assert info["tiling"] == "deepzoom" and info["protocol"] is None

    padded = tmp_path / "padded"
    padded_args = ["predict", str(SMALL_HE), "--out", str(padded), "--model", str(model)]
    assert main([*padded_args, "--tiles-from", str(npy), "--protocol", "imilia"]) == 0
    info = json.loads((padded / "small_HE" / "slide.json").read_text())
    assert info["protocol"] == "imilia"
    with h5py.File(padded / "features" / "small_HE.h5") as handle:
        features = np.asarray(handle["features"])
    loaded = load_model(model, device="cpu")
    expected = loaded.predict(features, pad_to_tiles=10_000).probability
    assert info["score"] == pytest.approx(float(expected), abs=1e-6)
    assert info["score"] != pytest.approx(float(loaded.predict(features).probability), abs=1e-6)

    capsys.readouterr()
    two = ["predict", str(SMALL_HE), str(SMALL_HE), "--out", str(out), "--tiles-from", str(npy)]
    assert main(two) == 2
    assert "exactly one slide" in capsys.readouterr().err
