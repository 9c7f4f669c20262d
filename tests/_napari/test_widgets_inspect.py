"""Tile inspector and Plots docks driven through the npe2 manifest, and the I key (``gui``).

A generated slide is scored by a small real ABMIL head (``predict_slide``); selecting tiles
must run the inspection in a worker, show one cells and one epithelium Labels layer placed on
the slide (a cell's world centroid = its level-0 centroid x µm/px), keep the session's cache
bounded over 20 tiles in a row, update the plots, and turn bad choices into notifications.
"""

from __future__ import annotations

import gc
import weakref
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from napari_imilia._napari.roles import CELLS_ROLE, EPITHELIUM_ROLE, layers_with_role
from napari_imilia._napari.state import viewer_state
from napari_imilia.interpret.cells.types import CELL_CLASS_COLORS
from support.scored import make_scored_slide

#: napari's deprecated viewer attributes (viewer.camera, viewer.scale_bar...) fail the test.
pytestmark = [
    pytest.mark.gui,
    pytest.mark.filterwarnings("error:viewer\\..* is a deprecated attribute:DeprecationWarning"),
]
PLUGIN = "napari-imilia"
WAIT_MS = 60_000


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_scored_slide(tmp_path_factory.mktemp("gui_scored"))


@pytest.fixture
def viewer(make_napari_viewer, scored, tmp_path, monkeypatch):
    """A viewer showing the scored slide, its session loaded from the results folder."""
    slide, results = scored
    monkeypatch.setenv("IMILIA_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("IMILIA_RESULTS_DIR", str(results))
    viewer = make_napari_viewer(show=False)
    viewer.open(str(slide), plugin=PLUGIN)
    return viewer


def _dock(viewer, name: str):
    dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
    assert dock.inner_widget() is widget
    return widget


def _inspect(inspector, session, tile_id: str, qtbot) -> None:
    session.select_tile(tile_id)
    qtbot.waitUntil(
        lambda: (
            inspector.worker is None
            and inspector.current is not None
            and inspector.current.tile_id == tile_id
        ),
        timeout=WAIT_MS,
    )


def _messages() -> list[str]:
    from napari.utils.notifications import notification_manager

    return [str(n.message) for n in notification_manager.records]


def test_selected_tile_shows_aligned_labels_markers_and_plots(viewer, qtbot):
    inspector = _dock(viewer, "Tile inspector")
    plots = _dock(viewer, "Plots")
    # the plots take the dock's height: last in its scroll area, which napari adds no stretch to
    layout = plots.scroll_area.widget().layout()
    assert layout.itemAt(layout.count() - 1).widget() is plots.canvas
    session = viewer_state(viewer).session
    assert session is not None and session.prediction is not None
    top = session.ranked_tiles(1).iloc[0]
    _inspect(inspector, session, str(top["tile_id"]), qtbot)
    inspection = inspector.current
    assert session.cached_inspection(top["tile_id"]) is inspection
    assert inspection.n_cells > 10

    (cells,) = layers_with_role(viewer, CELLS_ROLE)
    (epithelium,) = layers_with_role(viewer, EPITHELIUM_ROLE)
    mpp = session.slide.mpp
    assert cells.data.shape == epithelium.data.shape == inspection.shape == (224, 224)
    np.testing.assert_allclose(cells.scale, [inspection.level0_per_px * mpp] * 2)
    np.testing.assert_allclose(cells.translate, [top["y"] * mpp, top["x"] * mpp])
    np.testing.assert_allclose(epithelium.translate, cells.translate)
    np.testing.assert_array_equal(epithelium.data, inspection.epithelium_mask)
    assert epithelium.opacity < 0.5
    table = inspection.cells.table
    features = cells.features
    assert features["index"].tolist() == table["label"].tolist()
    assert features["class_name"].tolist() == table["class_name"].tolist()
    edge = set(np.unique(cells.data[[0, -1]])) | set(np.unique(cells.data[:, [0, -1]]))
    whole = table[~table["label"].isin(edge)]  # cells on the tile's edge extend beyond it
    for _, cell in whole.head(8).iterrows():
        rows, cols = np.nonzero(cells.data == cell["label"])
        world = np.asarray(cells.data_to_world((rows.mean(), cols.mean())))
        # the slide layer shows level-0 position X at world (X - 0.5) * mpp
        level0 = (np.array([cell["centroid_y"], cell["centroid_x"]]) - 0.5) * mpp
        np.testing.assert_allclose(world, level0, atol=1e-6)
        rgb = np.asarray(cells.colormap.color_dict[int(cell["label"])])[:3] * 255
        np.testing.assert_allclose(rgb, CELL_CLASS_COLORS[cell["class_name"]], atol=1)

    markers = inspection.markers
    last = inspector.markers_table.rowCount() - 1
    assert inspector.markers_table.item(last, 0).text() == "Immune (total)"
    assert inspector.markers_table.item(last, 1).text() == str(markers.immune_count)
    present = [name for name, n in markers.counts.items() if n]
    assert all(
        f"{name} ({markers.counts[name]})" in inspector.legend_label.text() for name in present
    )
    assert "epithelium" in inspector.summary_label.text()

    ids, x, y = plots.scatter_data()
    assert ids == [str(top["tile_id"])]
    assert x[0] == pytest.approx(top["score"])
    assert y[0] == pytest.approx(markers.immune_density_per_mm2)
    plots.set_marker("epithelium_fraction")
    assert plots.scatter_data()[2][0] == pytest.approx(markers.epithelium_fraction)
    assert len(plots.score_axes.patches) > 0  # the score histogram


def test_twenty_tiles_in_a_row_keep_memory_bounded(viewer, qtbot):
    inspector = _dock(viewer, "Tile inspector")
    plots = _dock(viewer, "Plots")
    session = viewer_state(viewer).session
    session.max_inspections = 4
    tile_ids = session.tiles["tile_id"].astype(str).tolist()
    assert len(tile_ids) == 20
    alive = []  # weak references to every inspection and its label image
    for tile_id in tile_ids:
        _inspect(inspector, session, tile_id, qtbot)
        assert len(layers_with_role(viewer, CELLS_ROLE)) == 1
        assert len(layers_with_role(viewer, EPITHELIUM_ROLE)) == 1
        alive += [weakref.ref(inspector.current), weakref.ref(inspector.current.cells.labels)]
    assert session.inspected_tile_ids == tile_ids[-4:]
    gc.collect()  # the 4 cached inspections (the shown one among them) stay in memory, and
    # at most one earlier label image that napari (0.6) keeps until the layer's next redraw
    assert 2 * 4 <= sum(ref() is not None for ref in alive) <= 2 * 4 + 1
    assert layers_with_role(viewer, CELLS_ROLE)[0].metadata["tile_id"] == tile_ids[-1]
    ids, x, _ = plots.scatter_data()
    assert sorted(ids) == sorted(tile_ids) and len(x) == 20
    assert plots.scatter_axes.get_title().startswith("Spearman rho ")
    assert plots.scatter_axes.get_title().endswith("(20 tiles)")
    assert plots.scatter_axes.get_ylabel() == plots.marker_combo.currentText()
    # a cached tile is shown at once, without a worker
    session.select_tile(tile_ids[-2])
    assert inspector.worker is None and inspector.current.tile_id == tile_ids[-2]


def test_bad_choices_become_notifications(viewer, qtbot, tmp_path):
    inspector = _dock(viewer, "Tile inspector")
    session = viewer_state(viewer).session
    inspector.auto_check.setChecked(False)
    tile_id = str(session.tiles["tile_id"].iloc[0])
    session.select_tile(tile_id)
    inspector.backend_combo.setCurrentText("cellvit")
    inspector.inspect_button.click()
    assert inspector.worker is None
    assert any("--cell-checkpoint" in m for m in _messages())
    inspector.backend_combo.setCurrentText("histoplus-json")
    inspector.json_edit.setText(str(tmp_path / "missing.json"))
    inspector.inspect_button.click()
    qtbot.waitUntil(lambda: inspector.worker is None, timeout=WAIT_MS)
    assert any("HistoPLUS JSON not found" in m for m in _messages())
    assert inspector.current is None and not layers_with_role(viewer, CELLS_ROLE)
    # the choices are remembered for the next dock
    again = _dock(viewer, "Tile inspector")
    assert again.backend_combo.currentText() == "histoplus-json"
    assert again.json_edit.text() == str(tmp_path / "missing.json")


def test_a_destroyed_dock_stops_listening(viewer, qtbot):
    from qtpy.QtCore import QEvent
    from qtpy.QtWidgets import QApplication

    inspector = _dock(viewer, "Tile inspector")
    plots = _dock(viewer, "Plots")
    session = viewer_state(viewer).session
    before = len(session.tile_selected), len(session.tile_inspected)
    for widget in (inspector, plots):
        viewer.window.remove_dock_widget(widget)
        widget.deleteLater()
    QApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    assert len(session.tile_selected) == before[0] - 2  # the viewer link's slot remains
    assert len(session.tile_inspected) == before[1] - 1
    session.select_tile(str(session.tiles["tile_id"].iloc[0]))  # no call into deleted docks
    assert not layers_with_role(viewer, CELLS_ROLE)


def test_the_i_key_inspects_with_the_states_choices_dock_open_or_not(viewer, qtbot):
    """I inspects the selected tile with the viewer state's choices and its loaded cell
    backend: without a Tile inspector dock (none opens: the link draws masks and legend),
    and with one (it shows the same inspection; a choice made in it is the key's)."""
    state = viewer_state(viewer)
    _dock(viewer, "Top tiles")  # any dock links the viewer and registers the keys
    session = state.session
    first, second, third = (str(t) for t in session.ranked_tiles(3)["tile_id"])
    press = viewer.window._qt_viewer._key_map_handler.press_key
    inspections = state.inspections

    # the state says CellViT without a checkpoint: I says so, and nothing runs
    state.set_inspect_settings(replace(state.inspect_settings, cell_backend="cellvit"))
    session.select_tile(first)
    press("I")
    assert inspections.worker is None and inspections.current is None
    assert any("--cell-checkpoint" in m for m in _messages())

    # classical cells: inspected in a worker, masks and legend drawn, no dock opened
    state.set_inspect_settings(replace(state.inspect_settings, cell_backend="classical"))
    press("I")
    qtbot.waitUntil(
        lambda: inspections.worker is None and inspections.current is not None, timeout=WAIT_MS
    )
    assert "Tile inspector (napari-imilia)" not in viewer.window.dock_widgets
    shown = inspections.current
    assert shown.tile_id == first and shown.cell_backend == "classical"
    assert session.cached_inspection(first) is shown
    (cells,) = layers_with_role(viewer, CELLS_ROLE)
    assert cells.metadata["tile_id"] == first
    assert len(layers_with_role(viewer, EPITHELIUM_ROLE)) == 1
    assert len(state.link.legend.overlays()) > 1  # classes present, and the epithelium
    backend = state.models.cell_backend
    assert backend is not None

    # the dock, opened now, shows that inspection and the state's choices
    inspector = _dock(viewer, "Tile inspector")
    assert inspector.current is shown and inspector.worker is None
    assert inspector.backend_combo.currentText() == "classical"
    assert inspector.markers_table.rowCount() > 0
    inspector.auto_check.setChecked(False)

    # I with the dock open: the backend loaded before, the dock follows
    session.select_tile(second)
    press("I")
    qtbot.waitUntil(
        lambda: inspections.worker is None and inspector.current.tile_id == second,
        timeout=WAIT_MS,
    )
    assert state.models.cell_backend is backend
    assert layers_with_role(viewer, CELLS_ROLE)[0].metadata["tile_id"] == second
    assert f"<b>{second}</b>" in inspector.summary_label.text()

    # a choice made in the dock is the one the key uses
    inspector.backend_combo.setCurrentText("cellvit")
    assert state.inspect_settings.cell_backend == "cellvit"
    session.select_tile(third)
    press("I")
    assert inspections.worker is None and inspector.current.tile_id == second
