"""HistoPLUS JSON import/export: coordinate conversion, class names, round trip, bad files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from skimage.draw import ellipse

from napari_imilia.errors import DataError, ImiliaError
from napari_imilia.interpret.cells import create_cell_backend, list_cell_backends
from napari_imilia.interpret.cells.histoplus_json import (
    HistoPlusJsonBackend,
    canonical_class_name,
    deepzoom_downsample,
    deepzoom_level_count,
    read_histoplus_json,
)
from napari_imilia.interpret.cells.histoplus_json_write import write_histoplus_json
from napari_imilia.interpret.cells.measure import build_tile_cells
from napari_imilia.interpret.cells.types import CELL_CLASSES, class_id

SLIDE_WH = (2220, 2967)  # small_HE.svs: 13 DeepZoom levels, level 12 is level 0
LEVEL_HALF = 11  # DeepZoom level at half resolution: 2 level-0 px per pixel


def _cell(cell_id, cell_type="Lymphocytes", confidence=0.9, box=(10, 10, 20, 20)):
    x0, y0, x1, y1 = box
    return {
        "cell_id": float(cell_id),
        "cell_type": cell_type,
        "confidence": confidence,
        "coordinates": [[x0, y0], [x1, y0], [x1, y1], [x0, y1]],
        "centroid": [(x0 + x1) / 2, (y0 + y1) / 2],
    }


def _document(masks, *, x=1.0, y=2.0, level=float(LEVEL_HALF)):
    return {
        "model_name": "histoplus_cellvit_segmentor_20x",
        "inference_mpp": 0.5,
        "cell_masks": [
            {"x": x, "y": y, "level": level, "width": 224.0, "height": 224.0, "masks": masks}
        ],
    }


def _write(tmp_path: Path, document, name="cell_masks.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def test_deepzoom_levels_follow_openslide():
    assert deepzoom_level_count(SLIDE_WH) == 13  # ceil(log2(2967)) + 1
    assert deepzoom_level_count((1, 1)) == 1
    assert deepzoom_level_count((100_000, 80_000)) == 18
    assert deepzoom_downsample(12, SLIDE_WH) == 1.0
    assert deepzoom_downsample(LEVEL_HALF, SLIDE_WH) == 2.0
    with pytest.raises(DataError, match="level 13 does not exist"):
        deepzoom_downsample(13, SLIDE_WH)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("Plasmocyte", "Plasmocytes"),
        ("plasmocytes", "Plasmocytes"),
        ("LYMPHOCYTE", "Lymphocytes"),
        ("red_blood_cells", "Red blood cell"),
        ("Cancer cells", "Cancer cell"),
        ("Mitotic Figure", "Mitotic Figures"),
        ("minor-stromal cell", "Minor Stromal Cell"),
        ("plasma cell", "Plasmocytes"),
        ("Epithelial", "Epithelial"),
        ("Kupffer cell", None),
    ],
)
def test_cell_type_names_are_tolerated(given, expected):
    assert canonical_class_name(given) == expected


def test_tile_local_coordinates_become_level0(tmp_path):
    path = _write(tmp_path, _document([_cell(0, "Plasmocyte", 0.75)]))
    cells = read_histoplus_json(path, level0_dimensions=SLIDE_WH)
    # tile (1, 2) of 224 px at 2 level-0 px per pixel; centroid (15, 15) in the tile is the
    # centre of that level's pixel (239, 463): level-0 (239.5 * 2, 463.5 * 2), continuous
    assert cells.centroids_xy.tolist() == [[(224 + 15.5) * 2, (448 + 15.5) * 2]]
    np.testing.assert_array_equal(cells.polygons[0][0], [(224 + 10.5) * 2, (448 + 10.5) * 2])
    assert cells.class_ids.tolist() == [class_id("Plasmocytes")]
    assert cells.cell_ids == [f"histoplus:{LEVEL_HALF}:1:2:0"]

    tile = cells.region_cells((448, 896), (224, 224), mpp=0.998, level0_per_px=2.0)
    assert tile.n_cells == 1
    row = tile.table.iloc[0]
    assert row["class_name"] == "Plasmocytes" and row["probability"] == 0.75
    assert (row["centroid_x"], row["centroid_y"]) == (479.0, 927.0)
    # OpenCV polygons run through boundary pixel centres: 11 x 11 pixels
    assert int((tile.labels > 0).sum()) == 121
    assert row["area_um2"] == pytest.approx(121 * 0.998**2)
    assert tile.table["cell_id"].tolist() == [f"histoplus:{LEVEL_HALF}:1:2:0"]


def test_degenerate_polygons_still_get_pixels(tmp_path):
    line = {**_cell(0), "coordinates": [[5, 5], [10, 5], [15, 5]], "centroid": [10, 5]}
    cells = read_histoplus_json(_write(tmp_path, _document([line])), level0_dimensions=SLIDE_WH)
    tile = cells.region_cells((448, 896), (224, 224), mpp=0.998, level0_per_px=2.0)
    assert tile.n_cells == 1
    assert int((tile.labels > 0).sum()) == 11  # the line's 11 pixels
    assert tile.labels[5, 5:16].all()


def test_a_cell_belongs_to_the_region_holding_its_centroid(tmp_path):
    # a cell whose polygon crosses x = 448 (level 0) but whose centroid is left of it
    masks = [_cell(0, box=(-30, 10, 3, 20))]
    cells = read_histoplus_json(_write(tmp_path, _document(masks)), level0_dimensions=SLIDE_WH)
    left = cells.region_cells((0, 896), (224, 224), mpp=0.998, level0_per_px=2.0)
    right = cells.region_cells((448, 896), (224, 224), mpp=0.998, level0_per_px=2.0)
    assert (left.n_cells, right.n_cells) == (1, 0)
    assert left.labels[:, -1].any()  # clipped at the region's edge, not dropped


def _tile_cells(level0_xy=(448, 896)):
    labels = np.zeros((224, 224), dtype=np.int32)
    shapes = [(40, 50, 6, 4), (120, 90, 5, 5), (200, 30, 7, 3), (100, 221, 5, 5)]
    for label, (row, col, r_radius, c_radius) in enumerate(shapes, start=1):
        rr, cc = ellipse(row, col, r_radius, c_radius, shape=labels.shape, rotation=0.3 * label)
        labels[rr, cc] = label
    class_ids = np.array([0, class_id("Lymphocytes"), class_id("Eosinophils"), 11, 4])
    probabilities = np.array([np.nan, 0.8, 0.55, np.nan, 0.99])
    return build_tile_cells(
        labels,
        class_ids,
        probabilities,
        None,
        mpp=0.998,
        level0_xy=level0_xy,
        level0_per_px=2.0,
        backend="classical",
    )


def test_round_trip_rebuilds_labels_classes_and_confidences(tmp_path):
    original = _tile_cells()
    path = write_histoplus_json(tmp_path / "out.json", [original], level0_dimensions=SLIDE_WH)
    document = json.loads(path.read_text())
    assert set(document) == {"model_name", "inference_mpp", "cell_masks"}
    assert {tile["level"] for tile in document["cell_masks"]} == {float(LEVEL_HALF)}
    assert document["cell_masks"][0]["masks"][0]["cell_type"] in CELL_CLASSES

    back = HistoPlusJsonBackend(path, level0_dimensions=SLIDE_WH, level0_mpp=0.499)
    assert back.analysis_mpp == pytest.approx(0.998)
    tile = back.segment(
        np.full((224, 224, 3), 255, np.uint8), mpp=0.998, level0_xy=(448, 896), level0_per_px=2.0
    )
    assert tile.n_cells == original.n_cells
    order = np.argsort(tile.table["centroid_x"].to_numpy())
    expected = np.argsort(original.table["centroid_x"].to_numpy())
    got, want = tile.table.iloc[order], original.table.iloc[expected]
    assert got["class_name"].tolist() == want["class_name"].tolist()
    np.testing.assert_allclose(got["probability"], want["probability"])  # NaN -> null -> NaN
    np.testing.assert_allclose(got["centroid_x"], want["centroid_x"], atol=1e-9)
    np.testing.assert_allclose(got["area_um2"], want["area_um2"])
    lut = np.zeros(original.labels.max() + 1, dtype=np.int32)
    lut[want["label"].to_numpy()] = got["label"].to_numpy()
    np.testing.assert_array_equal(tile.labels, lut[original.labels])


def test_writer_bins_cells_into_deepzoom_tiles(tmp_path):
    original = _tile_cells(level0_xy=(300, 896))  # not aligned to the 224-px grid
    path = write_histoplus_json(tmp_path / "out.json", [original], level0_dimensions=SLIDE_WH)
    document = json.loads(path.read_text())
    for tile in document["cell_masks"]:
        for cell in tile["masks"]:
            assert 0 <= cell["centroid"][0] < 224 and 0 <= cell["centroid"][1] < 224
    assert {tile["x"] for tile in document["cell_masks"]} == {0.0, 1.0}
    cells = read_histoplus_json(path, level0_dimensions=SLIDE_WH)
    np.testing.assert_allclose(
        np.sort(cells.centroids_xy[:, 0]), np.sort(original.table["centroid_x"].to_numpy())
    )


def test_writer_needs_a_deepzoom_level_for_odd_scales(tmp_path):
    odd = build_tile_cells(
        np.ones((8, 8), np.int32),
        [0, 2],
        None,
        None,
        mpp=0.75,
        level0_xy=(0, 0),
        level0_per_px=1.5,
        backend="classical",
    )
    with pytest.raises(DataError, match="deepzoom_level"):
        write_histoplus_json(tmp_path / "x.json", [odd], level0_dimensions=SLIDE_WH)
    write_histoplus_json(tmp_path / "x.json", [odd], level0_dimensions=SLIDE_WH, deepzoom_level=12)
    assert len(read_histoplus_json(tmp_path / "x.json", level0_dimensions=SLIDE_WH)) == 1


def _broken(document, *path_and_value):
    *keys, value = path_and_value
    target = document
    for key in keys[:-1]:
        target = target[key]
    if value is KeyError:
        del target[keys[-1]]
    else:
        target[keys[-1]] = value
    return document


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("model_name", KeyError), "lacks model_name"),
        (("cell_masks", {"a": 1}), "cell_masks has the wrong type dict"),
        (("cell_masks", 0, "level", KeyError), r"cell_masks\[0\] lacks level"),
        (("cell_masks", 0, "x", True), r"cell_masks\[0\].x has the wrong type bool"),
        (("cell_masks", 0, "level", 14.0), "level 14 does not exist"),
        (("cell_masks", 0, "masks", 0, "centroid", KeyError), r"masks\[0\] lacks centroid"),
        (("cell_masks", 0, "masks", 0, "coordinates", [[1, 2], [3, 4]]), "at least 3"),
        (("cell_masks", 0, "masks", 0, "coordinates", [[1, "a"]] * 3), "number pair"),
        (("cell_masks", 0, "masks", 0, "cell_type", 3), "cell_type has the wrong type int"),
        (("cell_masks", 0, "masks", 0, "cell_type", "Kupffer cell"), "unknown cell type"),
        (("cell_masks", 0, "x", 40.0), "outside the 2220 x 2967 px slide"),
    ],
)
def test_malformed_files_raise_data_errors_naming_the_file(tmp_path, change, message):
    path = _write(tmp_path, _broken(_document([_cell(0)]), *change))
    with pytest.raises(DataError, match=message) as error:
        read_histoplus_json(path, level0_dimensions=SLIDE_WH)
    assert "cell_masks.json" in str(error.value)


@pytest.mark.parametrize(("text", "message"), [("", "not valid JSON"), ("[1, 2]", "JSON object")])
def test_empty_or_non_object_files_are_rejected(tmp_path, text, message):
    path = tmp_path / "cell_masks.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        read_histoplus_json(path, level0_dimensions=SLIDE_WH)
    with pytest.raises(DataError, match="not found"):
        read_histoplus_json(tmp_path / "missing.json", level0_dimensions=SLIDE_WH)


def test_unknown_types_can_be_mapped_and_empty_slides_read(tmp_path):
    path = _write(tmp_path, _document([_cell(0, "Kupffer cell"), _cell(1, "Neutrophil")]))
    cells = read_histoplus_json(path, level0_dimensions=SLIDE_WH, unknown_as="Macrophages")
    assert [CELL_CLASSES[c] for c in cells.class_ids] == ["Macrophages", "Neutrophils"]
    with pytest.raises(DataError, match="unknown_as"):
        read_histoplus_json(path, level0_dimensions=SLIDE_WH, unknown_as="Goblet")
    empty = _write(tmp_path, {**_document([]), "cell_masks": []}, "empty.json")
    assert len(read_histoplus_json(empty, level0_dimensions=SLIDE_WH)) == 0


def test_registry_creates_the_json_backend(tmp_path):
    assert {"classical", "cellvit", "histoplus-json"} <= set(list_cell_backends())
    path = _write(tmp_path, _document([_cell(0)], x=0.0, y=0.0))
    backend = create_cell_backend("histoplus_json", path=path, level0_dimensions=SLIDE_WH)
    tiles = backend.segment_many([])
    assert tiles == []
    with pytest.raises(ImiliaError, match="unknown cell backend"):
        create_cell_backend("stardist")
    with pytest.raises(ImiliaError, match="bad options"):
        create_cell_backend("histoplus-json", path=path, dimensions=SLIDE_WH)
    with pytest.raises(DataError, match="level0_dimensions"):
        create_cell_backend("histoplus-json", path=path)


def test_backend_reads_slide_dimensions_from_the_slide(tmp_path, small_svs):
    path = _write(tmp_path, _document([_cell(0)], x=0.0, y=0.0))
    backend = create_cell_backend("histoplus-json", path=path, slide=small_svs)
    assert backend.cells.level0_dimensions == SLIDE_WH
    assert backend.analysis_mpp == pytest.approx(0.998)
