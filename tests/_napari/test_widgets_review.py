"""Review and Export / import docks driven through the manifest (pytest-qt, under Xvfb)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import shapely

from napari_imilia._napari.compat import viewer_camera
from napari_imilia._napari.layers.inspection import show_inspection
from napari_imilia._napari.roles import REGIONS_ROLE, layers_with_role
from napari_imilia._napari.state import viewer_state
from napari_imilia.export import read_geojson, read_geojson_context
from napari_imilia.export.layers import level0_to_world
from napari_imilia.interpret import CONTEXT_UM, inspect_tile

#: napari's deprecated viewer attributes (viewer.camera, viewer.scale_bar...) fail the test.
pytestmark = [
    pytest.mark.gui,
    pytest.mark.filterwarnings("error:viewer\\..* is a deprecated attribute:DeprecationWarning"),
]
PLUGIN = "napari-imilia"


@pytest.fixture(scope="module")
def scored(small_svs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """small_HE.svs scored once by a small real Chowder on the builtin extractor."""
    import torch

    from napari_imilia.mil import create_model, save_model
    from napari_imilia.predict.slide import predict_slide

    root = tmp_path_factory.mktemp("scored")
    torch.manual_seed(0)
    model = create_model("imilia-chowder", 64, n_channels=2, n_top=3, n_bottom=3, mlp_hidden=[8])
    path = save_model(model.eval(), root / "model.safetensors", extractor="imilia-stain-stats")
    result = predict_slide(small_svs, root / "results", model_path=path, progress=False)
    return result.out_dir


@pytest.fixture
def results_root(scored: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh results folder holding the cached prediction (no review yet)."""
    root = tmp_path / "results"
    shutil.copytree(scored, root / scored.name, ignore=shutil.ignore_patterns("features"))
    monkeypatch.setenv("IMILIA_RESULTS_DIR", str(root))
    monkeypatch.setenv("IMILIA_CONFIG_DIR", str(tmp_path / "config"))
    return root


def _open(make_napari_viewer: Any, slide: Path) -> tuple[Any, Any, Any]:
    viewer = make_napari_viewer(show=False)
    viewer.open(slide, plugin=PLUGIN)
    dock, panel = viewer.window.add_plugin_dock_widget(PLUGIN, "Review")
    assert type(panel).__name__ == "ReviewPanel" and dock.widget() is not None
    return viewer, panel, viewer_state(viewer).session


def _world_rect(x0: float, y0: float, x1: float, y1: float, mpp: float) -> np.ndarray:
    """A napari rectangle (2 corners, world µm) covering level-0 [x0, x1] x [y0, y1]."""
    return level0_to_world(np.array([[x0, y0], [x1, y1]]), mpp)


def test_review_tiles_and_regions_reload_and_export(
    make_napari_viewer: Any, results_root: Path, small_svs: Path, notes: list
) -> None:
    import npe2

    viewer, panel, session = _open(make_napari_viewer, small_svs)
    assert session.prediction is not None and session.results_dir.parent == results_root
    (regions,) = layers_with_role(viewer, REGIONS_ROLE)
    mpp = float(session.slide.mpp)
    first, second = session.ranked_tiles(2)["tile_id"]

    # a tile verdict with class, note and reviewer, then changed from the canvas key
    session.select_tile(first)
    assert panel.target_kind == "tile" and first in panel.target_label.text()
    panel.reviewer_edit.setText("Dr Ada")
    panel.class_combo.setEditText("active inflammation")
    panel.note_edit.setText("crypt abscess")
    panel.verdict_buttons["agree"].click()
    (entry,) = session.review.entries()
    assert (entry.tile_id, entry.verdict, entry.reviewer_class, entry.note, entry.reviewer) == (
        first,
        "agree",
        "active inflammation",
        "crypt abscess",
        "Dr Ada",
    )
    assert panel.verdict_buttons["agree"].isChecked()
    viewer.window._qt_viewer._key_map_handler.press_key("Alt-D")
    (entry,) = session.review.entries()  # the same entry, updated
    assert entry.verdict == "disagree" and panel.verdict_buttons["disagree"].isChecked()
    panel.note_edit.setText("crypt abscess, cryptitis")
    panel.note_edit.editingFinished.emit()
    assert session.review.get(entry.entry_id).note == "crypt abscess, cryptitis"
    session.select_tile(second)
    assert panel.class_combo.currentText() == "" and not panel.note_edit.text()
    panel.record("uncertain")

    # a drawn rectangle region, then moved (its entry follows)
    regions.add_rectangles([_world_rect(200, 300, 600, 700, mpp)])
    assert panel.target_kind == "region"
    panel.class_combo.setEditText("artefact")
    (region_entry,) = panel.record("disagree")
    expected = shapely.box(200, 300, 600, 700)
    assert shapely.Polygon(region_entry.region).equals(expected)
    assert region_entry.reviewer_class == "artefact" and region_entry.reviewer == "Dr Ada"
    assert panel.entry_list.current_entry_id() == region_entry.entry_id
    assert "disagree, saved" in panel.target_label.text()
    assert regions.features["entry_id"].tolist() == [region_entry.entry_id]
    assert regions.edge_color[0].tolist() == pytest.approx([220 / 255, 40 / 255, 40 / 255, 1])
    moved = [np.asarray(regions.data[0]) + np.array([10 * mpp, 0.0])]
    regions.data = moved  # as when vertices are dragged: action 'changed'
    assert session.review.get(region_entry.entry_id).region[0][1] == pytest.approx(310.0)
    # deleting the shape in the layer does not delete the review: it is drawn back
    regions.selected_data = {0}
    regions.remove_selected()
    assert regions.nshapes == 1 and regions.features["entry_id"].tolist() == [region_entry.entry_id]
    assert any("kept" in message for level, message in notes if level == "warning")

    ids = [e.entry_id for e in session.review.entries()]
    assert panel.listed_entry_ids() == ids and len(ids) == 3
    panel.entry_list.setCurrentRow(0)  # jumps to the first tile and edits its entry
    assert session.selected_tile_id == first and panel.entry_ids == [ids[0]]
    row = session.tile_row(first)
    centre = ((row["y"] + 111.5) * mpp, (row["x"] + 111.5) * mpp)
    assert tuple(viewer_camera(viewer).center[-2:]) == pytest.approx(centre)
    panel.entry_list.setCurrentRow(1)
    panel.delete_button.click()
    assert [e.entry_id for e in session.review.entries()] == [ids[0], ids[2]]
    saved = json.loads((results_root.parent / "config" / "review_settings.json").read_text())
    assert saved == {"reviewer": "Dr Ada"}

    # the regions layer removed by the user comes back (with its region) on Draw region
    viewer.layers.remove(regions)
    panel.draw_button.click()
    (regions,) = layers_with_role(viewer, REGIONS_ROLE)
    assert regions.mode == "add_polygon" and regions.features["entry_id"].tolist() == [ids[2]]

    # reopen in a new viewer: entries reload, the region is drawn back at the same place
    viewer2, panel2, session2 = _open(make_napari_viewer, small_svs)
    assert session2 is not session and panel2.listed_entry_ids() == [ids[0], ids[2]]
    assert panel2.reviewer_edit.text() == "Dr Ada"
    (regions2,) = layers_with_role(viewer2, REGIONS_ROLE)
    assert regions2.features["entry_id"].tolist() == [ids[2]]
    np.testing.assert_allclose(
        np.sort(regions2.data[0], axis=0),
        np.sort(level0_to_world(np.asarray(session2.review.get(ids[2]).region), mpp), axis=0),
        atol=1e-4,
    )
    session2.select_tile(first)
    assert panel2.note_edit.text() == "crypt abscess, cryptitis"

    # export from the new viewer (with one inspected tile) and read it back with shapely
    inspection = inspect_tile(session2.slide, session2.tile_row(first))
    session2.store_inspection(first, inspection)
    _, exporter = viewer2.window.add_plugin_dock_widget(PLUGIN, "Export / import")
    files = exporter.export()
    assert [f.name for f in files] == [
        "small_HE.tiles.geojson",
        "small_HE.cells.geojson",
        "small_HE.review.geojson",
        "small_HE.tiles.csv",
        "small_HE.markers.csv",
        "small_HE.reviews.csv",
    ]
    assert files[0].parent == session2.results_dir / "export"
    width, height = session2.slide.dimensions
    slide_box = shapely.box(0, 0, width, height)
    for path in files[:3]:
        ctx = read_geojson_context(path)
        assert ctx.model_sha256 == session2.prediction.info["model_sha256"]
        assert ctx.extractor == "imilia-stain-stats" and ctx.mpp == pytest.approx(mpp)
        for obj in read_geojson(path, slide_dimensions_px=(width, height)):
            assert obj.geometry.is_valid and slide_box.contains(obj.geometry)
    tiles = read_geojson(files[0])
    assert len(tiles) == len(session2.tiles) and {t.object_type for t in tiles} == {"tile"}
    top = next(t for t in tiles if t.name == first)
    assert top.measurements["rank"] == 1.0
    assert top.geometry.equals(shapely.box(row["x"], row["y"], row["x"] + 224, row["y"] + 224))
    assert top.measurements["n_cells"] == inspection.n_cells  # markers of inspected tiles
    cells = [o for o in read_geojson(files[1]) if o.object_type == "cell"]
    assert len(cells) == inspection.n_cells > 0
    # a cell belongs to the tile holding its centroid; border nuclei are whole, within the
    # context margin the inspection reads around the tile
    assert all(top.geometry.buffer(1).contains(c.nucleus_geometry.centroid) for c in cells)
    assert all(top.geometry.buffer(CONTEXT_UM / mpp).contains(c.nucleus_geometry) for c in cells)
    tile_review, region_review = read_geojson(files[2])
    assert tile_review.object_type == "annotation" and tile_review.geometry.equals(top.geometry)
    assert tile_review.class_name == "active inflammation"
    assert tile_review.color == (220, 40, 40)
    assert tile_review.measurements == {"Review agreement": 0.0}
    assert region_review.geometry.equals(shapely.box(200, 310, 600, 710))
    assert region_review.properties["metadata"]["reviewer"] == "Dr Ada"

    # the tile inspector's cells Labels layer, saved with the plugin's writer
    cells_layer, _ = show_inspection(viewer2, session2, inspection)
    out = files[0].parent / "cells_layer.geojson"
    assert npe2.write(out, [cells_layer], plugin_name=PLUGIN) == [str(out)]
    written = read_geojson(out)
    table = inspection.cells.table
    assert len(written) == len(table)
    by_name = {o.properties["metadata"]["cell_id"]: o for o in written}
    labels = inspection.cells.labels
    edge = set(np.unique(labels[[0, -1]])) | set(np.unique(labels[:, [0, -1]]))
    for cell in table.itertuples():
        obj = by_name[cell.cell_id]
        assert obj.class_name == cell.class_name
        if cell.label not in edge:  # a whole nucleus: its pixels' centroid is the table's
            centroid = obj.geometry.centroid  # (a concave nucleus may not contain it)
            assert (
                abs(centroid.x - cell.centroid_x) < 0.5 and abs(centroid.y - cell.centroid_y) < 0.5
            )


QUPATH_FILE = {
    "type": "FeatureCollection",
    "features": [
        {
            "type": "Feature",
            "id": "b1f0a6f0-4c1e-4a55-9d6a-1e9c8a0f0c01",
            "geometry": {
                "type": "Polygon",
                "coordinates": [[[300, 400], [900, 400], [900, 1000], [300, 1000], [300, 400]]],
            },
            "properties": {
                "objectType": "annotation",
                "name": "basal plasmacytosis",
                "classification": {"name": "Chronic", "color": [0, 128, 255]},
                "measurements": {"Area µm^2": 89640.0},
            },
        },
    ],
}


def test_import_qupath_geojson_reader_and_writer(
    make_napari_viewer: Any, results_root: Path, small_svs: Path, tmp_path: Path, notes: list
) -> None:
    import npe2

    viewer, _, session = _open(make_napari_viewer, small_svs)
    mpp = float(session.slide.mpp)
    _, exporter = viewer.window.add_plugin_dock_widget(PLUGIN, "Export / import")
    assert type(exporter).__name__ == "ExportPanel"
    path = tmp_path / "qupath.geojson"
    path.write_text(json.dumps(QUPATH_FILE), encoding="utf-8")
    layer = exporter.import_geojson(path)
    assert layer.nshapes == 1 and layer.shape_type == ["polygon"]
    expected = level0_to_world(np.array([[300, 400], [900, 400], [900, 1000], [300, 1000]]), mpp)
    np.testing.assert_allclose(layer.data[0], expected, atol=1e-4)
    assert layer.data[0][0] == pytest.approx([399.5 * mpp, 299.5 * mpp], abs=1e-4)
    assert layer.features["classification"].tolist() == ["Chronic"]
    assert layer.features["name"].tolist() == ["basal plasmacytosis"]
    assert layer.features["Area µm^2"].tolist() == [89640.0]
    # the same file through the npe2 reader (File > Open)
    (opened,) = viewer.open(path, plugin=PLUGIN)
    np.testing.assert_allclose(opened.data[0], expected, atol=1e-4)

    # malformed, or in another coordinate space: an error notification, no layer, no raise
    n_layers = len(viewer.layers)
    bad = tmp_path / "bad.geojson"
    bad.write_text('{"type": "FeatureCollection", "features": [{"type": "Feature"', "utf-8")
    assert exporter.import_geojson(bad) is None
    microns = json.loads(json.dumps(QUPATH_FILE))
    microns["features"][0]["geometry"]["coordinates"] = [
        [[0, 0], [0.9, 0], [0.9, 0.5], [0, 0.5], [0, 0]]
    ]
    unit = tmp_path / "unit.geojson"
    unit.write_text(json.dumps(microns), encoding="utf-8")
    assert viewer.open(unit, plugin=PLUGIN) == []
    assert len(viewer.layers) == n_layers
    errors = [message for level, message in notes if level == "error"]
    assert any("bad.geojson" in m and "not valid JSON" in m for m in errors)
    assert any("unit.geojson" in m and "normalised 0-1" in m for m in errors)

    # the writer: the regions layer and a Labels layer placed like the tile inspector's
    (regions,) = layers_with_role(viewer, REGIONS_ROLE)
    regions.add_polygons([level0_to_world(np.array([[100, 100], [400, 120], [250, 380]]), mpp)])
    out = tmp_path / "regions.geojson"
    assert npe2.write(out, [regions], plugin_name=PLUGIN) == [str(out)]
    (triangle,) = read_geojson(out)
    assert triangle.object_type == "annotation"
    assert (
        shapely.hausdorff_distance(
            triangle.geometry, shapely.Polygon([(100, 100), (400, 120), (250, 380)])
        )
        < 0.02
    )
    labels = np.zeros((20, 20), np.int32)
    labels[2:6, 4:10] = 3
    x0, y0, s = 1344, 1120, 2.0
    cells = viewer.add_labels(
        labels,
        scale=(s * mpp, s * mpp),
        translate=((y0 + 0.5) * mpp, (x0 + 0.5) * mpp),
        features=pd.DataFrame({"index": [3], "class_name": ["Plasmocytes"], "area_um2": [24.0]}),
    )
    viewer.layers.selection = {cells}
    written = viewer.layers.save(str(tmp_path / "cells.geojson"), selected=True, plugin=PLUGIN)
    assert written == [str(tmp_path / "cells.geojson")]
    objects = read_geojson(tmp_path / "cells.geojson")
    by_type = {o.object_type: o for o in objects}
    cell = by_type["detection"]
    assert cell.class_name == "Plasmocytes" and cell.measurements == {"area_um2": 24.0}
    assert cell.geometry.equals(shapely.box(x0 + 8, y0 + 4, x0 + 20, y0 + 12))
    assert (
        read_geojson_context(tmp_path / "cells.geojson").model_sha256
        == (session.prediction.info["model_sha256"])
    )
    assert cells in viewer.layers


def test_typed_notes_survive_moving_on_and_other_windows_edits_appear(
    make_napari_viewer: Any, results_root: Path, small_svs: Path, notes: list
) -> None:
    from napari_imilia.review.session import ReviewSession

    _viewer, panel, session = _open(make_napari_viewer, small_svs)
    first, second, third = session.ranked_tiles(3)["tile_id"]

    # an edit of a saved review, never confirmed with Enter, is saved when the tile changes
    session.select_tile(first)
    panel.verdict_buttons["agree"].click()
    panel.note_edit.setText("edited, no Enter")
    session.select_tile(second)
    assert session.review.entries()[0].note == "edited, no Enter"

    # a note typed before any verdict is kept for its tile and comes back with it
    panel.note_edit.setText("look at the crypts")
    panel.class_combo.setEditText("cryptitis")
    session.select_tile(third)
    assert panel.note_edit.text() == "" and len(session.review) == 1
    session.select_tile(second)
    assert panel.note_edit.text() == "look at the crypts"
    assert panel.class_combo.currentText() == "cryptitis"
    assert "your note is kept" in panel.target_label.text()
    panel.verdict_buttons["disagree"].click()  # the verdict saves it with the note
    saved = [e for e in session.review.entries() if e.tile_id == second]
    assert [(e.verdict, e.note, e.reviewer_class) for e in saved] == [
        ("disagree", "look at the crypts", "cryptitis")
    ]
    session.select_tile(third)
    session.select_tile(second)
    assert "your note is kept" not in panel.target_label.text()

    # a verdict saved by another window appears in this dock's list
    other = ReviewSession.open(small_svs, results_root)
    other.add_review(verdict="uncertain", tile_id=third, note="second reviewer")
    assert panel.sync_from_others() is True
    assert len(panel.listed_entry_ids()) == 3
    assert panel.sync_timer.isActive()
