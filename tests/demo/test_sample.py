"""The sample slide and synthetic SVS files: what tiffslide reads, determinism, the cache."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import tiffslide

from napari_imilia.demo.sample import (
    default_cache_dir,
    read_truth,
    sample_slide_path,
    slide_scene,
    truth_path,
    write_synthetic_slide,
)
from napari_imilia.demo.synthetic.raster import rasterise
from napari_imilia.errors import ImiliaError
from napari_imilia.files import sha256_file
from napari_imilia.interpret.cells.types import IMMUNE_CLASSES

SMALL = {"width_px": 640, "height_px": 512, "seed": 3}


def _read(slide: tiffslide.TiffSlide, level: int, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(slide.read_region((0, 0), level, size).convert("RGB"))


def test_sample_slide_opens_with_mpp_objective_and_pyramid(sample_slide):
    with tiffslide.TiffSlide(sample_slide) as slide:
        props = slide.properties
        assert props["tiffslide.vendor"] == "aperio"
        assert props["tiffslide.mpp-x"] == pytest.approx(0.5)
        assert props["tiffslide.mpp-y"] == pytest.approx(0.5)
        assert float(props["tiffslide.objective-power"]) == 20
        assert slide.level_dimensions == ((6144, 4096), (1536, 1024), (384, 256))
        assert slide.level_downsamples == pytest.approx((1.0, 4.0, 16.0))
        assert slide.properties["tiffslide.level[0].tile-width"] == 256
        assert "thumbnail" in slide.associated_images
        overview = _read(slide, 2, (384, 256))
    tissue = overview.mean(axis=2) < 215
    assert 0.3 < tissue.mean() < 0.8  # two biopsy pieces on glass
    assert tissue[:, :192].any() and tissue[:, 192:].any()
    truth = read_truth(sample_slide)
    assert truth["inflamed"] and len(truth["inflamed_regions_level0_px"]) == 3
    assert truth["sha256"] == sha256_file(sample_slide)
    for x, y, w, h in truth["inflamed_regions_level0_px"]:
        assert 0 <= x <= x + w <= 6144 and 0 <= y <= y + h <= 4096


def test_level0_equals_the_scene_and_levels_are_block_means(tmp_path):
    path = write_synthetic_slide(
        tmp_path / "lossless.svs",
        **SMALL,
        inflamed_regions="random",
        levels=(1, 2, 4),
        compression="zlib",
    )
    scene = slide_scene(640, 512, 0.5, 3, inflamed_regions="random")
    expected = rasterise(scene, 0, 0, 640, 512).rgb
    with tiffslide.TiffSlide(path) as slide:
        assert slide.level_dimensions == ((640, 512), (320, 256), (160, 128))
        np.testing.assert_array_equal(_read(slide, 0, (640, 512)), expected)
        window = np.asarray(slide.read_region((300, 200), 0, (97, 61)).convert("RGB"))
        np.testing.assert_array_equal(window, expected[200:261, 300:397])
        halved = expected.astype(np.float32).reshape(256, 2, 320, 2, 3).mean(axis=(1, 3))
        np.testing.assert_array_equal(_read(slide, 1, (320, 256)), np.rint(halved))


def test_jpeg_tiles_stay_close_to_the_drawn_pixels(tmp_path):
    path = write_synthetic_slide(tmp_path / "jpeg.svs", **SMALL)
    expected = rasterise(slide_scene(640, 512, 0.5, 3), 0, 0, 640, 512).rgb.astype(int)
    with tiffslide.TiffSlide(path) as slide:
        assert "JPEG" in slide.properties["tiffslide.comment"]
        error = np.abs(_read(slide, 0, (640, 512)).astype(int) - expected)
    assert error.mean() < 4


def test_same_arguments_give_byte_identical_files(tmp_path):
    first = write_synthetic_slide(tmp_path / "a" / "s.svs", **SMALL, inflamed_regions="random")
    again = write_synthetic_slide(tmp_path / "b" / "s.svs", **SMALL, inflamed_regions="random")
    assert sha256_file(first) == sha256_file(again)
    assert truth_path(first).read_bytes() == truth_path(again).read_bytes()
    other = write_synthetic_slide(tmp_path / "c" / "s.svs", **{**SMALL, "seed": 4})
    assert sha256_file(other) != sha256_file(first)


def test_truth_records_planted_inflammation(tmp_path):
    boxes = [(320.0, 0.0, 320.0, 512.0)]
    inflamed = write_synthetic_slide(tmp_path / "i.svs", **SMALL, inflamed_regions=boxes)
    normal = write_synthetic_slide(tmp_path / "n.svs", **SMALL)
    truth, plain = read_truth(inflamed), read_truth(normal)
    assert truth["inflamed"] is True and truth["inflamed_regions_level0_px"] == [list(boxes[0])]
    assert plain["inflamed"] is False and plain["inflamed_regions_level0_px"] == []
    assert (truth["mpp"], truth["width_px"], truth["height_px"]) == (0.5, 640, 512)
    in_box = sum(truth["cell_counts_in_inflamed_regions"][n] for n in IMMUNE_CLASSES)
    total = sum(truth["cell_counts"][n] for n in IMMUNE_CLASSES)
    assert in_box > 0.6 * total  # the right half holds most immune cells
    assert plain["cell_counts"]["Neutrophils"] == 0 < truth["cell_counts"]["Neutrophils"]


def test_cache_is_reused_and_regenerated_when_broken(tmp_path):
    size = {"size_px": (768, 512)}
    path = sample_slide_path(tmp_path, **size)
    assert path.parent == tmp_path and path.suffix == ".svs"
    digest, stamp = sha256_file(path), path.stat().st_mtime_ns
    assert sample_slide_path(tmp_path, **size) == path
    assert path.stat().st_mtime_ns == stamp

    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # an interrupted copy
    assert sample_slide_path(tmp_path, **size) == path
    assert sha256_file(path) == digest

    truth_path(path).write_text("{not json", encoding="utf-8")
    assert sample_slide_path(tmp_path, **size) == path
    assert json.loads(truth_path(path).read_text(encoding="utf-8"))["sha256"] == digest

    normal = sample_slide_path(tmp_path, inflamed=False, **size)
    assert normal != path and not read_truth(normal)["inflamed"]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_cache_dir_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("IMILIA_CACHE_DIR", str(tmp_path / "env"))
    assert default_cache_dir() == tmp_path / "env"
    path = sample_slide_path(size_px=(512, 512))
    assert path.parent == tmp_path / "env" and path.is_file()
    monkeypatch.delenv("IMILIA_CACHE_DIR")
    if sys.platform.startswith("linux"):
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
        assert default_cache_dir() == tmp_path / "xdg" / "napari-imilia"
        monkeypatch.delenv("XDG_CACHE_HOME")
        assert default_cache_dir() == Path.home() / ".cache" / "napari-imilia"


def test_unwritable_cache_gives_an_actionable_error(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder", encoding="utf-8")
    with pytest.raises(ImiliaError, match="IMILIA_CACHE_DIR"):
        sample_slide_path(blocker / "cache", size_px=(256, 256))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"levels": (2, 4)}, "levels"),
        ({"levels": (1, 4, 4)}, "levels"),
        ({"compression": "lzw"}, "compression"),
        ({"inflamed_regions": "everywhere"}, "inflamed_regions"),
    ],
)
def test_bad_slide_arguments_raise(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        write_synthetic_slide(tmp_path / "x.svs", **SMALL, **kwargs)
    assert not (tmp_path / "x.svs").exists()
