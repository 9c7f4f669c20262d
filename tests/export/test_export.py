"""QuPath GeoJSON and CSV export/import: round trips, QuPath-written files, malformed input."""

from __future__ import annotations

import gzip
import json
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import shapely
from shapely.geometry import MultiPolygon, Polygon

from napari_imilia.errors import DataError
from napari_imilia.export import (
    QUPATH_PROPERTY_KEYS,
    ExportContext,
    csv_meta_path,
    polygons_to_features,
    read_geojson,
    read_geojson_context,
    read_table_csv,
    tiles_to_features,
    write_geojson,
    write_table_csv,
)
from napari_imilia.interpret.cells import CELL_MEASUREMENTS, cells_to_features
from napari_imilia.interpret.cells.types import CELL_CLASS_COLORS, TileCells


@pytest.fixture
def ctx() -> ExportContext:
    return ExportContext(
        slide_id="slide-7",
        slide_path=Path("/data/slide-7.svs"),  # stored as text; equal after a JSON round trip
        model_name="chowder-demo",
        model_sha256="ab" * 32,
        extractor="builtin",
        mpp=0.5,
        tile_px=224,
        software_version="9.9.9",
    )


@pytest.fixture
def tiles() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "tile_id": ["000001", "000002", "000003"],
            "x": [0.0, 448.0, 896.004],
            "y": [10.0, 10.0, 458.0],
            "width": [448, 448, 448],
            "height": [448, 448, 448],
            "tissue_fraction": [0.5, 1.0, 0.75],
            "score": [0.25, np.nan, -1.5],
            "rank": [2, 3, 1],
            "note": ["a", "b", "c"],
        }
    )


def _circle(cx: float, cy: float, r: float, n: int = 16) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.c_[cx + r * np.cos(t), cy + r * np.sin(t)]


@pytest.fixture
def cells() -> TileCells:
    contours = [_circle(100.3, 100.7, 6), _circle(130.0, 100.0, 5), _circle(300.0, 250.0, 4)]
    table = pd.DataFrame(
        {
            "cell_id": ["t1:1", "t1:2", "t1:3"],
            "label": [1, 2, 3],
            "class_id": [2, 6, 14],
            "class_name": ["Lymphocytes", "Neutrophils", "Minor Stromal Cell"],
            "probability": [0.9, 0.8, 0.55],
            "centroid_x": [100.3, 130.0, 300.0],
            "centroid_y": [100.7, 100.0, 250.0],
            "area_um2": [28.0, 19.5, 12.5],
            "eccentricity": [0.1, 0.2, np.nan],
            "mean_hematoxylin_od": [0.61, 0.48, 0.33],
        }
    )
    labels = np.zeros((8, 8), np.int32)
    return TileCells(labels, table, contours, 0.5, (0, 0), 1.0, "test")


def _box(x: float, y: float, w: float, h: float) -> Polygon:
    return shapely.box(x, y, x + w, y + h)


def test_tiles_round_trip(tmp_path: Path, tiles: pd.DataFrame, ctx: ExportContext) -> None:
    path = write_geojson(tmp_path / "tiles.geojson", tiles_to_features(tiles, ctx), ctx)
    objects = read_geojson(path, slide_dimensions_px=(2000, 2000))
    assert [o.name for o in objects] == ["000001", "000002", "000003"]
    for obj, row in zip(objects, tiles.itertuples(), strict=True):
        assert obj.object_type == "tile"
        assert obj.geometry.is_valid and obj.geometry.exterior.is_ccw
        expected = _box(row.x, row.y, row.width, row.height)
        assert shapely.hausdorff_distance(obj.geometry, expected) <= 0.01
        assert obj.class_name is None
    assert objects[0].measurements == {"tissue_fraction": 0.5, "score": 0.25, "rank": 2.0}
    assert objects[1].measurements == {"tissue_fraction": 1.0, "rank": 3.0}  # NaN dropped
    assert len({o.id for o in objects}) == 3


def test_metadata_and_qupath_only_properties(
    tmp_path: Path, tiles: pd.DataFrame, cells: TileCells, ctx: ExportContext
) -> None:
    features = tiles_to_features(tiles, ctx) + cells_to_features(cells, ctx)
    path = write_geojson(tmp_path / "all.geojson", features, ctx)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["type"] == "FeatureCollection"
    assert data["imilia"]["model_sha256"] == "ab" * 32
    assert data["imilia"]["n_features"] == 6
    assert "level-0" in data["imilia"]["coordinates"]
    for feature in data["features"]:
        assert set(feature["properties"]) <= QUPATH_PROPERTY_KEYS | {"objectType"}
    assert read_geojson_context(path) == ctx
    foreign = tmp_path / "qupath.geojson"
    foreign.write_text(json.dumps(QUPATH_FILE), encoding="utf-8")
    assert read_geojson_context(foreign) is None


def test_cells_round_trip(tmp_path: Path, cells: TileCells, ctx: ExportContext) -> None:
    path = write_geojson(tmp_path / "cells.geojson", cells_to_features(cells, ctx), ctx)
    objects = read_geojson(path, slide_dimensions_px=(1000, 1000))
    assert [o.object_type for o in objects] == ["cell"] * 3
    for obj, contour, row in zip(objects, cells.contours, cells.table.itertuples(), strict=True):
        nucleus = Polygon(contour)
        assert obj.nucleus_geometry.is_valid
        assert shapely.hausdorff_distance(obj.nucleus_geometry, nucleus) <= 0.01
        assert obj.geometry.equals(obj.nucleus_geometry)  # no expansion by default
        assert obj.name == row.cell_id
        assert obj.class_name == row.class_name
        assert obj.color == CELL_CLASS_COLORS[row.class_name]
    assert objects[0].measurements == {
        CELL_MEASUREMENTS["area_um2"]: 28.0,
        CELL_MEASUREMENTS["eccentricity"]: 0.1,
        CELL_MEASUREMENTS["mean_hematoxylin_od"]: 0.61,
        CELL_MEASUREMENTS["probability"]: 0.9,
    }
    assert CELL_MEASUREMENTS["eccentricity"] not in objects[2].measurements  # NaN dropped


def test_cell_expansion_limits_to_neighbours(cells: TileCells, ctx: ExportContext) -> None:
    features = cells_to_features(cells, ctx, cell_expansion_um=3.0)  # 6 level-0 px at 0.5 µm/px
    shapes = [shapely.geometry.shape(f["geometry"]) for f in features]
    nuclei = [shapely.geometry.shape(f["nucleusGeometry"]) for f in features]
    for shape, nucleus in zip(shapes, nuclei, strict=True):
        assert shape.is_valid
        assert shape.buffer(0.02).contains(nucleus)
        assert shape.area > nucleus.area * 1.5
    # the two close nuclei (centres 29.7 px apart) grow until they meet half-way, not beyond
    assert shapes[0].intersection(shapes[1]).area < 0.5
    assert shapes[0].bounds[2] <= 115.2 and shapes[1].bounds[0] >= 114.8


def test_cell_table_with_contours_and_degenerate_contour(
    cells: TileCells, ctx: ExportContext
) -> None:
    contours = [*cells.contours[:2], np.array([[300.0, 250.0], [301.0, 250.0]])]
    with pytest.warns(UserWarning, match="fewer than 3 distinct points"):
        features = cells_to_features(cells.table, ctx, contours=contours)
    circle = shapely.geometry.shape(features[2]["nucleusGeometry"])
    assert circle.area == pytest.approx(12.5 / 0.25, rel=0.1)  # 12.5 µm² at 0.5 µm/px
    with pytest.raises(DataError, match="contours"):
        cells_to_features(cells.table, ctx)


def test_polygons_with_holes_and_multipolygons(tmp_path: Path, ctx: ExportContext) -> None:
    ring = _box(100, 100, 400, 300)
    with_hole = Polygon(ring.exterior.coords, [_box(200, 150, 50, 50).exterior.coords[::-1]])
    multi = MultiPolygon([_box(1000, 1000, 20, 20), _box(1100.123, 1000, 20.456, 20)])
    features = polygons_to_features(
        [with_hole, multi],
        class_name="Epithelium",
        color=(240, 50, 230),
        properties=[{"name": "crypt", "metadata": {"source": "probe"}}, {"isLocked": True}],
        locked=False,
    )
    path = write_geojson(tmp_path / "epi.geojson", features, ctx)
    first, second = read_geojson(path, slide_dimensions_px=(5000, 5000))
    assert first.object_type == "annotation" and first.class_name == "Epithelium"
    assert first.color == (240, 50, 230) and first.name == "crypt"
    assert first.properties["metadata"] == {"source": "probe"}
    assert first.geometry.is_valid and first.geometry.area == pytest.approx(with_hole.area)
    assert first.geometry.exterior.is_ccw and not first.geometry.interiors[0].is_ccw
    assert isinstance(second.geometry, MultiPolygon) and second.properties["isLocked"] is True
    assert shapely.hausdorff_distance(second.geometry, multi) <= 0.01
    with pytest.raises(DataError, match="not QuPath properties"):
        polygons_to_features([ring], properties={"score": 1.0})
    with pytest.raises(DataError, match="object_type"):
        polygons_to_features([ring], object_type="cell")


def test_gzip_and_deterministic_bytes(
    tmp_path: Path, tiles: pd.DataFrame, cells: TileCells, ctx: ExportContext
) -> None:
    def export(name: str, **kwargs: object) -> Path:
        features = tiles_to_features(tiles, ctx) + cells_to_features(cells, ctx)
        features += polygons_to_features([_box(5, 5, 50, 50)], class_name="Region")
        return write_geojson(tmp_path / name, features, ctx, **kwargs)

    plain_a, plain_b = export("a.geojson"), export("b.geojson")
    assert plain_a.read_bytes() == plain_b.read_bytes()
    packed = export("c.geojson", gzip=True)
    assert packed.name == "c.geojson.gz" and packed.read_bytes()[:2] == b"\x1f\x8b"
    assert packed.read_bytes() == export("d.geojson.gz").read_bytes()
    assert gzip.decompress(packed.read_bytes()) == plain_a.read_bytes()
    zipped = export("e.geojson.zip")  # the compressed form QuPath imports directly
    first_bytes = zipped.read_bytes()
    assert export("e.geojson.zip").read_bytes() == first_bytes
    with zipfile.ZipFile(zipped) as archive:
        assert archive.namelist() == ["e.geojson"]
        assert archive.read("e.geojson") == plain_a.read_bytes()
    from_plain = read_geojson(plain_a)
    for other in (read_geojson(packed), read_geojson(zipped)):
        assert [o.id for o in other] == [o.id for o in from_plain]
        assert all(a.geometry.equals(b.geometry) for a, b in zip(from_plain, other, strict=True))
    assert read_geojson_context(zipped) == ctx


QUPATH_FILE = {
    "type": "FeatureCollection",
    "features": [
        {
            "type": "Feature",
            "id": "0d5c4f87-2c3b-4a9e-9f43-3b9b5a1c2e11",
            "geometry": {
                "type": "Polygon",
                "coordinates": [
                    [[1000, 2000], [1500, 2000], [1500, 2600], [1000, 2600], [1000, 2000]]
                ],
            },
            "properties": {
                "objectType": "annotation",
                "name": "crypt abscess",
                "classification": {"name": "Inflammation", "color": [255, 0, 0]},
                "isLocked": False,
                "measurements": [{"name": "Num Detections", "value": 12}],
            },
        },
        {
            "type": "Feature",
            "id": "PathCellObject",
            "geometry": {
                "type": "Polygon",
                "coordinates": [[[10, 10], [20, 10], [20, 20], [10, 10]]],
            },
            "nucleusGeometry": {
                "type": "Polygon",
                "coordinates": [[[12, 11], [18, 11], [18, 17], [12, 11]]],
            },
            "properties": {
                "classification": {"names": ["Tumor", "Positive"], "colorRGB": -3670016}
            },
        },
        {
            "type": "Feature",
            "geometry": {"type": "LineString", "coordinates": [[0, 0], [100, 50]]},
            "properties": {"objectType": "annotation", "color": [0, 0, 255]},
        },
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [5, 6]}, "properties": {}},
        {
            "type": "Feature",
            "geometry": {"type": "MultiPoint", "coordinates": [[1, 2], [3, 4]]},
            "properties": {"objectType": "annotation", "measurements": {"a": 1.5}},
        },
    ],
}


def test_imports_hand_written_qupath_file(tmp_path: Path) -> None:
    path = tmp_path / "qupath.geojson"
    path.write_text(json.dumps(QUPATH_FILE, indent=2), encoding="utf-8")
    objects = read_geojson(path, slide_dimensions_px=(50000, 40000))
    crypt, cell, line, point, points = objects
    assert crypt.class_name == "Inflammation" and crypt.color == (255, 0, 0)
    assert crypt.name == "crypt abscess" and crypt.id == QUPATH_FILE["features"][0]["id"]
    assert crypt.measurements == {"Num Detections": 12.0}
    assert crypt.geometry.equals(_box(1000, 2000, 500, 600))
    assert cell.object_type == "cell" and cell.id is None
    assert cell.class_name == "Tumor: Positive" and cell.color == (200, 0, 0)
    assert cell.nucleus_geometry.area == pytest.approx(18.0)
    assert line.geometry.geom_type == "LineString" and line.color == (0, 0, 255)
    assert point.geometry.geom_type == "Point" and point.object_type == "annotation"
    assert points.geometry.geom_type == "MultiPoint" and points.measurements == {"a": 1.5}
    # older QuPath: a JSON list of features; and a single bare Feature
    path.write_text(json.dumps(QUPATH_FILE["features"]), encoding="utf-8")
    assert len(read_geojson(path)) == 5
    path.write_text(json.dumps(QUPATH_FILE["features"][0]), encoding="utf-8")
    assert read_geojson(path)[0].name == "crypt abscess"


def _write(tmp_path: Path, content: object) -> Path:
    path = tmp_path / "bad.geojson"
    text = content if isinstance(content, str) else json.dumps(content)
    path.write_text(text, encoding="utf-8")
    return path


def _feature(geometry: object) -> dict:
    return {"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": geometry}]}


def test_unclosed_ring_and_bare_geometry_are_accepted(tmp_path: Path) -> None:
    open_ring = {"type": "Polygon", "coordinates": [[[0, 0], [10, 0], [10, 10], [0, 10]]]}
    (obj,) = read_geojson(_write(tmp_path, open_ring))
    assert obj.object_type == "annotation" and obj.geometry.area == pytest.approx(100.0)


def test_malformed_files_raise_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"not valid JSON \(line 1"):
        read_geojson(_write(tmp_path, '{"type": "FeatureCollection", "features": [}'))
    with pytest.raises(DataError, match="feature 0: has no geometry"):
        read_geojson(_write(tmp_path, _feature(None)))
    square_nan = "[[[0, 0], [10, NaN], [10, 10], [0, 0]]]"
    text = f'{{"type": "Feature", "geometry": {{"type": "Polygon", "coordinates": {square_nan}}}}}'
    with pytest.raises(DataError, match="NaN or infinite"):
        read_geojson(_write(tmp_path, text))
    with pytest.raises(DataError, match="not numeric"):
        read_geojson(_write(tmp_path, _feature({"type": "Point", "coordinates": ["1", 2]})))
    with pytest.raises(DataError, match="fewer than 3 distinct"):
        read_geojson(
            _write(
                tmp_path, _feature({"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [0, 0]]]})
            )
        )
    with pytest.raises(DataError, match="unsupported geometry type 'Circle'"):
        read_geojson(_write(tmp_path, _feature({"type": "Circle", "coordinates": [0, 0]})))
    with pytest.raises(DataError, match="not GeoJSON"):
        read_geojson(_write(tmp_path, {"type": "Topology"}))
    with pytest.raises(DataError, match="no such GeoJSON file"):
        read_geojson(tmp_path / "missing.geojson")


def test_coordinate_space_checks(tmp_path: Path) -> None:
    unit = {"type": "Polygon", "coordinates": [[[0.1, 0.2], [0.4, 0.2], [0.4, 0.5], [0.1, 0.2]]]}
    path = _write(tmp_path, _feature(unit))
    assert len(read_geojson(path)) == 1  # no slide given: no check
    with pytest.raises(DataError, match="normalised 0-1 coordinates"):
        read_geojson(path, slide_dimensions_px=(50000, 40000))
    far = {"type": "Polygon", "coordinates": [[[0, 0], [90000, 0], [90000, 80000], [0, 0]]]}
    with pytest.raises(DataError, match=r"outside the slide.*different, larger image"):
        read_geojson(_write(tmp_path, _feature(far)), slide_dimensions_px=(50000, 40000))
    microns = {"type": "Polygon", "coordinates": [[[0, 0], [3000, 0], [3000, 2000], [0, 0]]]}
    with pytest.raises(DataError, match="look like µm"):
        read_geojson(_write(tmp_path, _feature(microns)), slide_dimensions_px=(2000, 1500), mpp=2.0)
    y_up = {"type": "Polygon", "coordinates": [[[0, 0], [300, 0], [300, -2000], [0, 0]]]}
    with pytest.raises(DataError, match="bottom-left origin"):
        read_geojson(_write(tmp_path, _feature(y_up)), slide_dimensions_px=(5000, 5000))
    edge = {"type": "Polygon", "coordinates": [[[-20, 0], [5010, 0], [5010, 5030], [-20, 0]]]}
    assert len(read_geojson(_write(tmp_path, _feature(edge)), slide_dimensions_px=(5000, 5000)))


def test_self_intersecting_polygon_is_repaired_with_warning(tmp_path: Path) -> None:
    bowtie = {"type": "Polygon", "coordinates": [[[0, 0], [10, 10], [10, 0], [0, 10], [0, 0]]]}
    with pytest.warns(UserWarning, match="1 self-intersecting polygon"):
        (obj,) = read_geojson(_write(tmp_path, _feature(bowtie)))
    assert obj.repaired and obj.geometry.is_valid and obj.geometry.area == pytest.approx(50.0)
    # on export, an invalid polygon is repaired too and comes out valid
    (feature,) = polygons_to_features([Polygon(bowtie["coordinates"][0])])
    assert shapely.geometry.shape(feature["geometry"]).is_valid


def test_csv_round_trip_with_sidecar(
    tmp_path: Path, tiles: pd.DataFrame, ctx: ExportContext
) -> None:
    table = tiles.assign(in_tissue=[True, False, True])
    path = write_table_csv(tmp_path / "tiles.csv", table, ctx)
    assert csv_meta_path(path).name == "tiles.meta.json"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read, read_ctx = read_table_csv(path)
    assert read_ctx == ctx
    assert list(read["tile_id"]) == ["000001", "000002", "000003"]
    assert read["x"].tolist() == table["x"].tolist()  # full float precision
    assert read["score"].isna().tolist() == [False, True, False]
    assert read["in_tissue"].tolist() == [True, False, True]
    pd.testing.assert_frame_equal(read, table, check_dtype=False)
    first = pd.read_csv(path).columns.tolist()  # plain CSV, no comment header
    assert first == table.columns.tolist()
    path.write_text(path.read_text(encoding="utf-8") + "000004,0,0,1,1,0.1,0.2,4,d,True\n")
    with pytest.warns(UserWarning, match="changed after export"):
        read_table_csv(path)
    csv_meta_path(path).unlink()
    read, read_ctx = read_table_csv(path)
    assert read_ctx is None and read["tile_id"].iloc[3] == "000004"
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="not a readable CSV"):
        read_table_csv(tmp_path / "empty.csv")
