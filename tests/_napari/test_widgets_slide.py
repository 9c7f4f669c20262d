"""Slide and model, Heatmap and Top tiles docks driven through the npe2 manifest (``gui``).

A real ABMIL head on the builtin extractor scores the small real SVS in the panel's worker
thread; the heatmap must sit on the tile grid, top tiles must move the camera, canvas
clicks must select tiles, cached results must reload without running, cancel must leave no
file and an incompatible model must give a notification.
"""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from test_widgets_slide_core import EXTRACTOR, small_model

from napari_imilia._napari.clicks import tile_click_callback
from napari_imilia._napari.compat import viewer_camera
from napari_imilia._napari.roles import SELECTION_ROLE
from napari_imilia._napari.state import viewer_state
from napari_imilia.predict.heatmap import score_grid

#: napari's deprecated viewer attributes (viewer.camera, viewer.scale_bar...) fail the test.
pytestmark = [
    pytest.mark.gui,
    pytest.mark.filterwarnings("error:viewer\\..* is a deprecated attribute:DeprecationWarning"),
]
PLUGIN = "napari-imilia"
WAIT_MS = 90_000


@pytest.fixture(autouse=True)
def _private_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings and the default results folder inside the test's tmp_path."""
    monkeypatch.setenv("IMILIA_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("IMILIA_RESULTS_DIR", str(tmp_path / "results"))


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_model(tmp_path_factory.mktemp("gui_model") / "abmil-gui.safetensors")


def _dock(viewer, name: str):
    dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
    assert dock.inner_widget() is widget
    return widget


def _run(panel, qtbot) -> None:
    panel.run()
    assert panel.running
    qtbot.waitUntil(lambda: not panel.running, timeout=WAIT_MS)


def _click(viewer, world_rc) -> None:
    """Drive the canvas callback like napari does: press, then release at the same place."""
    event = SimpleNamespace(type="mouse_press", position=tuple(world_rc), button=1, modifiers=())
    handler = tile_click_callback(viewer, event)
    next(handler)
    event.type = "mouse_release"
    with pytest.raises(StopIteration):
        next(handler)


def _errors():
    from napari.utils.notifications import notification_manager

    return [str(n.message) for n in notification_manager.records]


def test_score_heatmap_top_tiles_and_canvas_clicks(
    make_napari_viewer, qtbot, small_svs, model_path
):
    viewer = make_napari_viewer(show=False)
    panel = _dock(viewer, "Slide and model")
    viewer.open(str(small_svs), plugin=PLUGIN)
    session = viewer_state(viewer).session
    assert session is not None and session.slide.path == small_svs and session.prediction is None
    assert "2220 × 2967 px" in panel.slide_label.text() and "20x" in panel.slide_label.text()
    panel.form.set_model_path(str(model_path))
    assert "abmil-gui" in panel.form.model_label.text()
    _run(panel, qtbot)
    assert panel.last_outcome.error is None and not panel.last_outcome.cached
    assert session.prediction is panel.last_outcome.result
    assert (session.results_dir / "slide.json").is_file()
    assert panel.progress_bar.value() == panel.progress_bar.maximum() == len(session.tiles)
    assert "tiles/s" in panel.progress_label.text()

    heat = _dock(viewer, "Heatmap")
    layer = heat.heatmap_layer()
    tiles, mpp = session.tiles, session.slide.mpp
    grid = score_grid(tiles)
    assert layer.data.shape == grid.values.shape
    np.testing.assert_allclose(layer.data, grid.values, equal_nan=True)
    for _, tile in tiles.head(5).iterrows():  # each tile's pixel is centred on the tile
        row = round((tile["y"] - grid.origin_xy[1]) / grid.step_px)
        col = round((tile["x"] - grid.origin_xy[0]) / grid.step_px)
        centre_px = (tile["y"] + (tile["height"] - 1) / 2, tile["x"] + (tile["width"] - 1) / 2)
        np.testing.assert_allclose(layer.data_to_world((row, col)), np.array(centre_px) * mpp)
        assert layer.data[row, col] == pytest.approx(tile["score"], rel=1e-6)
    assert f"{session.prediction.score:.4f}" in heat.score_label.text()
    assert session.prediction.info["model_sha256"][:12] in heat.model_label.text()
    assert heat.demo_label.text() == ""
    table = heat.tile_table_layer()
    assert list(table.features["tile_id"]) == list(tiles["tile_id"])
    np.testing.assert_allclose(table.features["score"], tiles["score"])

    median = float(np.median(tiles["score"]))
    heat.threshold_check.setChecked(True)
    heat.threshold_spin.setValue(median)
    shown = np.count_nonzero(~np.isnan(layer.data))
    assert shown == int((tiles["score"] >= heat.threshold_spin.value()).sum()) < len(tiles)
    heat.threshold_check.setChecked(False)
    heat.rank_check.setChecked(True)
    assert np.nanmax(layer.data) == 1.0 and np.nanmin(layer.data) == 0.0
    assert tuple(layer.contrast_limits) == (0.0, 1.0)
    heat.values_combo.setCurrentText("attention")
    assert "attention" in layer.name
    heat.opacity_slider.setValue(30)
    assert layer.opacity == pytest.approx(0.3)

    top = _dock(viewer, "Top tiles")
    ids = top.tile_ids()
    assert ids == list(session.ranked_tiles(10)["tile_id"])
    for expected in ids[:3]:
        top.select_next()
        assert session.selected_tile_id == expected
        tile = session.tile_row(expected)
        centre = (
            (tile["y"] + (tile["height"] - 1) / 2) * mpp,
            (tile["x"] + (tile["width"] - 1) / 2) * mpp,
        )
        np.testing.assert_allclose(viewer_camera(viewer).center[-2:], centre)
        outline = [
            lay for lay in viewer.layers if lay.metadata.get("imilia_role") == SELECTION_ROLE
        ]
        corners = outline[0].data[0] * mpp
        np.testing.assert_allclose(corners.mean(axis=0), centre)
    top.select_previous()
    assert session.selected_tile_id == ids[1]
    top.bottom_check.setChecked(True)
    assert top.tile_ids() == list(session.ranked_tiles(10, bottom=True)["tile_id"])
    qtbot.waitUntil(lambda: not top.thumbnails_loading, timeout=WAIT_MS)
    assert top.icons_shown() == 10

    lowest = session.tile_row(top.tile_ids()[4])
    point = (
        (lowest["y"] + 10) * mpp,
        (lowest["x"] + lowest["width"] - 1) * mpp,
    )  # inside, near the edge
    _click(viewer, point)
    assert session.selected_tile_id == lowest["tile_id"]
    assert top.list.currentRow() == 4
    _click(viewer, (0.0, 0.0))  # top-left corner: no tissue tile there
    assert session.selected_tile_id == lowest["tile_id"]
    assert any("outside the tissue tiles" in m for m in _errors())


def test_scored_slide_reopens_from_cache_without_running(qtbot, small_svs, tmp_path, monkeypatch):
    """A demo-flagged model stands in for the bundled one (empty model field)."""
    from napari_imilia._napari.launch import open_review_viewer
    from napari_imilia.predict.slide import predict_slide

    demo = small_model(tmp_path / "demo-stand-in.safetensors", demo=True)
    monkeypatch.setattr("napari_imilia.predict.slide.default_model_path", lambda: demo)
    root = tmp_path / "scored"
    first = predict_slide(small_svs, root, progress=False)
    stamp = (first.out_dir / "slide.json").stat().st_mtime_ns

    def must_not_run(*args, **kwargs):
        raise AssertionError("predict_slide ran although the result was cached")

    monkeypatch.setattr("napari_imilia.predict.slide.predict_slide", must_not_run)
    viewer = open_review_viewer(small_svs, root, show=False)
    try:
        session = viewer_state(viewer).session
        assert session.prediction is not None and session.results_root == root
        assert session.prediction.score == pytest.approx(first.score)
        dock_names = set(viewer.window.dock_widgets)
        assert {
            "Slide and model (napari-imilia)",
            "Heatmap (napari-imilia)",
            "Top tiles (napari-imilia)",
        } <= dock_names
        roles = {lay.metadata.get("imilia_role") for lay in viewer.layers}
        assert {"heatmap", "tile_table"} <= roles
        panel = viewer.window.dock_widgets["Slide and model (napari-imilia)"]
        assert "earlier result loaded" in panel.status_label.text()
        heat = viewer.window.dock_widgets["Heatmap (napari-imilia)"]
        assert "DEMO MODEL" in heat.demo_label.text() and "DEMO MODEL" in heat.model_label.text()
        assert heat.heatmap_layer().data.shape == score_grid(session.tiles).values.shape
        top = viewer.window.dock_widgets["Top tiles (napari-imilia)"]
        assert len(top.tile_ids()) == 10
        panel.form.set_model_path("")
        assert panel.form.model_label.text().startswith("DEMO MODEL")
        _run(panel, qtbot)
        assert panel.last_outcome.cached and panel.last_outcome.error is None
        assert "earlier result reused" in panel.status_label.text()
        assert (first.out_dir / "slide.json").stat().st_mtime_ns == stamp
        qtbot.waitUntil(lambda: not top.thumbnails_loading, timeout=WAIT_MS)
    finally:
        viewer.close()


def test_cancel_leaves_no_files_and_bad_inputs_notify(
    make_napari_viewer, qtbot, small_svs, small_levels_tiff, model_path, tmp_path, monkeypatch
):
    from napari_imilia.features.extractors.builtin import StainStatsExtractor

    started, release = threading.Event(), threading.Event()
    embed = StainStatsExtractor.embed

    def blocking_embed(self, tiles):
        started.set()
        release.wait(timeout=30)
        return embed(self, tiles)

    monkeypatch.setattr(StainStatsExtractor, "embed", blocking_embed)
    viewer = make_napari_viewer(show=False)
    panel = _dock(viewer, "Slide and model")
    viewer.open(str(small_svs), plugin=PLUGIN)
    panel.form.set_model_path(str(model_path))
    panel.run()
    qtbot.waitUntil(started.is_set, timeout=WAIT_MS)
    panel.cancel()
    release.set()
    qtbot.waitUntil(lambda: not panel.running, timeout=WAIT_MS)
    assert panel.last_outcome.cancelled and "nothing was written" in panel.status_label.text()
    assert any("inference cancelled" in m for m in _errors())
    root = tmp_path / "results"
    assert not root.exists() or [p for p in root.rglob("*") if p.is_file()] == []
    assert viewer_state(viewer).session.prediction is None

    wrong = small_model(tmp_path / "wrong.safetensors", in_dim=32, extractor=None)
    panel.form.set_model_path(str(wrong))
    panel.form.extractor_combo.setCurrentIndex(panel.form.extractor_combo.findData(EXTRACTOR))
    _run(panel, qtbot)
    assert "expects 32-d" in panel.last_outcome.error
    assert any("expects 32-d" in m for m in _errors())

    viewer.open(str(small_levels_tiff), plugin=PLUGIN)  # resolution tags are nonsense: no MPP
    assert viewer_state(viewer).session.slide.path == small_levels_tiff
    assert "cannot be scored" in panel.slide_label.text() and not panel.mpp_row.isHidden()
    panel.form.set_model_path(str(model_path))
    panel.run()  # refused at once, saying what to do in the panel
    assert not panel.running
    assert any("cannot score small_HE_levels" in m and "Set slide MPP" in m for m in _errors())
    panel.set_slide_mpp(30.0)  # implausible: refused
    assert any("outside the plausible range" in m for m in _errors())
    panel.mpp_row.spin.setValue(0.5)
    panel.mpp_row.button.click()  # the slide reopens in µm, with a new session
    session = viewer_state(viewer).session
    assert (session.slide.mpp, session.slide.mpp_source) == (0.5, "override")
    (layer,) = [lay for lay in viewer.layers if lay.name.startswith("small_HE_levels")]
    assert tuple(layer.scale) == (0.5, 0.5) and layer.name == "small_HE_levels"
    assert "0.5 µm/px (override)" in panel.slide_label.text()
    _run(panel, qtbot)  # the MPP is used now: this tiny image then has too little tissue
    assert "no tissue found" in panel.last_outcome.error and "MPP" not in panel.last_outcome.error
    assert len(panel.settings.recent_slides) == 2
    assert panel.recent_combo.count() == 3

    # closing the viewer mid-run stops the run, and nothing is written
    started.clear()
    release.clear()
    panel.open_slide(small_svs)
    panel.run()
    qtbot.waitUntil(started.is_set, timeout=WAIT_MS)
    worker, cancel = panel.worker, panel._cancel
    viewer.close()
    qtbot.waitUntil(cancel.is_set, timeout=WAIT_MS)
    release.set()
    qtbot.waitUntil(lambda: not worker.is_running, timeout=WAIT_MS)
    assert not root.exists() or [p for p in root.rglob("*") if p.is_file()] == []
    assert any("viewer was closed while scoring small_HE.svs" in m for m in _errors())
