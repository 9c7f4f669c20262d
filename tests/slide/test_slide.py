"""Slide core (no display): levels, MPP, region reads and errors, checked against tifffile and
tiffslide reading the same files."""

from __future__ import annotations

import re
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import tifffile
import tiffslide
from tifffile.tifffile import svs_description_metadata

from napari_imilia.errors import SlideError, SlideMPPError
from napari_imilia.slide import OVERVIEW_MAX_PX, open_slide

# -- real files: levels and MPP against tifffile's own reading ---------------------------


def _tifffile_level_shapes(path: Path) -> list[tuple[int, ...]]:
    with tifffile.TiffFile(path) as tif:
        return [tuple(level.shape) for level in tif.series[0].levels]


def test_svs_levels_mpp_and_objective_match_tifffile(small_svs):
    native_shapes = _tifffile_level_shapes(small_svs)
    with tifffile.TiffFile(small_svs) as tif:
        aperio = svs_description_metadata(tif.pages[0].description)
    with open_slide(small_svs) as slide:
        assert [tuple(level.shape) for level in slide.levels[: len(native_shapes)]] == (
            native_shapes
        )
        assert slide.native_level_count == len(native_shapes) == 1
        assert slide.mpp == pytest.approx(float(aperio["MPP"]))
        assert slide.mpp_source == "metadata" and slide.mpp_warning is None
        assert slide.objective_power == float(aperio["AppMag"])
        assert slide.vendor == "aperio"
        assert slide.slide_id == "small_HE"
        assert all(level.dtype == np.uint8 for level in slide.levels)


def test_svs_without_pyramid_gets_lazy_overview_levels(small_svs):
    with open_slide(small_svs) as slide:
        height, width = slide.levels[0].shape[:2]
        assert max(height, width) > OVERVIEW_MAX_PX
        assert len(slide.levels) == 2 and not slide.level_info[1].native
        assert slide.levels[1].shape == (height // 2, width // 2, 3)
        assert slide.level_downsamples == pytest.approx([1.0, width / (width // 2)])
        assert max(slide.levels[-1].shape[:2]) <= OVERVIEW_MAX_PX


def test_generic_pyramid_levels_and_downsamples_match_tifffile(small_levels_tiff):
    native_shapes = _tifffile_level_shapes(small_levels_tiff)
    with open_slide(small_levels_tiff) as slide:
        assert [tuple(level.shape) for level in slide.levels] == native_shapes
        assert all(info.native for info in slide.level_info)
        height0, width0 = native_shapes[0][:2]
        expected = [
            float(np.mean([height0 / shape[0], width0 / shape[1]])) for shape in native_shapes
        ]
        assert slide.level_downsamples == pytest.approx(expected, rel=0.02)


def test_implausible_mpp_is_refused_with_a_warning(small_levels_tiff):
    with open_slide(small_levels_tiff) as slide:
        assert slide.mpp is None
        assert slide.mpp_source == "missing"
        assert "352" in slide.mpp_warning and "small_HE_levels.tiff" in slide.mpp_warning
        with pytest.raises(SlideMPPError, match="--mpp"):
            slide.require_mpp()


def test_explicit_mpp_overrides_metadata(small_levels_tiff, small_svs):
    with open_slide(small_levels_tiff, mpp=0.25) as slide:
        assert slide.mpp == 0.25 and slide.mpp_source == "override"
        assert slide.mpp_warning is None
        assert slide.level_mpp(1) == pytest.approx(0.25 * slide.level_info[1].downsample)
    with open_slide(small_svs, mpp=0.5) as slide:
        assert slide.mpp == 0.5 and slide.mpp_source == "override"
    with pytest.raises(SlideMPPError, match="plausible"):
        open_slide(small_svs, mpp=350.0)


def test_tiff_without_mpp_opens_but_require_mpp_suggests_the_option(tiff_writer, tmp_path):
    path = tiff_writer(tmp_path / "no_mpp.tiff", (300, 400), mpp=None)
    with open_slide(path) as slide:
        assert slide.mpp is None
        assert slide.levels[0].shape == (300, 400, 3)
        with pytest.raises(SlideMPPError, match=r"no_mpp\.tiff.*--mpp"):
            slide.require_mpp()


def test_svs_associated_images(small_svs):
    with tifffile.TiffFile(small_svs) as tif:
        by_name = {series.name.lower(): series.shape for series in tif.series[1:]}
    with open_slide(small_svs) as slide:
        assert set(slide.associated_image_names) == {"thumbnail", "label", "macro"}
        for name in slide.associated_image_names:
            image = slide.associated_image(name)
            assert image.dtype == np.uint8 and image.shape == by_name[name]
        with pytest.raises(SlideError, match="no 'overview' image"):
            slide.associated_image("overview")


# -- region reads against tiffslide --------------------------------------------------------


@pytest.mark.parametrize(
    ("level", "level0_xy", "size_px"),
    [(0, (0, 0), (64, 48)), (0, (1500, 2100), (300, 200)), (0, (2219 - 31, 2966 - 17), (31, 17))],
)
def test_svs_region_equals_tiffslide(small_svs, level, level0_xy, size_px):
    reference = tiffslide.TiffSlide(small_svs)
    try:
        expected = reference.read_region(level0_xy, level, size_px, as_array=True)
    finally:
        reference.close()
    with open_slide(small_svs) as slide:
        np.testing.assert_array_equal(slide.read_region(level0_xy, level, size_px), expected)


@pytest.mark.parametrize("level", [0, 1, 2, 3])
@pytest.mark.parametrize("level0_xy", [(0, 0), (40, 52), (101, 77)])
def test_pyramid_region_equals_tiffslide_on_every_level(small_levels_tiff, level, level0_xy):
    reference = tiffslide.TiffSlide(small_levels_tiff)
    try:
        expected = reference.read_region(level0_xy, level, (20, 15), as_array=True)
    finally:
        reference.close()
    with open_slide(small_levels_tiff) as slide:
        np.testing.assert_array_equal(slide.read_region(level0_xy, level, (20, 15)), expected)


def test_region_outside_the_slide_is_white(small_levels_tiff):
    """Documented difference: tiffslide pads with black (0), we pad with white (background)."""
    reference = tiffslide.TiffSlide(small_levels_tiff)
    try:
        padded = reference.read_region((250, 200), 0, (100, 100), as_array=True)
    finally:
        reference.close()
    with open_slide(small_levels_tiff) as slide:
        region = slide.read_region((250, 200), 0, (100, 100))
        np.testing.assert_array_equal(region[:50, :50], padded[:50, :50])
        assert (region[50:] == 255).all() and (region[:, 50:] == 255).all()
        assert (padded[50:, 50:] == 0).all()
        assert (slide.read_region((-500, -500), 0, (10, 10)) == 255).all()
        with pytest.raises(SlideError, match="level 9 does not exist"):
            slide.read_region((0, 0), 9, (10, 10))


# -- lazy overview levels on a big single-level TIFF ---------------------------------------


def _stripes(ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """White with a band of non-uniform 'tissue' (values that do not average evenly)."""
    image = np.full((*ys.shape, 3), 255, np.uint8)
    band = (ys > 2000) & (ys < 4500)
    for channel in range(3):
        values = ((ys * 7 + xs * 13 + channel * 50) % 201 + 20).astype(np.uint8)
        image[..., channel] = np.where(band, values, 255)
    return image


@pytest.fixture(scope="module")
def big_tiff(tmp_path_factory, tiff_writer) -> Path:
    path = tmp_path_factory.mktemp("big") / "big_single_level.tif"
    return tiff_writer(path, (7000, 9000), tile_px=512, pattern=_stripes)


def _mean2(block: np.ndarray) -> np.ndarray:
    """2x2 mean rounded half up, as integers: the reference for a lazy level."""
    h, w = block.shape[0] // 2 * 2, block.shape[1] // 2 * 2
    sums = block[:h, :w].astype(np.int32).reshape(h // 2, 2, w // 2, 2, 3).sum(axis=(1, 3))
    return ((sums + 2) // 4).astype(np.uint8)


def test_big_single_level_tiff_opens_without_reading_pixels(big_tiff, chunk_reads):
    with open_slide(big_tiff) as slide:
        assert chunk_reads == []
        assert slide.native_level_count == 1
        assert [level.shape[:2] for level in slide.levels] == [
            (7000, 9000),
            (3500, 4500),
            (1750, 2250),
            (875, 1125),
        ]
        assert slide.level_downsamples == pytest.approx([1, 2, 4, 9000 / 1125])
        assert all(isinstance(level, da.Array) for level in slide.levels)
        slide.levels[0][2100:2110, 100:110].compute()
        assert chunk_reads, "the read counter must see real reads"


@pytest.mark.parametrize(("level", "row", "col"), [(1, 1000, 2000), (2, 600, 1), (3, 510, 700)])
def test_lazy_level_is_the_2x_mean_of_the_level_above(big_tiff, level, row, col):
    size = 40
    with open_slide(big_tiff) as slide:
        above = slide.levels[level - 1][2 * row : 2 * (row + size), 2 * col : 2 * (col + size)]
        expected = _mean2(np.asarray(above.compute()))
        actual = np.asarray(slide.levels[level][row : row + size, col : col + size].compute())
    assert len(np.unique(expected)) > 10, "the sampled block must not be uniform"
    np.testing.assert_array_equal(actual, expected)


def test_thumbnail_fits_in_max_px_and_keeps_the_aspect(big_tiff):
    with open_slide(big_tiff) as slide:
        thumbnail = slide.thumbnail(512)
    assert thumbnail.shape == (round(7000 * 512 / 9000), 512, 3) and thumbnail.dtype == np.uint8
    band = slice(round(2000 * 512 / 9000) + 2, round(4500 * 512 / 9000) - 2)
    assert (thumbnail[:100] == 255).all() and (thumbnail[band] < 255).all(axis=2).any(axis=1).all()


# -- inputs that are not slides ---------------------------------------------------------------


def _png(path: Path) -> Path:
    from PIL import Image

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path)
    return path


def _truncated(path: Path, source: Path) -> Path:
    data = source.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize(
    ("make", "name", "message"),
    [
        (lambda p, src: p, "missing.svs", "not found"),
        (lambda p, src: p.mkdir() or p, "folder.svs", "is a folder"),
        (lambda p, src: _png(p), "picture.png", "not a whole-slide image"),
        (lambda p, src: p.write_text("hello") and p, "notes.txt", "not a whole-slide image"),
        (lambda p, src: p.write_text("not a slide") and p, "renamed.svs", "not a whole-slide"),
        (lambda p, src: p.touch() or p, "empty.svs", "empty"),
        (lambda p, src: _truncated(p, src), "cut.tiff", "truncated"),
    ],
    ids=["missing", "folder", "png", "text", "text-as-svs", "empty", "truncated"],
)
def test_bad_inputs_raise_slide_error_naming_the_file(tmp_path, tiled_tiff, make, name, message):
    path = make(tmp_path / name, tiled_tiff)
    with pytest.raises(SlideError, match=message) as raised:
        open_slide(path)
    assert name in str(raised.value)
    assert not isinstance(raised.value, SlideMPPError)


def test_valid_source_of_the_truncated_case_opens(tiled_tiff):
    """The truncated case fails because of the cut, not because the source is unreadable."""
    with open_slide(tiled_tiff) as slide:
        assert slide.mpp == pytest.approx(0.5)
        region = slide.read_region((200, 100), 0, (300, 200))
        assert (region == (200, 100, 150)).all()


def test_summary_and_quick_hash(small_svs, tiled_tiff):
    with open_slide(small_svs) as slide:
        summary = slide.summary()
        first_hash = slide.quick_hash()
    assert summary["dimensions_px"] == [2220, 2967]
    assert summary["associated_images"] == ["thumbnail", "label", "macro"]
    assert re.fullmatch(r"[0-9a-f]{64}", first_hash)
    with open_slide(small_svs) as slide:
        assert slide.quick_hash() == first_hash
    with open_slide(tiled_tiff) as slide:
        assert slide.quick_hash() != first_hash
