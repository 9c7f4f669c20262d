"""The npe2 reader and sample data, headless: layer data, declining bad files, notifications."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dask.array as da
import npe2
import numpy as np
import pytest

from napari_imilia._napari.reader import (
    SLIDE_OBJECT_KEY,
    napari_get_reader,
    read_slides,
    slide_from_metadata,
)
from napari_imilia.slide import Slide

PLUGIN = "napari-imilia"


@pytest.fixture
def notifications() -> list[tuple[str, str]]:
    """(severity, message) of every napari notification shown during the test."""
    from napari.utils.notifications import notification_manager

    shown: list[tuple[str, str]] = []

    def record(notification) -> None:
        shown.append((str(notification.severity), str(notification.message)))

    notification_manager.notification_ready.connect(record)
    yield shown
    notification_manager.notification_ready.disconnect(record)


def _read_with_npe2(path: Path) -> list[tuple]:
    """Read like napari does: installed plugins discovered, then only our reader tried."""
    npe2.PluginManager.instance().discover()
    return npe2.read([str(path)], stack=False, plugin_name=PLUGIN)


def test_manifest_is_valid_and_declares_reader_and_sample():
    manifest = npe2.PluginManifest.from_distribution(PLUGIN)
    reader = manifest.contributions.readers[0]
    assert {"*.svs", "*.tif", "*.tiff", "*.ndpi", "*.ome.tiff"} <= set(reader.filename_patterns)
    assert reader.accepts_directories is True  # DICOM WSI folders
    assert {"*.dcm", "*.mrxs", "*.vms", "*.vmu", "*.svslide"} <= set(reader.filename_patterns)
    sample = manifest.contributions.sample_data[0]
    assert sample.key == "imilia_sample"
    assert sample.display_name == "Synthetic IBD H&E slide (napari-imilia)"
    result = subprocess.run(
        [sys.executable, "-m", "npe2", "validate", PLUGIN], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_svs_through_npe2_is_one_lazy_multiscale_layer_in_micrometres(small_svs, notifications):
    layers = _read_with_npe2(small_svs)
    assert len(layers) == 1
    data, kwargs, layer_type = layers[0]
    assert layer_type == "image"
    assert isinstance(data, list) and all(isinstance(level, da.Array) for level in data)
    assert [level.shape for level in data] == [(2967, 2220, 3), (1483, 1110, 3)]
    assert kwargs["multiscale"] is True and kwargs["rgb"] is True
    assert kwargs["contrast_limits"] == (0, 255)
    assert kwargs["scale"] == pytest.approx((0.499, 0.499))
    assert kwargs["units"] == ("µm", "µm")
    assert kwargs["name"] == "small_HE"
    metadata = kwargs["metadata"]
    assert metadata["imilia_slide"]["mpp"] == pytest.approx(0.499)
    assert metadata["imilia_slide"]["level_dimensions_px"] == [[2220, 2967], [1110, 1483]]
    assert Path(metadata["slide_path"]) == small_svs.resolve()
    assert metadata["slide_properties"]["aperio.AppMag"] == 20
    assert notifications == []


def test_layer_keeps_the_slide_open(small_svs):
    _, kwargs, _ = read_slides(str(small_svs))[0]
    slide = slide_from_metadata(kwargs["metadata"])
    assert isinstance(slide, Slide) and kwargs["metadata"][SLIDE_OBJECT_KEY] is slide
    region = slide.read_region((100, 100), 0, (16, 16))
    assert region.shape == (16, 16, 3)
    np.testing.assert_array_equal(region, slide.levels[0][100:116, 100:116].compute())


def test_layer_data_builds_a_napari_image_layer(small_levels_tiff):
    from napari.layers import Image

    data, kwargs, _ = read_slides([str(small_levels_tiff)])[0]
    layer = Image(data, **kwargs)
    assert layer.multiscale and layer.rgb
    assert len(layer.data) == 4
    assert tuple(str(unit) for unit in layer.units) == ("pixel", "pixel")


def test_missing_mpp_gives_pixel_scale_and_a_warning(small_levels_tiff, notifications):
    _, kwargs, _ = _read_with_npe2(small_levels_tiff)[0]
    assert kwargs["scale"] == (1.0, 1.0)
    assert kwargs["units"] == ("pixel", "pixel")
    assert kwargs["metadata"]["imilia_slide"]["mpp"] is None
    assert len(notifications) == 1
    severity, message = notifications[0]
    assert severity == "warning" and "352" in message and "distances are in pixels" in message


def test_reader_declines_what_it_cannot_read(tmp_path, small_svs, notifications):
    folder = tmp_path / "folder.svs"
    folder.mkdir()
    png = tmp_path / "picture.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n")
    assert napari_get_reader(str(tmp_path / "missing.svs")) is None
    assert napari_get_reader(str(folder)) is None
    assert napari_get_reader(str(png)) is None
    assert napari_get_reader(str(small_svs.parent)) is None
    assert napari_get_reader([str(small_svs), str(png)]) is None
    assert notifications == []  # none of those was ours and bad
    assert napari_get_reader(str(small_svs)) is read_slides


@pytest.mark.parametrize(
    ("name", "content", "severity", "message"),
    [
        ("notes.svs", b"not a slide", "error", "not a whole-slide image"),
        ("empty.ndpi", b"", "error", "empty"),
        ("broken.tif", b"II*\x00garbage", "warning", "other readers"),
    ],
)
def test_bad_file_with_our_extension_is_declined_with_a_notification(
    tmp_path, notifications, name, content, severity, message
):
    path = tmp_path / name
    path.write_bytes(content)
    assert napari_get_reader(str(path)) is None
    assert len(notifications) == 1
    assert notifications[0][0] == severity
    assert message in notifications[0][1] and name in notifications[0][1]
    with pytest.raises(ValueError):
        _read_with_npe2(path)


def test_truncated_tiff_is_declined(tmp_path, tiled_tiff, notifications):
    cut = tmp_path / "cut.tiff"
    data = tiled_tiff.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    assert napari_get_reader(str(cut)) is None
    assert "truncated" in notifications[0][1]


def test_upper_case_extension_and_ome_tiff_are_accepted(tmp_path, tiled_tiff):
    for name in ("UPPER.TIFF", "image.ome.tif"):
        path = tmp_path / name
        path.write_bytes(tiled_tiff.read_bytes())
        data, kwargs, _ = _read_with_npe2(path)[0]
        assert kwargs["scale"] == pytest.approx((0.5, 0.5))
        assert data[0].shape == (600, 800, 3)
    assert kwargs["name"] == "image"


def test_sample_data_function_returns_the_sample_slide_layer(sample_slide, monkeypatch):
    from napari_imilia._napari import sample_data as _sample_data
    from napari_imilia.demo import sample

    monkeypatch.setattr(sample, "sample_slide_path", lambda *args, **kwargs: sample_slide)
    manifest = npe2.PluginManifest.from_distribution(PLUGIN)
    contribution = manifest.contributions.sample_data[0]
    assert contribution.command == "napari-imilia.sample_slide"
    layers = _sample_data.sample_slide()
    assert len(layers) == 1
    data, kwargs, layer_type = layers[0]
    assert layer_type == "image" and kwargs["multiscale"] and kwargs["rgb"]
    assert kwargs["scale"] == pytest.approx((0.5, 0.5))
    assert kwargs["metadata"]["imilia_slide"]["objective_power"] == 20
    assert Path(kwargs["metadata"]["slide_path"]) == sample_slide.resolve()
    assert all(isinstance(level, da.Array) for level in data)
