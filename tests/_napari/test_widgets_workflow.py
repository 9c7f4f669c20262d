"""The whole review workflow on the generated sample slide, all seven docks open in one viewer
through the npe2 manifest (``gui``): score with a small real ABMIL head, heatmap on the tile
grid, top tile jump, inspection on the slide, a verdict, the plots, the export re-read with
shapely, and the review reloaded in a new viewer without scoring again."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import pytest
import shapely
from test_widgets_slide_core import small_model

import napari_imilia
from napari_imilia._napari.compat import viewer_camera
from napari_imilia._napari.layers.placement import tile_centre_world
from napari_imilia._napari.roles import CELLS_ROLE, EPITHELIUM_ROLE, layers_with_role
from napari_imilia._napari.state import viewer_state
from napari_imilia.export import read_geojson, read_geojson_context
from napari_imilia.export.tables import csv_meta_path
from napari_imilia.interpret.cells.types import CELL_CLASS_COLORS
from napari_imilia.predict.heatmap import score_grid
from support.docks import DOCKS

pytestmark = [
    pytest.mark.gui,
    pytest.mark.filterwarnings("error:viewer\\..* is a deprecated attribute:DeprecationWarning"),
]
PLUGIN = "napari-imilia"
WAIT_MS = 120_000


def _docks(viewer) -> dict[str, object]:
    docks = {}
    for name in DOCKS:
        dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
        assert dock.inner_widget() is widget
        docks[name] = widget
    return docks


def _check_qupath_format(files: dict[str, Path], info: dict) -> None:
    """The raw files: UUID ids, objectType, classification {name, color} (cells, annotations),
    measurements as a dict, cells with nucleusGeometry; every file (CSVs by their sidecar)
    names the model, its hash, the extractor, µm/px and the software version."""
    kinds = {"tiles.geojson": {"tile"}, "cells.geojson": {"cell", "annotation"}}
    kinds["review.geojson"] = {"annotation"}
    for name, object_types in kinds.items():
        collection = json.loads(files[name].read_text(encoding="utf-8"))
        assert collection["type"] == "FeatureCollection"
        for feature in collection["features"]:
            uuid.UUID(feature["id"])
            props = feature["properties"]
            assert props["objectType"] in object_types
            if props["objectType"] != "tile":  # tiles: unclassified, coloured by measurement
                assert set(props["classification"]) == {"name", "color"}
            assert isinstance(props.get("measurements", {}), dict)
            if props["objectType"] == "cell":
                assert feature["nucleusGeometry"]["type"] == "Polygon"
    described = [files[n] for n in ("tiles.geojson", "cells.geojson", "review.geojson")]
    described += [csv_meta_path(files[n]) for n in ("tiles.csv", "markers.csv", "reviews.csv")]
    for path in described:
        data = json.loads(path.read_text(encoding="utf-8"))["imilia"]
        assert (data["model_name"], data["model_sha256"]) == (info["model"], info["model_sha256"])
        assert data["extractor"] == "imilia-stain-stats" and data["mpp"] == 0.5
        assert data["software_version"] == napari_imilia.__version__


def test_review_workflow_on_the_sample_slide(
    make_napari_viewer, qtbot, sample_slide: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("IMILIA_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("IMILIA_RESULTS_DIR", str(tmp_path / "results"))
    model = small_model(tmp_path / "abmil-workflow.safetensors")
    viewer = make_napari_viewer(show=False)
    docks = _docks(viewer)
    panel, heat, top = docks["Slide and model"], docks["Heatmap"], docks["Top tiles"]
    inspector, review = docks["Tile inspector"], docks["Review"]

    panel.open_slide(sample_slide)
    session = viewer_state(viewer).session
    assert session.slide.path == sample_slide and session.prediction is None
    panel.form.set_model_path(str(model))
    panel.run()
    qtbot.waitUntil(lambda: not panel.running, timeout=WAIT_MS)
    assert panel.last_outcome.error is None and session.prediction is not None
    tiles, mpp = session.tiles, float(session.slide.mpp)

    # heatmap: one pixel per tile, each centred on its tile
    layer, grid = heat.heatmap_layer(), score_grid(tiles)
    assert layer.data.shape == grid.values.shape
    best = session.tile_row(session.ranked_tiles(1)["tile_id"].iloc[0])
    pixel = (
        (best["y"] - grid.origin_xy[1]) / grid.step_px,
        (best["x"] - grid.origin_xy[0]) / grid.step_px,
    )
    np.testing.assert_allclose(layer.data_to_world(pixel), tile_centre_world(best, mpp))

    # top tile: the camera centres on it, the inspector shows its cells and epithelium
    top.select_next()
    assert session.selected_tile_id == best["tile_id"]
    np.testing.assert_allclose(viewer_camera(viewer).center[-2:], tile_centre_world(best, mpp))
    qtbot.waitUntil(
        lambda: inspector.worker is None and inspector.current is not None, timeout=WAIT_MS
    )
    inspection = inspector.current
    (cells,) = layers_with_role(viewer, CELLS_ROLE)
    (epithelium,) = layers_with_role(viewer, EPITHELIUM_ROLE)
    assert cells.data.shape == epithelium.data.shape == inspection.shape
    np.testing.assert_allclose(epithelium.translate, cells.translate)
    table = inspection.cells.table
    assert len(table) > 10 and set(table["class_name"]) <= set(CELL_CLASS_COLORS)
    edge = set(np.unique(cells.data[[0, -1]])) | set(np.unique(cells.data[:, [0, -1]]))
    for cell in table[~table["label"].isin(edge)].head(5).itertuples():  # whole in the tile
        rows, cols = np.nonzero(cells.data == cell.label)
        world = np.asarray(cells.data_to_world((rows.mean(), cols.mean())))
        assert (
            np.abs(world - np.array([cell.centroid_y, cell.centroid_x]) * mpp).max()
            <= (cells.scale[-1])
        )
    assert docks["Plots"].scatter_data()[0] == [best["tile_id"]]

    # a verdict, the export, and the files re-read with shapely
    review.class_combo.setEditText("active inflammation")
    (entry,) = review.record("agree")
    files = {p.name.split(".", 1)[1]: p for p in docks["Export / import"].export()}
    assert set(files) >= {"tiles.geojson", "cells.geojson", "review.geojson", "reviews.csv"}
    assert (
        read_geojson_context(files["tiles.geojson"]).model_sha256
        == (session.prediction.info["model_sha256"])
    )
    box = shapely.box(best["x"], best["y"], best["x"] + best["width"], best["y"] + best["height"])
    exported = {t.name: t for t in read_geojson(files["tiles.geojson"])}
    assert len(exported) == len(tiles) and exported[best["tile_id"]].geometry.equals(box)
    cells_out = [o for o in read_geojson(files["cells.geojson"]) if o.object_type == "cell"]
    assert len(cells_out) == inspection.n_cells
    (annotation,) = read_geojson(files["review.geojson"])
    assert annotation.geometry.equals(box) and annotation.class_name == "active inflammation"
    _check_qupath_format(files, session.prediction.info)

    # reopened in a new viewer: the earlier result and the review come back, no run
    viewer2 = make_napari_viewer(show=False)
    viewer2.open(str(sample_slide), plugin=PLUGIN)
    _, review2 = viewer2.window.add_plugin_dock_widget(PLUGIN, "Review")
    session2 = viewer_state(viewer2).session
    assert session2.prediction.score == pytest.approx(session.prediction.score)
    assert review2.listed_entry_ids() == [entry.entry_id]
    assert session2.review.get(entry.entry_id).verdict == "agree"
