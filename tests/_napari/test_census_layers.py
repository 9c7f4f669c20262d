"""The census in napari (``gui``): the density map and the cells in view drawn by the viewer
link from the state; the Tile inspector's census section: a run with progress, a click on a
hotspot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_imilia._napari.clicks import pick_census_tile_at_world
from napari_imilia._napari.compat import viewer_camera
from napari_imilia._napari.layers.density import CELLS_MAX_VIEW_UM
from napari_imilia._napari.roles import (
    CELLS_ROLE,
    CENSUS_CELLS_ROLE,
    CENSUS_DENSITY_ROLE,
    layers_with_role,
)
from napari_imilia._napari.state import viewer_state
from napari_imilia.interpret.cells.types import CELL_CLASS_COLORS
from napari_imilia.interpret.census import PRESETS, CellSelection, census_slide
from support.scored import make_scored_slide

pytestmark = [
    pytest.mark.gui,
    pytest.mark.filterwarnings("error:viewer\\..* is a deprecated attribute:DeprecationWarning"),
]
PLUGIN = "napari-imilia"
WAIT_MS = 120_000


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_scored_slide(tmp_path_factory.mktemp("census_gui"))


@pytest.fixture(scope="module")
def censused(scored) -> tuple[Path, Path]:
    slide, results = scored
    census_slide(slide, results, workers=1)
    return slide, results


def _viewer(make_napari_viewer, slide, results, tmp_path, monkeypatch):
    monkeypatch.setenv("IMILIA_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("IMILIA_RESULTS_DIR", str(results))
    viewer = make_napari_viewer(show=False)
    viewer.open(str(slide), plugin=PLUGIN)
    return viewer


def _zoom_on(viewer, x: float, y: float, width_um: float) -> None:
    """Centre the camera on level-0 (x, y), showing ``width_um`` µm across."""
    session = viewer_state(viewer).session
    um = float(session.slide.mpp)
    camera = viewer_camera(viewer)
    camera.center = (y * um, x * um)
    camera.zoom = viewer.canvas.size[1] / width_um


def test_density_map_and_cells_in_view(make_napari_viewer, censused, tmp_path, monkeypatch):
    slide, results = censused
    viewer = _viewer(make_napari_viewer, slide, results, tmp_path, monkeypatch)
    state = viewer_state(viewer)
    from napari_imilia._napari.link import link_viewer

    link_viewer(viewer).ensure_session()
    data = state.census.data
    assert data is not None and data.info["n_cells"] > 500
    (density,) = layers_with_role(viewer, CENSUS_DENSITY_ROLE)
    assert density.multiscale and density.colorbar.visible
    expected = data.density_pyramid(PRESETS[0])
    assert np.array_equal(np.asarray(density.data[0]), expected[0], equal_nan=True)
    # one density pixel per tile, centred on it: the world position of tile (c, r) is its centre
    um = float(state.session.slide.mpp)
    assert density.scale[-1] == pytest.approx(data.stride_px * um)
    overlays = viewer.canvas.overlays
    caption = " ".join(overlays[f"imilia_census_caption_{i}"].text for i in (0, 1))
    assert "immune cells" in caption
    # zoomed out: no cells drawn; zoomed in: the cells of the tiles in view, by class colour
    _zoom_on(viewer, 900, 700, CELLS_MAX_VIEW_UM * 3)
    cells = layers_with_role(viewer, CENSUS_CELLS_ROLE)
    assert not cells or len(cells[0].data) == 0
    _zoom_on(viewer, 900, 700, 300)
    (cells,) = layers_with_role(viewer, CENSUS_CELLS_ROLE)
    n = len(cells.data)
    assert n > 20
    assert set(cells.features["class_name"].astype(str)) <= set(PRESETS[0].classes)
    first = str(cells.features["class_name"].iloc[0])
    assert np.allclose(cells.face_color[0][:3], np.array(CELL_CLASS_COLORS[first]) / 255)
    # a point sits on its cell: world = (level-0 centroid - 0.5) x µm/px
    table = data.cells(["centroid_x", "centroid_y"])
    nearest = np.min(
        np.hypot(*(table[["centroid_y", "centroid_x"]].to_numpy() - 0.5 - cells.data[0] / 1).T)
    )
    assert nearest < 1e-6
    legend = [text for text, _ in state.link.legend.entries()]
    assert any(first in text for text in legend)
    # another selection redraws both
    state.census.select(CellSelection(("Lymphocytes",), ("lamina propria",), "lamina propria"))
    assert "Lymphocytes" in density.name
    assert set(cells.features["class_name"].astype(str)) == {"Lymphocytes"}
    assert set(cells.features["compartment"].astype(str)) == {"lamina propria"}


def test_a_click_on_a_hotspot_lists_its_cells_and_inspects_the_tile(
    make_napari_viewer, censused, tmp_path, monkeypatch, qtbot
):
    slide, results = censused
    viewer = _viewer(make_napari_viewer, slide, results, tmp_path, monkeypatch)
    _, inspector = viewer.window.add_plugin_dock_widget(PLUGIN, "Tile inspector")
    widget = inspector.census
    state = viewer_state(viewer)
    data = state.census.data
    scored_ids = set(state.session.tiles["tile_id"])
    ranked = data.top_tiles(PRESETS[0], len(data.tiles))
    hot = next(t for t in ranked if t in scored_ids)  # the densest tile that was scored
    row = data.tiles.set_index("tile_id").loc[hot]
    um = float(state.session.slide.mpp)
    world = ((row["y"] + 100) * um, (row["x"] + 100) * um)
    assert pick_census_tile_at_world(viewer, world) == hot
    assert widget.cells_table.rowCount() == min(row["n_cells"], 200)
    assert f"tile {hot}" in widget.picked_label.text()
    assert state.session.selected_tile_id == hot
    qtbot.waitUntil(
        lambda: state.inspections.current is not None and state.inspections.current.tile_id == hot,
        timeout=WAIT_MS,
    )
    assert layers_with_role(viewer, CELLS_ROLE)
    # the region table lists the slide and its pieces with the dock's selection
    assert widget.regions_table.item(0, 0).text() == "slide"


def test_the_dock_runs_the_census_with_progress(
    make_napari_viewer, scored, tmp_path, monkeypatch, qtbot
):
    slide, results = scored
    out = tmp_path / "results"
    out.mkdir()
    import shutil

    shutil.copytree(results / slide.stem, out / slide.stem, ignore=shutil.ignore_patterns("census"))
    viewer = _viewer(make_napari_viewer, slide, out, tmp_path, monkeypatch)
    _, inspector = viewer.window.add_plugin_dock_widget(PLUGIN, "Tile inspector")
    widget = inspector.census
    state = viewer_state(viewer)
    assert state.census.data is None and "Run census" in widget.status_label.text()
    seen = []
    state.census.progress.connect(seen.append)
    widget.run_button.click()
    assert widget.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: state.census.data is not None, timeout=WAIT_MS)
    assert seen[-1].done == seen[-1].total == state.census.data.info["n_tiles"]
    assert widget.progress_bar.value() == seen[-1].total
    assert layers_with_role(viewer, CENSUS_DENSITY_ROLE)
    qtbot.waitUntil(lambda: widget.run_button.isEnabled(), timeout=WAIT_MS)
