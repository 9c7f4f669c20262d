"""export_review_bundle: tiles, inspected cells, epithelium, markers and review in one go."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import shapely

from napari_imilia.errors import DataError
from napari_imilia.export import read_geojson, read_geojson_context, read_table_csv
from napari_imilia.interpret.cells import TileCells, create_cell_backend
from napari_imilia.interpret.epithelium import epithelium_polygons, segment_epithelium
from napari_imilia.interpret.markers import TileMarkers, tile_markers
from napari_imilia.predict.slide import PredictionResult
from napari_imilia.review.bundle import export_context, export_review_bundle
from napari_imilia.review.session import ReviewSession

TILE_PX = 224


@dataclass
class Inspection:
    """The attributes of ``napari_imilia.interpret.TileInspection`` the export reads."""

    cells: TileCells
    epithelium_polygons: list
    markers: TileMarkers


def _prediction(session: ReviewSession) -> PredictionResult:
    xs, ys = np.meshgrid([896, 1120, 1344], [1120, 1344])
    tiles = pd.DataFrame(
        {
            "tile_id": [f"{x}_{y}" for x, y in zip(xs.ravel(), ys.ravel(), strict=True)],
            "x": xs.ravel(),
            "y": ys.ravel(),
            "width": TILE_PX,
            "height": TILE_PX,
            "tissue_fraction": 1.0,
            "score": np.linspace(-1, 1, 6),
        }
    )
    tiles["rank"] = tiles["score"].rank(ascending=False).astype(int)
    info = {
        "slide": str(session.slide.path),
        "slide_id": session.slide_id,
        "score": 0.8,
        "logit": 1.4,
        "model": "chowder-test",
        "model_sha256": "cd" * 32,
        "extractor": "imilia-stain-stats",
        "mpp": session.slide.mpp,
        "tile_px": TILE_PX,
    }
    return PredictionResult(
        session.slide_id, session.slide.path, 0.8, 1.4, tiles, info, session.results_dir
    )


def _inspect(session: ReviewSession, tile_id: str) -> Inspection:
    row = session.tile_row(tile_id)
    x, y = int(row["x"]), int(row["y"])
    rgb = session.slide.read_region((x, y), 0, (TILE_PX, TILE_PX))
    mpp = float(session.slide.mpp)
    cells = create_cell_backend("classical").segment(
        rgb, mpp=mpp, level0_xy=(x, y), level0_per_px=1.0
    )
    epithelium = segment_epithelium(rgb, mpp=mpp).mask
    polygons = epithelium_polygons(epithelium, mpp=mpp, level0_xy=(x, y), level0_per_px=1.0)
    return Inspection(cells, polygons, tile_markers(cells, epithelium))


@pytest.fixture
def session(small_svs: Path, tmp_path: Path) -> ReviewSession:
    session = ReviewSession.open(small_svs, tmp_path / "results")
    session.set_prediction(_prediction(session))
    return session


def test_bundle_files_geometries_and_context(session: ReviewSession, tmp_path: Path) -> None:
    inspected = "1120_1344"
    session.store_inspection(inspected, _inspect(session, inspected))
    session.add_review(verdict="agree", tile_id="896_1120", reviewer_class="normal")
    region = [(900.0, 1130.0), (1000.0, 1130.0), (1000.0, 1200.0)]
    session.add_review(verdict="disagree", region=region, reviewer_class="artefact", note="fold")
    files = export_review_bundle(session, tmp_path / "out")
    assert [f.name for f in files] == [
        "small_HE.tiles.geojson",
        "small_HE.cells.geojson",
        "small_HE.review.geojson",
        "small_HE.tiles.csv",
        "small_HE.markers.csv",
        "small_HE.reviews.csv",
    ]
    width, height = session.slide.dimensions
    slide_box = shapely.box(0, 0, width, height)
    for path in files[:3]:
        ctx = read_geojson_context(path)
        assert ctx == export_context(session)
        assert ctx.model_sha256 == "cd" * 32 and ctx.extractor == "imilia-stain-stats"
        for obj in read_geojson(path, slide_dimensions_px=(width, height)):
            assert obj.geometry.is_valid and slide_box.contains(obj.geometry)
    tiles = read_geojson(files[0])
    assert [t.object_type for t in tiles] == ["tile"] * 6
    by_name = {t.name: t for t in tiles}
    assert by_name["896_1120"].geometry.equals(shapely.box(896, 1120, 1120, 1344))
    markers = session.cached_inspection(inspected).markers
    assert by_name[inspected].measurements["n_cells"] == markers.n_cells
    assert "n_cells" not in by_name["896_1120"].measurements  # not inspected
    assert by_name["896_1120"].measurements["score"] == pytest.approx(-1.0)
    objects = read_geojson(files[1])
    cells = [o for o in objects if o.object_type == "cell"]
    epithelium = [o for o in objects if o.object_type == "annotation"]
    inspection = session.cached_inspection(inspected)
    assert len(cells) == inspection.cells.n_cells > 0
    assert all(c.nucleus_geometry is not None for c in cells)
    tile_box = shapely.box(1120, 1344, 1344, 1568).buffer(1.0)
    assert all(tile_box.contains(c.geometry) for c in cells)
    assert {c.class_name for c in cells} <= set(inspection.cells.table["class_name"])
    assert len(epithelium) == len(inspection.epithelium_polygons)
    assert all(e.class_name == "Epithelium" for e in epithelium)
    tile_review, region_review = read_geojson(files[2])
    assert tile_review.geometry.equals(shapely.box(896, 1120, 1120, 1344))
    assert tile_review.class_name == "normal"
    assert region_review.geometry.equals(shapely.Polygon(region))
    assert region_review.measurements == {"Review agreement": 0.0}
    table, ctx = read_table_csv(files[4])
    assert table["tile_id"].tolist() == [inspected] and ctx.model_name == "chowder-test"
    reviews, _ = read_table_csv(files[5])
    assert reviews["verdict"].tolist() == ["agree", "disagree"]
    assert json.loads(reviews["region"].iloc[1]) == [list(p) for p in region]


def test_bundle_compression_and_unscored_slide(small_svs: Path, tmp_path: Path) -> None:
    session = ReviewSession.open(small_svs, tmp_path / "results")
    session.add_review(verdict="uncertain", region=[(10, 10), (60, 10), (60, 40)])
    files = export_review_bundle(session, tmp_path / "out", compression="zip")
    assert [f.name for f in files] == ["small_HE.review.geojson.zip", "small_HE.reviews.csv"]
    (obj,) = read_geojson(files[0])
    assert obj.class_name is None and obj.measurements == {"Review agreement": 0.5}
    ctx = read_geojson_context(files[0])
    assert ctx.model_name == "none" and ctx.mpp == pytest.approx(0.499)
    gz = export_review_bundle(session, tmp_path / "gz", compression="gzip")[0]
    assert gz.name.endswith(".geojson.gz") and gz.read_bytes()[:2] == b"\x1f\x8b"
    with pytest.raises(DataError, match="compression must be one of"):
        export_review_bundle(session, tmp_path / "x", compression="bz2")
