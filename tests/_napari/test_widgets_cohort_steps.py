"""Stepping through a cohort without waiting (``gui``): the next slide reuses the layers of
the previous one (no layer removed: napari runs a full garbage collection per removal), and
docks in hidden tabs catch up when shown instead of working at every step."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from napari_imilia._napari.roles import (
    HEATMAP_ROLE,
    REGIONS_ROLE,
    TILE_TABLE_ROLE,
    layers_with_role,
)
from napari_imilia._napari.state import viewer_state
from napari_imilia._napari.workspace import open_workspace
from napari_imilia.predict.heatmap import score_grid
from support.cohort_data import cohort_data, scored_results  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.gui]
PLUGIN = "napari-imilia"


@pytest.fixture
def scored_copy(scored_results: Path, tmp_path: Path) -> Path:  # noqa: F811
    return Path(shutil.copytree(scored_results, tmp_path / "results"))


def test_the_next_slide_reuses_every_layer(make_napari_viewer, scored_copy: Path) -> None:
    viewer = make_napari_viewer(show=False)
    _, panel = viewer.window.add_plugin_dock_widget(PLUGIN, "Cohort")
    panel.open_cohort(scored_copy)
    removed: list[str] = []
    assert panel.step(+1)
    first = viewer_state(viewer).session
    kept = {layer.name: layer for layer in viewer.layers}
    ids = {id(layer) for layer in viewer.layers}
    viewer.layers.events.removed.connect(lambda event: removed.append(event.value.name))
    assert panel.step(+1)
    session = viewer_state(viewer).session
    assert session is not first and session.slide_id == "case_01"
    assert removed == [] and {id(layer) for layer in viewer.layers} == ids
    (slide_layer,) = [lay for lay in viewer.layers if lay.metadata.get("slide_path")]
    assert slide_layer.name == "case_01" and slide_layer.metadata["slide_path"].endswith(
        "case_01.tiff"
    )
    (heatmap,) = layers_with_role(viewer, HEATMAP_ROLE)
    np.testing.assert_allclose(heatmap.data, score_grid(session.tiles).values)
    assert heatmap.name.startswith("case_01") and len(kept) == len(viewer.layers)
    (table,) = layers_with_role(viewer, TILE_TABLE_ROLE)
    assert list(table.features["tile_id"]) == list(session.tiles["tile_id"])
    (regions,) = layers_with_role(viewer, REGIONS_ROLE)
    assert regions.nshapes == 0 and regions.metadata["imilia_slide"]["slide_id"] == "case_01"


def test_docks_in_hidden_tabs_catch_up_when_shown(make_napari_viewer, scored_copy, qtbot):
    viewer = make_napari_viewer(show=True)
    docks = open_workspace(viewer)
    panel = docks["Cohort"].inner_widget()
    top = docks["Top tiles"].inner_widget()
    plots = docks["Plots"].inner_widget()
    panel.open_cohort(scored_copy)
    qtbot.wait(50)
    assert panel.step(+1)
    qtbot.waitUntil(lambda: bool(layers_with_role(viewer, REGIONS_ROLE)), timeout=10_000)
    assert top.links.waiting > 0 and plots.links.waiting > 0  # hidden tabs: not drawn
    session = viewer_state(viewer).session
    docks["Top tiles"].raise_()
    qtbot.waitUntil(lambda: top.links.waiting == 0, timeout=10_000)
    assert top.tile_ids() == [str(t) for t in session.ranked_tiles(10)["tile_id"]]
    docks["Plots"].raise_()
    qtbot.waitUntil(lambda: plots.links.waiting == 0, timeout=10_000)
    assert plots.info_label.text().endswith(f"slide score {session.prediction.score:.4f}")
