"""napari with a real Qt window: slides opened through our reader render (``gui``: needs a
display, so CI runs under xvfb-run), and ``imilia demo`` writes a view without a display."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import NEEDS_XVFB
from napari_imilia._napari import display as _viewer_launch


def _assert_not_blank(image: np.ndarray) -> None:
    """An RGB(A) screenshot with real content: many colours, not one flat fill."""
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    rgb = image[..., :3].reshape(-1, 3)
    assert (rgb.max(axis=0) - rgb.min(axis=0)).max() > 100
    assert len(np.unique(rgb[:: max(1, len(rgb) // 20000)], axis=0)) > 50


@pytest.mark.gui
def test_svs_opens_in_napari_as_a_scaled_multiscale_layer(make_napari_viewer_proxy, small_svs):
    viewer = make_napari_viewer_proxy(show=True)
    layers = viewer.open(str(small_svs), plugin="napari-imilia")
    assert len(layers) == 1 and len(viewer.layers) == 1
    layer = viewer.layers[0]
    assert layer.multiscale and layer.rgb and len(layer.data) == 2
    assert tuple(layer.scale) == pytest.approx((0.499, 0.499))
    assert tuple(str(unit) for unit in layer.units) == ("micrometer", "micrometer")
    assert layer.metadata["imilia_slide"]["objective_power"] == 20
    viewer.reset_view()
    screenshot = viewer.screenshot(canvas_only=True, flash=False)
    _assert_not_blank(screenshot)
    # tissue is pink/purple: somewhere red and blue clearly exceed green
    rgb = screenshot[..., :3].astype(int)
    assert ((rgb[..., 0] - rgb[..., 1] > 40) & (rgb[..., 2] - rgb[..., 1] > 20)).mean() > 0.01


@pytest.mark.gui
def test_sample_slide_opens_in_napari(make_napari_viewer_proxy, sample_slide):
    viewer = make_napari_viewer_proxy(show=True)
    viewer.open(str(sample_slide), plugin="napari-imilia")
    layer = viewer.layers[0]
    assert layer.multiscale and layer.rgb
    assert tuple(layer.scale) == pytest.approx((0.5, 0.5))
    viewer.reset_view()
    _assert_not_blank(viewer.screenshot(canvas_only=False, flash=False))


@pytest.mark.skipif(shutil.which("Xvfb") is None, reason=NEEDS_XVFB)
def test_private_xvfb_sets_a_display_and_stops(monkeypatch):
    monkeypatch.setenv("DISPLAY", ":4242")
    with _viewer_launch.private_xvfb() as display:
        assert display.startswith(":") and display != ":4242"
        socket = Path(f"/tmp/.X11-unix/X{display[1:]}")
        assert socket.exists()
    assert _viewer_launch.os.environ["DISPLAY"] == ":4242"


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("Xvfb") is None, reason=NEEDS_XVFB)
def test_demo_without_viewer_writes_a_napari_screenshot(tmp_path, monkeypatch, small_svs, capsys):
    from PIL import Image

    from napari_imilia.cli import main
    from napari_imilia.demo import sample

    monkeypatch.setattr(sample, "sample_slide_path", lambda *args, **kwargs: small_svs)
    shot = tmp_path / "view.png"
    status = main(
        ["demo", "--no-viewer", "--out", str(tmp_path / "out"), "--screenshot", str(shot)]
    )
    output = capsys.readouterr().out
    assert status == 0, output
    assert "private Xvfb" in output
    assert "DEMO model" in output
    out = tmp_path / "out"
    assert (out / "slide_summary.json").is_file() and (out / "demo_summary.json").is_file()
    slide_dir = out / "small_HE"
    products = ("tiles.csv", "heatmap.png", "cells.geojson", "epithelium.geojson", "top_tiles.png")
    for name in products:
        assert (slide_dir / name).is_file(), name
    assert any((slide_dir / "masks").glob("*_cells.tif"))
    with Image.open(shot) as image:
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.shape[0] > 600 and pixels.shape[1] > 800  # whole window, not a thumbnail
    _assert_not_blank(pixels)


def test_render_view_falls_back_to_a_thumbnail(tmp_path, monkeypatch, small_svs):
    monkeypatch.setattr(_viewer_launch.shutil, "which", lambda name: None)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    rendered = _viewer_launch.render_view(small_svs, tmp_path / "thumb.png")
    assert rendered.mode == "thumbnail"
    assert "Xvfb is not installed" in rendered.note and "no display" in rendered.note
    from PIL import Image

    with Image.open(rendered.path) as image:
        assert max(image.size) == 1024


@pytest.mark.gui
def test_screenshot_view_fits_the_whole_slide_beside_the_review_docks(
    make_napari_viewer, tmp_path, monkeypatch, sample_slide
):
    """The camera is fitted after the window is resized and laid out, so no tissue is cut."""
    import napari

    from napari_imilia._napari.compat import canvas_size_px, viewer_camera

    seen: dict[str, object] = {}

    def record(viewer, *args, **kwargs):
        layer = viewer.layers[0]
        seen["extent_um"] = np.ptp(np.asarray(layer.extent.world)[:, -2:], axis=0)
        seen["canvas_px"] = np.array(canvas_size_px(viewer), dtype=float)
        seen["zoom"] = float(viewer_camera(viewer).zoom)

    monkeypatch.setattr(napari.Viewer, "screenshot", record)
    # a viewer from napari's fixture: plugin registries are isolated and restored after
    monkeypatch.setattr(napari, "Viewer", lambda **kwargs: make_napari_viewer(**kwargs))
    _viewer_launch.screenshot_view(sample_slide, tmp_path / "view.png", results_root=tmp_path)
    shown_px = seen["extent_um"] * seen["zoom"]
    assert np.all(shown_px <= seen["canvas_px"] + 2)
    assert np.any(shown_px >= 0.8 * seen["canvas_px"])  # fitted, not merely zoomed out
