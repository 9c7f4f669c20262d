"""Layer data <-> level-0 geometries, layers as QuPath features, GeoJSON as layer data (no Qt)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import shapely

from napari_imilia._napari.geojson_reader import Placement, geojson_layer_data
from napari_imilia._napari.writer import write_geojson_layers
from napari_imilia.errors import DataError
from napari_imilia.export import (
    ExportContext,
    color_for_name,
    read_geojson,
    read_geojson_context,
)
from napari_imilia.export.layer_geojson import (
    labels_layer_to_features,
    labels_placement,
    layer_mpp,
    shapes_layer_to_features,
)
from napari_imilia.export.layers import (
    ellipse_polygon,
    labels_to_geometries,
    layer_to_level0,
    level0_to_world,
    region_vertices,
    shape_geometry,
    world_um_to_level0_xy,
)
from napari_imilia.review.exports import LAYER_CLASS_COLORS

MPP = 0.5


def test_level0_world_round_trip_and_pixel_centres() -> None:
    xy = np.array([[0.5, 0.5], [10.5, 20.5], [100.0, 0.0]])
    world = level0_to_world(xy, MPP)
    # the centre of level-0 pixel (10, 20) is world (row 20, col 10) * mpp, as for the slide
    np.testing.assert_allclose(world[1], [20 * MPP, 10 * MPP])
    np.testing.assert_allclose(world[2], [-0.25, 49.75])
    np.testing.assert_allclose(world_um_to_level0_xy(world, MPP), xy)
    # a layer with its own scale and translate (µm) and a leading z axis
    data = np.array([[3.0, 2.0, 4.0]])
    xy0 = layer_to_level0(data, MPP, scale=(1, 2.0, 2.0), translate=(0, 10.0, 0.0))
    np.testing.assert_allclose(xy0, [[4 * 2 / MPP + 0.5, (2 * 2 + 10) / MPP + 0.5]])


def test_shape_geometries() -> None:
    box = np.array([[0, 0], [10, 0], [10, 20], [0, 20]], dtype=float)
    assert shape_geometry(box, "rectangle").area == pytest.approx(200.0)
    ellipse = shape_geometry(box, "ellipse")
    assert ellipse.area == pytest.approx(np.pi * 5 * 10, rel=0.01)
    assert ellipse.centroid.coords[0] == pytest.approx((5.0, 10.0))
    rotated = ellipse_polygon(np.array([[0, 5], [5, 0], [10, 5], [5, 10]], dtype=float))
    assert rotated.area == pytest.approx(np.pi * 50 / 4, rel=0.01)  # circle in a diamond
    line = shape_geometry(box[:2], "path")
    assert line.geom_type == "LineString" and line.length == pytest.approx(10.0)
    assert region_vertices(shape_geometry(box, "polygon")) == [tuple(p) for p in box.tolist()]
    with pytest.raises(DataError, match="closed area"):
        region_vertices(line)
    with pytest.raises(DataError, match="3 distinct"):
        shape_geometry(box[:2], "polygon")
    with pytest.raises(DataError, match="unknown napari shape type"):
        shape_geometry(box, "circle")


def test_labels_to_geometries_placement() -> None:
    labels = np.zeros((10, 12), np.int32)
    labels[2:4, 3:7] = 1  # 2 x 4 pixels
    labels[6:9, 0:2] = 5
    labels[6:9, 10:12] = 5  # label 5 in two parts
    shapes = labels_to_geometries(labels, level0_xy=(100, 200), level0_per_px=2.0)
    assert sorted(shapes) == [1, 5]
    assert shapes[1].equals(shapely.box(106, 204, 114, 208))
    assert shapes[5].geom_type == "MultiPolygon" and shapes[5].area == pytest.approx(12 * 4)
    with pytest.raises(DataError, match="2-D"):
        labels_to_geometries(labels[None], (0, 0), 1.0)


def test_labels_placement_from_scale_matches_inspector_convention() -> None:
    # a mask with 2 level-0 px per pixel whose first pixel covers level-0 [100, 102)
    s, x0, y0 = 2.0, 100.0, 40.0
    translate = ((y0 + (s - 1) / 2) * MPP, (x0 + (s - 1) / 2) * MPP)
    meta = {"scale": (s * MPP, s * MPP), "translate": translate, "metadata": {}}
    xy, per_px = labels_placement(meta, MPP)
    assert xy == pytest.approx((x0, y0)) and per_px == pytest.approx(s)
    stored = {"metadata": {"level0_xy": [7, 9], "level0_per_px": 1.5}}
    assert labels_placement(stored, None) == ((7.0, 9.0), 1.5)
    with pytest.raises(DataError, match="µm/px is unknown"):
        labels_placement({"name": "m", "metadata": {}}, None)


def test_shapes_layer_to_features_properties() -> None:
    rect_um = level0_to_world(np.array([[10, 20], [50, 20], [50, 60], [10, 60]]), MPP)
    path_um = level0_to_world(np.array([[0, 0], [30, 40]]), MPP)
    features = pd.DataFrame(
        {
            "id": ["0d5c4f87-2c3b-4a9e-9f43-3b9b5a1c2e11", ""],
            "classification": ["active inflammation", ""],
            "name": ["abscess", ""],
            "Num Detections": [12.0, np.nan],
            "note": ["crypt", ""],
        }
    )
    meta = {"name": "drawn", "shape_type": ["rectangle", "path"], "features": features}
    first, second = shapes_layer_to_features(
        [rect_um, path_um], meta, MPP, class_colors=LAYER_CLASS_COLORS
    )
    assert first["id"] == "0d5c4f87-2c3b-4a9e-9f43-3b9b5a1c2e11"
    assert shapely.geometry.shape(first["geometry"]).equals(shapely.box(10, 20, 50, 60))
    props = first["properties"]
    assert props["objectType"] == "annotation" and props["name"] == "abscess"
    assert props["classification"] == {"name": "active inflammation", "color": [220, 40, 40]}
    assert props["measurements"] == {"Num Detections": 12.0}
    assert props["metadata"] == {"note": "crypt"}
    assert second["geometry"]["type"] == "LineString"
    assert second["geometry"]["coordinates"] == [[0.0, 0.0], [30.0, 40.0]]
    assert "measurements" not in second["properties"]
    assert first["id"] != second["id"]
    with pytest.raises(DataError, match="2 objects but 1 feature rows"):
        shapes_layer_to_features([rect_um, path_um], {**meta, "features": features.iloc[:1]}, MPP)


def test_labels_layer_to_features_class_from_features() -> None:
    labels = np.zeros((8, 8), np.uint16)
    labels[1:3, 1:3] = 4
    labels[5:7, 5:8] = 9
    meta = {
        "name": "cells",
        "metadata": {"level0_xy": (1000, 2000), "level0_per_px": 1.0},
        "features": pd.DataFrame(
            {"index": [4, 9], "class_name": ["Lymphocytes", "Neutrophils"], "area": [4.0, 6.0]}
        ),
    }
    lymph, neutro = labels_layer_to_features(labels, meta, None, class_colors=LAYER_CLASS_COLORS)
    assert lymph["properties"]["objectType"] == "detection"
    assert lymph["properties"]["classification"] == {"name": "Lymphocytes", "color": [0, 130, 200]}
    assert lymph["properties"]["measurements"] == {"area": 4.0}
    assert shapely.geometry.shape(lymph["geometry"]).equals(shapely.box(1001, 2001, 1003, 2003))
    assert neutro["properties"]["name"] == "cells 9"


def test_writer_passes_the_project_classes_the_format_layer_knows_none(tmp_path: Path) -> None:
    mask = np.zeros((6, 6), np.uint8)
    mask[1:4, 1:5] = 1
    meta = {
        "name": "epithelium",
        "metadata": {
            "level0_xy": (100, 200),
            "level0_per_px": 2.0,
            "imilia_role": "inspection_epithelium",
            "imilia_mpp": MPP,
        },
        "features": pd.DataFrame({"index": [1], "reviewer_class": ["normal"]}),
    }
    plain = {**meta, "features": None}
    # export alone: no class from the role, stable colours per name
    (bare,) = labels_layer_to_features(mask, plain, MPP)
    assert "classification" not in bare["properties"]
    (named,) = labels_layer_to_features(mask, meta, MPP)
    assert named["properties"]["classification"] == {
        "name": "normal",
        "color": list(color_for_name("normal")),
    }
    # the napari writer passes the review colours and the epithelium role's class
    (out,) = write_geojson_layers(
        str(tmp_path / "epi.geojson"), [(mask, plain, "labels"), (mask, meta, "labels")]
    )
    epithelium, normal = read_geojson(out)
    assert epithelium.class_name == "Epithelium"
    assert epithelium.geometry.equals(shapely.box(102, 202, 110, 208))
    assert normal.class_name == "normal" and normal.color == (40, 170, 80)


def test_layer_mpp_sources() -> None:
    assert layer_mpp({"metadata": {"imilia_mpp": 0.25}}) == 0.25
    assert layer_mpp({"metadata": {"imilia_slide": {"mpp": 0.3}}}) == 0.3
    assert layer_mpp({"metadata": {}}, fallback=0.5) == 0.5
    assert layer_mpp({"metadata": {"mpp": float("nan")}}) is None


QUPATH_ANNOTATIONS = {
    "type": "FeatureCollection",
    "features": [
        {
            "type": "Feature",
            "id": "9a1c7e1e-6f7e-4d55-8b07-0f4d0c2b3a11",
            "geometry": {
                "type": "Polygon",
                "coordinates": [[[100, 200], [500, 200], [500, 800], [100, 800], [100, 200]]],
            },
            "properties": {
                "objectType": "annotation",
                "name": "ulcer",
                "classification": {"name": "Inflammation", "color": [255, 0, 0]},
                "measurements": {"Area µm^2": 60000.0},
                "metadata": {"author": "QuPath user"},
            },
        },
        {
            "type": "Feature",
            "geometry": {"type": "LineString", "coordinates": [[0, 0], [100, 50]]},
            "properties": {"objectType": "annotation"},
        },
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [5, 6]}, "properties": {}},
    ],
}


def test_geojson_layer_data_and_writer_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "qupath.geojson"
    path.write_text(json.dumps(QUPATH_ANNOTATIONS), encoding="utf-8")
    placement = Placement(MPP, "slide-1", (2000, 3000), {"mpp": MPP})
    data, kwargs, kind = geojson_layer_data(path, placement)
    assert kind == "shapes" and kwargs["shape_type"] == ["polygon", "path"]
    np.testing.assert_allclose(data[0][0], [(200 - 0.5) * MPP, (100 - 0.5) * MPP])
    np.testing.assert_allclose(data[0][2], [(800 - 0.5) * MPP, (500 - 0.5) * MPP])
    features = kwargs["features"]
    assert features["classification"].tolist() == ["Inflammation", ""]
    assert features["Area µm^2"].iloc[0] == 60000.0 and np.isnan(features["Area µm^2"].iloc[1])
    assert json.loads(features["metadata"].iloc[0]) == {"author": "QuPath user"}
    assert kwargs["edge_color"][0].tolist() == [1.0, 0.0, 0.0, 1.0]
    assert any("point object" in n for n in kwargs["metadata"]["imilia_import_notes"])
    assert kwargs["units"] == ("µm", "µm")
    # writing the layer back gives the same level-0 objects and properties
    layer_meta = {**kwargs, "name": "qupath"}
    (out,) = write_geojson_layers(str(tmp_path / "back.geojson.gz"), [(data, layer_meta, "shapes")])
    assert out.endswith(".geojson.gz")
    ulcer, line = read_geojson(out)
    assert ulcer.geometry.equals(shapely.box(100, 200, 500, 800))
    assert ulcer.id == "9a1c7e1e-6f7e-4d55-8b07-0f4d0c2b3a11" and ulcer.class_name == "Inflammation"
    assert ulcer.measurements == {"Area µm^2": 60000.0}
    assert ulcer.properties["metadata"] == {"author": "QuPath user"}
    assert line.geometry.equals(shapely.LineString([(0, 0), (100, 50)]))
    ctx = read_geojson_context(out)
    assert ctx is not None and ctx.mpp == MPP and ctx.model_name == "none"


def test_geojson_layer_data_rejects_other_spaces(tmp_path: Path) -> None:
    path = tmp_path / "um.geojson"
    path.write_text(json.dumps(QUPATH_ANNOTATIONS), encoding="utf-8")
    tiny_slide = Placement(2.0, "s", (300, 200), None)  # the file is 500 x 800 px: µm?
    with pytest.raises(DataError, match="outside the slide"):
        geojson_layer_data(path, tiny_slide)
    (tmp_path / "bad.geojson").write_text('{"type": "FeatureCollection", "features": [', "utf-8")
    with pytest.raises(DataError, match="not valid JSON"):
        geojson_layer_data(tmp_path / "bad.geojson", None)


def test_geojson_without_slide_uses_file_context(tmp_path: Path) -> None:
    from napari_imilia.export import polygons_to_features, write_geojson

    ctx = ExportContext("s1", "/s1.svs", "m", "ab" * 32, "builtin", 0.25, 224)
    path = write_geojson(
        tmp_path / "ours.geojson", polygons_to_features([shapely.box(0, 0, 40, 40)]), ctx
    )
    data, kwargs, _ = geojson_layer_data(path, None)
    assert kwargs["metadata"]["imilia_mpp"] == 0.25
    assert kwargs["metadata"]["imilia_export"]["model_sha256"] == "ab" * 32
    np.testing.assert_allclose(data[0].max(axis=0), [(40 - 0.5) * 0.25] * 2)
    assert kwargs["units"] == ("µm", "µm")


def test_empty_geojson_imports_with_a_note(tmp_path):
    import json

    from napari_imilia._napari.geojson_reader import geojson_layer_data

    path = tmp_path / "empty.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    data, kwargs, kind = geojson_layer_data(path, None)
    assert kind == "shapes" and len(data) == 0
    assert any("holds no shapes" in note for note in kwargs["metadata"]["imilia_import_notes"])
