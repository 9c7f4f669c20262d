"""Streaming GeoJSON of many cells: 10^5 cells round-trip, other layouts, and the limits of
untrusted input."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from napari_imilia.errors import DataError
from napari_imilia.export import ExportContext, read_geojson, write_geojson
from napari_imilia.export.geojson_stream import ObjectBatch, write_object_batches
from napari_imilia.export.geojson_stream_read import iter_object_batches, read_stream_context
from napari_imilia.trust.json_limits import ImportLimits

CTX = ExportContext("slide", "/slides/slide.svs", "model", "0" * 64, "extractor", 0.5, 224)
CLASSES = [("Lymphocytes", (0, 130, 200)), ("Neutrophils", (255, 225, 25))]


def _cells(n: int, seed: int = 0, sides: int = 12) -> ObjectBatch:
    """``n`` regular polygons (clockwise in x, y: the writer orients them) with known
    centres."""
    rng = np.random.default_rng(seed)
    cx = np.round(rng.uniform(10, 40_000, n), 2)
    cy = np.round(rng.uniform(10, 30_000, n), 2)
    angles = -np.linspace(0, 2 * np.pi, sides, endpoint=False)
    ring = np.stack([np.cos(angles), np.sin(angles)], axis=1) * 5.0
    xy = (ring[None] + np.stack([cx, cy], axis=1)[:, None]).reshape(-1, 2)
    return ObjectBatch(
        names=[f"cell {i}" for i in range(n)],
        class_index=rng.integers(-1, 2, n).astype(np.int32),
        classes=CLASSES,
        x=cx,
        y=cy,
        ring_offsets=np.arange(n + 1) * sides,
        ring_xy=xy,
        measurements={"Nucleus: Area µm^2": rng.uniform(10, 60, n)},
        metadata={"compartment": [("epithelium", "lamina propria")[i % 2] for i in range(n)]},
    )


def test_100000_cells_round_trip(tmp_path):
    cells = _cells(100_000)
    path = tmp_path / "cells.geojson"
    assert write_object_batches(path, [cells], CTX) == 100_000
    batches = list(iter_object_batches(path, batch_objects=30_000))
    assert [len(b) for b in batches] == [30_000, 30_000, 30_000, 10_000]
    x = np.concatenate([b.x for b in batches])
    y = np.concatenate([b.y for b in batches])
    # the rings' area centroids are their centres, to the 0.01 px rounding
    assert np.abs(x - cells.x).max() < 0.01 and np.abs(y - cells.y).max() < 0.01
    names = [n for b in batches for n in b.class_names()]
    expected = [CLASSES[i][0] if i >= 0 else None for i in cells.class_index]
    assert names == expected
    area = np.concatenate([b.measurements["Nucleus: Area µm^2"] for b in batches])
    assert np.allclose(area, cells.measurements["Nucleus: Area µm^2"])
    assert [m for b in batches for m in b.metadata["compartment"]] == cells.metadata["compartment"]
    assert [n for b in batches for n in b.names] == cells.names
    ring = batches[0].ring(0)
    assert ring.shape == (13, 2) and np.array_equal(ring[0], ring[-1])  # closed
    x0, y0 = ring[:-1, 0], ring[:-1, 1]
    assert np.dot(x0, np.roll(y0, -1)) - np.dot(np.roll(x0, -1), y0) > 0  # counter-clockwise
    assert read_stream_context(path) == CTX


def test_the_project_reader_reads_the_stream_and_the_stream_reader_reads_other_layouts(tmp_path):
    cells = _cells(20, seed=1)
    path = tmp_path / "cells.geojson.gz"
    write_object_batches(path, [cells], CTX, nucleus_geometry=True)
    objects = read_geojson(path)  # the shapely reader: same classes, same centres
    assert [o.class_name for o in objects] == cells.class_names()
    assert np.allclose([o.nucleus_geometry.centroid.x for o in objects], cells.x, atol=0.01)
    assert objects[0].object_type == "cell"
    # QuPath's pretty-printed layout is read whole (within the limits), then the same way
    data = json.loads(gzip.decompress(path.read_bytes()))
    pretty = tmp_path / "pretty.geojson"
    pretty.write_text(json.dumps(data, indent=2))
    (batch,) = iter_object_batches(pretty)
    assert np.allclose(batch.x, cells.x, atol=0.01) and batch.class_names() == cells.class_names()
    # and write_geojson's own files (one feature per line) are streamed
    written = write_geojson(tmp_path / "annotations.geojson", data["features"], CTX)
    (batch,) = iter_object_batches(written)
    assert len(batch) == 20


def test_ids_are_the_project_stable_ids(tmp_path):
    from napari_imilia.export.context import stable_id, stable_ids

    rows = [("cell", "slide", f"cell {i}", f"{i * 1.5:.2f}", "3.00") for i in range(50)]
    assert stable_ids(rows) == [stable_id(*row) for row in rows]
    cells = _cells(3)
    path = tmp_path / "ids.geojson"
    write_object_batches(path, [cells], CTX)
    features = [json.loads(line.rstrip(",\n")) for line in path.read_text().splitlines()[1:4]]
    for feature, name, x, y in zip(features, cells.names, cells.x, cells.y, strict=True):
        assert feature["id"] == stable_id("cell", "slide", name, f"{x:.2f}", f"{y:.2f}")


def test_points(tmp_path):
    cells = _cells(10)
    cells.ring_offsets = cells.ring_xy = None
    cells.object_type = "detection"
    path = tmp_path / "points.geojson"
    write_object_batches(path, [cells], CTX)
    (batch,) = iter_object_batches(path)
    assert batch.ring_offsets is None and batch.object_type == "detection"
    assert np.array_equal(batch.x, cells.x) and np.array_equal(batch.y, cells.y)


def _one_line_file(tmp_path, feature_text: str):
    path = tmp_path / "hostile.geojson"
    head = json.dumps({"type": "FeatureCollection"})[:-1] + ', "features": [\n'
    path.write_text(head + feature_text + "\n]}\n")
    return path


POLYGON = (
    '{{"type": "Feature", "geometry": {{"type": "Polygon", "coordinates": [[{}]]}}, '
    '"properties": {{}}}}'
)


@pytest.mark.parametrize(
    ("ring", "message"),
    [
        ("[0, 0], [1e12, 0], [0, 5], [0, 0]", "beyond the import limit"),
        ("[0, 0], [NaN, 0], [0, 5], [0, 0]", "NaN"),
        ("[0, 0], [1, 1], [0, 0]", "at least 3"),
        ('[0, 0], ["a", 0], [0, 5], [0, 0]', "not \\[x, y\\]"),
        ("[0, 0], [100000000000000000000000000, 0], [0, 5], [0, 0]", "digits"),
    ],
)
def test_hostile_rings_are_refused_naming_the_feature(tmp_path, ring, message):
    path = _one_line_file(tmp_path, POLYGON.format(ring))
    with pytest.raises(DataError, match=message):
        list(iter_object_batches(path, slide_dimensions_px=(1000, 1000)))


def test_limits_on_count_bytes_nesting_and_colours(tmp_path):
    path = tmp_path / "cells.geojson"
    write_object_batches(path, [_cells(50)], CTX)
    with pytest.raises(DataError, match="50 features exceed"):
        list(iter_object_batches(path, limits=ImportLimits(max_objects=49)))
    with pytest.raises(DataError, match="MiB of JSON"):
        list(iter_object_batches(path, limits=ImportLimits(max_bytes=2000)))
    deep = _one_line_file(tmp_path, "[" * 200 + "]" * 200)
    with pytest.raises(DataError, match=r"nested|limits"):
        list(iter_object_batches(deep))
    colour = POLYGON.format("[0, 0], [5, 0], [0, 5], [0, 0]").replace(
        '"properties": {}', '"properties": {"classification": {"name": "x", "color": [0, 300, 0]}}'
    )
    with pytest.raises(DataError, match="0-255"):
        list(iter_object_batches(_one_line_file(tmp_path, colour)))
    with pytest.raises(DataError, match="not a Point, Polygon"):
        line = '{"type": "Feature", "geometry": {"type": "LineString", "coordinates": [[0, 0]]}}'
        list(iter_object_batches(_one_line_file(tmp_path, line)))
