"""Per-tile inspection (cells + epithelium + markers) and the batch ``imilia inspect``."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import shapely
from shapely.geometry import box as shapely_box

from napari_imilia.cli import main
from napari_imilia.demo.synthetic import render_tile
from napari_imilia.errors import ImiliaError
from napari_imilia.interpret import (
    CONTEXT_UM,
    INSPECT_FILES,
    TileBox,
    inspect_slide,
    inspect_tile,
    select_tiles,
)
from napari_imilia.interpret.cells import create_cell_backend
from napari_imilia.interpret.epithelium import EpiSegProbe, epithelium_polygons
from napari_imilia.interpret.markers import MARKER_CLASSES, column_key, marker_columns, tile_markers
from napari_imilia.slide import open_slide
from support.scored import make_scored_slide

TILE_XY = (448, 224)  # level-0 top-left of the planted tile


def _planted_slide(tiff_writer, path: Path, size_px: int, mpp: float):
    """A white slide with one rendered H&E tile of ``size_px`` px at ``mpp`` µm/px pasted at
    ``TILE_XY``; returns (path, rendered tile)."""
    tile = render_tile(size_px, mpp, seed=7, inflamed=True)
    height, width = TILE_XY[1] + size_px + 256, TILE_XY[0] + size_px + 256
    canvas = np.full((height, width, 3), 255, np.uint8)
    x0, y0 = TILE_XY
    canvas[y0 : y0 + size_px, x0 : x0 + size_px] = tile.rgb

    def pattern(ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        return canvas[np.clip(ys, 0, height - 1), np.clip(xs, 0, width - 1)]

    return tiff_writer(path, (height, width), mpp=mpp, pattern=pattern), tile


def _matched_fraction(found_xy: np.ndarray, planted_xy: np.ndarray, tolerance_px: float) -> float:
    """Fraction of planted points with a found point within ``tolerance_px``."""
    if len(planted_xy) == 0:
        return 1.0
    distance = np.linalg.norm(planted_xy[:, None] - found_xy[None], axis=2)
    return float((distance.min(axis=1) <= tolerance_px).mean())


@pytest.mark.parametrize(("size_px", "mpp"), [(224, 0.5), (448, 0.25)])
def test_inspect_tile_finds_planted_cells_at_level0_positions(tiff_writer, tmp_path, size_px, mpp):
    path, tile = _planted_slide(tiff_writer, tmp_path / "planted.tiff", size_px, mpp)
    row = {
        "tile_id": "planted",
        "x": TILE_XY[0],
        "y": TILE_XY[1],
        "width": size_px,
        "height": size_px,
        "score": 0.8,
    }
    with open_slide(path) as slide:
        result = inspect_tile(slide, row)
    # read at the classical backend's 0.5 µm/px: 224 px masks, 1 or 2 level-0 px per pixel
    assert result.shape == (224, 224)
    assert result.mpp == pytest.approx(0.5)
    assert result.level0_per_px == pytest.approx(size_px / 224)
    assert result.level0_xy == TILE_XY and result.score == 0.8
    assert result.epithelium_mask.shape == result.tissue_mask.shape == (224, 224)
    table = result.cells.table
    planted = np.array(
        [[c.x_px, c.y_px] for c in tile.cells if c.class_name != "Red blood cell"]
    ) + (np.array(TILE_XY) + 0.5)  # pixel-index centres -> continuous level-0 px
    inside = ((planted >= TILE_XY) & (planted < np.array(TILE_XY) + size_px)).all(axis=1)
    planted = planted[inside]
    assert 0.8 * len(planted) <= len(table) <= 1.2 * len(planted)
    found = table[["centroid_x", "centroid_y"]].to_numpy()
    # centroids in level-0 px of the slide: planted positions within 3 µm
    assert _matched_fraction(found, planted, 3.0 / mpp) >= 0.9
    assert set(table["class_name"]) >= {"Lymphocytes", "Plasmocytes"}
    box = shapely_box(
        TILE_XY[0] - 1, TILE_XY[1] - 1, TILE_XY[0] + size_px + 1, TILE_XY[1] + size_px + 1
    )
    assert all(box.contains(shapely.Polygon(c)) for c in result.cells.contours)
    assert all(box.contains(p) for p in result.epithelium_polygons)
    # markers are tile_markers of the result's own masks
    again = tile_markers(result.cells, result.epithelium_mask, result.tissue_mask)
    pd.testing.assert_series_equal(pd.Series(again.as_row()), pd.Series(result.markers.as_row()))
    assert result.markers.n_cells == len(table)
    assert result.markers.tissue_area_mm2 == pytest.approx(result.tissue_mask.sum() * 0.25 / 1e6)
    polygons = epithelium_polygons(
        result.epithelium_mask,
        mpp=result.mpp,
        level0_xy=result.level0_xy,
        level0_per_px=result.level0_per_px,
        min_area_um2=20.0,
    )
    assert [p.area for p in polygons] == [p.area for p in result.epithelium_polygons]


def test_world_placement_puts_cells_on_their_level0_centroids(tiff_writer, tmp_path):
    path, _ = _planted_slide(tiff_writer, tmp_path / "fine.tiff", 448, 0.25)
    with open_slide(path) as slide:
        result = inspect_tile(slide, TileBox("t", TILE_XY[0], TILE_XY[1], 448, 448))
    (sy, sx), (ty, tx) = result.world_placement(0.25)
    assert (sy, sx) == (0.5, 0.5)  # µm per label pixel = level0_per_px * mpp
    labels = result.cells.labels
    for _, cell in result.cells.table.head(10).iterrows():
        rows, cols = np.nonzero(labels == cell["label"])
        world = np.array([ty + rows.mean() * sy, tx + cols.mean() * sx])
        # the slide layer shows level-0 position X at world (X - 0.5) * mpp
        expected = (np.array([cell["centroid_y"], cell["centroid_x"]]) - 0.5) * 0.25
        np.testing.assert_allclose(world, expected, atol=1e-9)


def test_blank_and_outside_tiles_give_zero_cells_and_a_flag(tiff_writer, tmp_path):
    path, _ = _planted_slide(tiff_writer, tmp_path / "blank.tiff", 224, 0.5)
    with open_slide(path) as slide:
        blank = inspect_tile(slide, TileBox("glass", 0, 0, 224, 224))
        outside = inspect_tile(slide, TileBox("far", 50_000, 50_000, 224, 224))
    for result in (blank, outside):
        assert result.n_cells == 0 and result.cells.labels.max() == 0
        assert result.flags == ["no_tissue"]
        assert not result.epithelium_mask.any() and result.epithelium_polygons == []
        assert result.markers.tissue_area_mm2 == 0
        assert np.isnan(result.markers.densities_per_mm2["Lymphocytes"])


def test_other_backends_and_epithelium_methods(tiff_writer, tmp_path):
    from napari_imilia.interpret.cells.histoplus_json_write import write_histoplus_json

    path, _ = _planted_slide(tiff_writer, tmp_path / "planted.tiff", 224, 0.5)
    box = TileBox("planted", TILE_XY[0], TILE_XY[1], 224, 224)
    with open_slide(path) as slide:
        classical = inspect_tile(slide, box)
        json_path = write_histoplus_json(
            tmp_path / "cells.json", [classical.cells], level0_dimensions=slide.dimensions
        )
        imported = inspect_tile(
            slide,
            box,
            cell_backend=create_cell_backend("histoplus-json", path=json_path, slide=slide),
        )
        assert imported.cell_backend == "histoplus-json"
        assert imported.n_cells == classical.n_cells
        assert imported.markers.counts == classical.markers.counts

        class RedTokens:  # a stand-in ViT: one token per 14 px patch, the patch's redness
            name, dim, weights_sha256, tile_px, target_mpp = "fake-vit", 4, "ab" * 32, 224, 0.5

            def patch_tokens(self, tiles):
                red = tiles[..., 0].astype(np.float32).reshape(len(tiles), 16, 14, 16, 14)
                return np.repeat(red.mean(axis=(2, 4))[..., None] / 255.0, 4, axis=-1)

        probe = EpiSegProbe(np.full(4, 10.0), -38.0, 0.5, "fake-vit", "ab" * 32)
        episeg = inspect_tile(
            slide,
            box,
            epithelium_method="episeg",
            episeg_probe=probe,
            episeg_extractor=RedTokens(),
        )
        assert episeg.epithelium_method == "episeg"
        assert episeg.epithelium_mask.shape == (224, 224)
        with pytest.raises(ImiliaError, match="episeg-probe"):
            inspect_tile(slide, box, epithelium_method="episeg")
        with pytest.raises(ImiliaError, match="unknown epithelium method"):
            inspect_tile(slide, box, epithelium_method="magic")


def test_select_tiles_specs():
    tiles = pd.DataFrame(
        {
            "tile_id": ["a", "b", "c", "d"],
            "x": 0,
            "y": 0,
            "width": 1,
            "height": 1,
            "score": [0.2, 0.9, 0.5, 0.1],
        }
    )
    assert select_tiles(tiles, "top:2")["tile_id"].tolist() == ["b", "c"]
    assert select_tiles(tiles, "bottom:2")["tile_id"].tolist() == ["d", "a"]
    assert select_tiles(tiles, "all")["tile_id"].tolist() == ["a", "b", "c", "d"]
    assert select_tiles(tiles, "c, a")["tile_id"].tolist() == ["c", "a"]
    assert select_tiles(tiles, "top:1,b,bottom:1")["tile_id"].tolist() == ["b", "d"]
    assert select_tiles(tiles, "top:10")["tile_id"].tolist() == ["b", "c", "a", "d"]
    for spec, message in [
        ("", "empty"),
        ("top:0", "at least 1"),
        ("top:many", "whole number"),
        ("middle:3", "not understood"),
        ("a,zz", "not in the prediction"),
    ]:
        with pytest.raises(ImiliaError, match=message):
            select_tiles(tiles, spec)


@pytest.fixture(scope="module")
def scored_slide(tmp_path_factory) -> tuple[Path, Path]:
    return make_scored_slide(tmp_path_factory.mktemp("scored"))


def test_cli_inspect_writes_the_five_files(scored_slide, tmp_path, capsys):
    slide, results = scored_slide
    out = tmp_path / "out"
    code = main(
        [
            "inspect",
            str(slide),
            "--out",
            str(out),
            "--results",
            str(results),
            "--tiles",
            "top:4,bottom:2",
            "--workers",
            "1",
        ]
    )
    assert code == 0, capsys.readouterr().err
    folder = out / "biopsy"
    assert sorted(p.name for p in folder.iterdir()) == sorted(INSPECT_FILES)
    tiles = pd.read_csv(results / "biopsy" / "tiles.csv", dtype={"tile_id": str})
    markers = pd.read_csv(folder / "markers.csv", dtype={"tile_id": str})
    assert list(markers.columns) == ["tile_id", "score", "rank", *marker_columns()[1:], "flags"]
    expected = select_tiles(tiles, "top:4,bottom:2")
    assert markers["tile_id"].tolist() == expected["tile_id"].tolist()
    np.testing.assert_allclose(markers["score"], expected["score"], rtol=1e-5)
    assert (markers["n_cells"] > 0).all()
    boxes = {
        t.tile_id: shapely_box(t.x - 1, t.y - 1, t.x + t.width + 1, t.y + t.height + 1)
        for t in expected.itertuples()
    }
    cells = json.loads((folder / "cells.geojson").read_text())
    assert len(cells["features"]) == markers["n_cells"].sum()
    per_tile = dict.fromkeys(boxes, 0)
    origins = {(t.x, t.y): t.tile_id for t in expected.itertuples()}
    for feature in cells["features"]:
        assert feature["properties"]["objectType"] == "cell"
        assert feature["properties"]["classification"]["name"]
        assert "Nucleus: Area µm^2" in feature["properties"]["measurements"]
        nucleus = shapely.geometry.shape(feature["nucleusGeometry"])
        assert nucleus.is_valid and nucleus.area > 0
        # "classical:x0:y0:label": the tile's origin; its centroid in that tile, the whole
        # nucleus within the context margin read around it
        _, x0, y0, _ = feature["properties"]["name"].split(":")
        tile_id = origins[(int(x0), int(y0))]
        assert boxes[tile_id].contains(nucleus.centroid)
        assert boxes[tile_id].buffer(CONTEXT_UM / 0.5).contains(nucleus)
        per_tile[tile_id] += 1
    assert [per_tile[t] for t in markers["tile_id"]] == markers["n_cells"].tolist()
    epithelium = json.loads((folder / "epithelium.geojson").read_text())
    for feature in epithelium["features"]:
        geometry = shapely.geometry.shape(feature["geometry"])
        assert geometry.is_valid and geometry.area > 0
        tile_id = feature["properties"]["metadata"]["tile_id"]
        assert boxes[tile_id].contains(geometry)
        assert feature["properties"]["classification"]["name"] == "Epithelium"
    summary = json.loads((folder / "markers_summary.json").read_text())
    assert summary["n_tiles"] == 6 and summary["cell_backend"] == "classical"
    assert summary["n_cells"] == markers["n_cells"].sum()
    assert "density_per_mm2_Lymphocytes" in summary["markers"]
    # Spearman rho per class: markers.csv's density column against its score column
    from scipy.stats import spearmanr

    for name in [*MARKER_CLASSES, "immune"]:
        column = f"density_per_mm2_{column_key(name)}"
        row = summary["markers"][column]
        values = markers[column].to_numpy(float)
        if np.ptp(values) == 0:
            assert row["spearman_rho"] is None  # NaN written as null
        else:
            expected = spearmanr(values, markers["score"]).statistic
            assert row["spearman_rho"] == pytest.approx(expected, abs=1e-9), column
        assert row["n_tiles"] == 6
    assert (folder / "markers_vs_score.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "6 tiles" in capsys.readouterr().out


def test_cli_inspect_errors(scored_slide, tmp_path, capsys):
    slide, results = scored_slide
    code = main(["inspect", str(slide), "--out", str(tmp_path / "empty")])
    assert code == 2
    assert "run `imilia predict" in capsys.readouterr().err
    code = main(
        [
            "inspect",
            str(slide),
            "--out",
            str(tmp_path),
            "--results",
            str(results),
            "--tiles",
            "top:zero",
        ]
    )
    assert code == 2 and "--tiles" in capsys.readouterr().err
    code = main(
        [
            "inspect",
            str(slide),
            "--out",
            str(tmp_path),
            "--results",
            str(results),
            "--cell-backend",
            "cellvit",
        ]
    )
    assert code == 2 and "--cell-checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "biopsy").exists()


def test_process_pool_gives_the_same_files(scored_slide, tmp_path):
    slide, results = scored_slide
    one = inspect_slide(slide, tmp_path / "one", results_dir=results, tiles="top:6", workers=1)
    two = inspect_slide(slide, tmp_path / "two", results_dir=results, tiles="top:6", workers=2)
    assert len(one.markers) == 6
    for name in ("markers.csv", "cells.geojson", "epithelium.geojson"):
        assert (one.out_dir / name).read_bytes() == (two.out_dir / name).read_bytes(), name


def test_batched_inspection_shares_one_backend_call(scored_slide):
    from napari_imilia.interpret import inspect_tiles_batched
    from napari_imilia.interpret.cells.classical import ClassicalBackend

    class CountingBackend:  # no epithelium_mask option, like the deep backends
        name, analysis_mpp = "counting", 0.5

        def __init__(self):
            self.inner, self.calls = ClassicalBackend(), []

        def segment(self, tile_rgb, *, mpp, level0_xy, level0_per_px, tissue_mask=None):
            return self.inner.segment(
                tile_rgb,
                mpp=mpp,
                level0_xy=level0_xy,
                level0_per_px=level0_per_px,
                tissue_mask=tissue_mask,
            )

        def segment_many(self, tiles):
            self.calls.append(len(tiles))
            return [
                self.segment(
                    t.rgb,
                    mpp=t.mpp,
                    level0_xy=t.level0_xy,
                    level0_per_px=t.level0_per_px,
                    tissue_mask=t.tissue_mask,
                )
                for t in tiles
            ]

    slide_path, results = scored_slide
    tiles = pd.read_csv(results / "biopsy" / "tiles.csv", dtype={"tile_id": str}).head(4)
    rows = [
        *tiles.to_dict("records"),
        {"tile_id": "glass", "x": 0, "y": 0, "width": 224, "height": 224},
    ]
    backend = CountingBackend()
    with open_slide(slide_path) as slide:
        batched = inspect_tiles_batched(slide, rows, cell_backend=backend)
        single = [inspect_tile(slide, row, cell_backend=backend) for row in rows[:2]]
    assert backend.calls[0] == 4  # the blank tile is not sent to the backend
    assert [r.tile_id for r in batched] == [*tiles["tile_id"], "glass"]
    assert batched[-1].flags == ["no_tissue"] and batched[-1].n_cells == 0
    for one, many in zip(single, batched, strict=False):
        pd.testing.assert_frame_equal(one.cells.table, many.cells.table)
        pd.testing.assert_series_equal(
            pd.Series(one.markers.as_row()), pd.Series(many.markers.as_row())
        )


def test_cli_inspect_with_a_cellvit_checkpoint(scored_slide, tmp_path, capsys):
    """The deep backend through the CLI: a small random CellViT of the HistoPLUS 20x
    architecture saved with save_cellvit (random weights: the pipeline, not accuracy)."""
    from napari_imilia.interpret.cells.cellvit import (
        HISTOPLUS_20X,
        CellViT,
        save_cellvit,
        scaled_down,
    )

    config = scaled_down(HISTOPLUS_20X, embed_dim=32, depth=4, num_heads=2, grid=4)
    checkpoint = save_cellvit(
        CellViT(config).init_random(seed=3).eval(), tmp_path / "cv.safetensors"
    )
    slide, results = scored_slide
    out = tmp_path / "deep"
    code = main(
        [
            "inspect",
            str(slide),
            "--out",
            str(out),
            "--results",
            str(results),
            "--tiles",
            "top:2",
            "--cell-backend",
            "cellvit",
            "--cell-checkpoint",
            str(checkpoint),
            "--device",
            "cpu",
        ]
    )
    assert code == 0, capsys.readouterr().err
    summary = json.loads((out / "biopsy" / "markers_summary.json").read_text())
    assert summary["cell_backend"] == "cellvit" and summary["n_tiles"] == 2
    markers = pd.read_csv(out / "biopsy" / "markers.csv")
    cells = json.loads((out / "biopsy" / "cells.geojson").read_text())
    assert len(cells["features"]) == markers["n_cells"].sum()
    code = main(
        [
            "inspect",
            str(slide),
            "--out",
            str(out),
            "--results",
            str(results),
            "--cell-backend",
            "cellvit",
            "--cell-checkpoint",
            str(tmp_path / "none.pt"),
        ]
    )
    assert code == 2 and "none.pt" in capsys.readouterr().err


def test_analysis_mpp_reaches_the_backends(tmp_path):
    """``InspectConfig.analysis_mpp`` is the backends' own µm/px (classical analysis_mpp,
    CellViT mpp=), so tiles are read at it and not resampled a second time."""
    import torch

    from napari_imilia.interpret import InspectConfig, InspectTools
    from napari_imilia.interpret.cells.cellvit import (
        HISTOPLUS_20X,
        CellViT,
        histoplus_state_dict,
        scaled_down,
    )

    classical = InspectTools.load(InspectConfig(analysis_mpp=0.25), slide=None).backend
    assert classical.analysis_mpp == 0.25
    assert InspectTools.load(InspectConfig(), slide=None).backend.analysis_mpp == 0.5
    config = scaled_down(HISTOPLUS_20X, embed_dim=32, depth=4, num_heads=2, grid=4)
    bare = tmp_path / "bare.pt"  # 56 px training tiles, no JSON config: µm/px unknown
    torch.save(histoplus_state_dict(CellViT(config).init_random(seed=1)), bare)
    deep = InspectConfig(cell_backend="cellvit", cell_checkpoint=str(bare), device="cpu")
    with pytest.raises(ImiliaError, match="--analysis-mpp"):
        InspectTools.load(deep, slide=None)
    forwarded = dataclasses.replace(deep, analysis_mpp=0.5)
    assert InspectTools.load(forwarded, slide=None).backend.analysis_mpp == 0.5
    with pytest.raises(ImiliaError, match="positive"):
        InspectConfig(analysis_mpp=-1.0)


def test_cli_inspect_deep_checkpoint_errors_and_analysis_mpp(scored_slide, tmp_path, capsys):
    """A CellViT of unknown µm/px runs with --analysis-mpp; one of the wrong class count or
    another architecture stops with a one-line error naming the file."""
    import torch

    from napari_imilia.interpret.cells import CELL_CLASSES
    from napari_imilia.interpret.cells.cellvit import (
        HISTOPLUS_20X,
        CellViT,
        histoplus_state_dict,
        scaled_down,
    )

    config = scaled_down(HISTOPLUS_20X, embed_dim=32, depth=4, num_heads=2, grid=4)
    bare = tmp_path / "bare.pt"
    torch.save(histoplus_state_dict(CellViT(config).init_random(seed=1)), bare)
    six = tmp_path / "six_classes.pt"
    six_config = dataclasses.replace(config, class_names=CELL_CLASSES[:6])
    torch.save(histoplus_state_dict(CellViT(six_config).init_random(seed=1)), six)
    other = tmp_path / "resnet.pt"
    torch.save({"conv1.weight": torch.zeros(8, 3, 7, 7), "fc.weight": torch.zeros(2, 8)}, other)
    slide, results = scored_slide
    out = tmp_path / "out"

    def inspect(checkpoint, *extra):
        argv = ["inspect", str(slide), "--out", str(out), "--results", str(results)]
        argv += ["--tiles", "top:1", "--cell-backend", "cellvit", "--device", "cpu"]
        return main([*argv, "--cell-checkpoint", str(checkpoint), *extra])

    for checkpoint, message in (
        (bare, "--analysis-mpp"),
        (six, "predicts 6 cell types"),
        (other, "not a CellViT"),
    ):
        assert inspect(checkpoint) == 2
        error = capsys.readouterr().err
        assert message in error and checkpoint.name in error and "Traceback" not in error
    assert inspect(bare, "--analysis-mpp", "0.5") == 0, capsys.readouterr().err
    summary = json.loads((out / "biopsy" / "markers_summary.json").read_text())
    assert summary["analysis_mpp"] == 0.5 and summary["n_tiles"] == 1


def test_real_slide_tiles(small_svs):
    from napari_imilia.tiling.grid import make_tile_grid
    from napari_imilia.tiling.tissue import detect_tissue

    with open_slide(small_svs) as slide:
        grid = make_tile_grid(slide, detect_tissue(slide), target_mpp=0.5, tile_px=224)
        tiles = grid.to_frame()
        full = tiles[tiles["tissue_fraction"] == 1.0].head(2)
        partial = tiles[tiles["tissue_fraction"].between(0.3, 0.8)].head(2)  # tissue edges
        rows = pd.concat([full, partial])
        results = [inspect_tile(slide, row) for _, row in rows.iterrows()]
    for (_, row), result in zip(rows.iterrows(), results, strict=True):
        assert result.shape == (224, 224) and result.level0_per_px == 1.0
        assert result.mpp == pytest.approx(0.499)
        density = result.n_cells / result.markers.tissue_area_mm2
        assert 300 < density < 30_000  # nuclei per mm² of tissue: plausible for H&E
        table = result.cells.table
        assert table["centroid_x"].between(row["x"], row["x"] + 224, inclusive="left").all()
        assert table["centroid_y"].between(row["y"], row["y"] + 224, inclusive="left").all()
        box = shapely_box(row["x"], row["y"], row["x"] + 224, row["y"] + 224)
        context = box.buffer(CONTEXT_UM / 0.499)  # border nuclei are whole
        # masks aligned with the tissue: epithelium inside it, nuclei (almost) all in it
        assert not result.epithelium_mask[~result.tissue_mask].any()
        nuclei = result.cells.labels > 0
        assert (nuclei & ~result.tissue_mask).sum() <= 0.02 * nuclei.sum()
        assert all(context.contains(shapely.Polygon(c)) for c in result.cells.contours)


def test_nuclei_on_a_shared_tile_border_are_counted_once_and_whole(tiff_writer, tmp_path):
    """Two adjacent 224 px tiles; lymphocytes and plasma cells planted across their shared
    border. With the default context margin each comes back once, in the tile holding its
    centroid, with the area of the whole nucleus; without it, border nuclei are cut in two."""
    from napari_imilia.demo.synthetic import PlantedCell, render_region
    from napari_imilia.demo.synthetic.looks import CELL_LOOKS

    planted = []
    for k in range(6):
        name = ("Lymphocytes", "Plasmocytes")[k % 2]
        look = CELL_LOOKS[name]
        planted.append(
            PlantedCell(
                # centres 1-3.5 px either side of the border at x = 224 (continuous 224.5
                # is pixel 224's centre); a nucleus is 12-13 px across: all straddle it
                x_px=224 + (-2.5, 1.5, -1.5, 3.0, 1.0, -3.5)[k],
                y_px=24 + 36 * k,
                class_name=name,
                major_um=look.nucleus_um[0],
                minor_um=look.nucleus_um[1],
                angle_rad=0.5 * k,
            )
        )
    region = render_region(448, 224, 0.5, seed=4, tissue="full", epithelium=False, cells=planted)
    x0, y0 = 64, 32
    canvas = np.full((y0 + 224 + 64, x0 + 448 + 64, 3), 250, np.uint8)
    canvas[y0 : y0 + 224, x0 : x0 + 448] = region.rgb

    def pattern(ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        return canvas[np.clip(ys, 0, canvas.shape[0] - 1), np.clip(xs, 0, canvas.shape[1] - 1)]

    path = tiff_writer(tmp_path / "border.tiff", canvas.shape[:2], mpp=0.5, pattern=pattern)
    truth_xy = np.array([[c.x_px + 0.5 + x0, c.y_px + 0.5 + y0] for c in planted])
    areas = np.bincount(region.instance_labels.ravel())[1 : len(planted) + 1] * 0.25
    tiles = [TileBox("left", x0, y0, 224, 224), TileBox("right", x0 + 224, y0, 224, 224)]
    with open_slide(path) as slide:
        for context_um, whole in ((CONTEXT_UM, True), (0.0, False)):
            results = [inspect_tile(slide, t, context_um=context_um) for t in tiles]
            table = pd.concat([r.cells.table for r in results], ignore_index=True)
            found = table[["centroid_x", "centroid_y"]].to_numpy()
            distance = np.linalg.norm(truth_xy[:, None] - found[None], axis=2)
            near = distance <= 4.0 / 0.5  # detections within 4 µm of each planted centre
            if whole:
                assert (near.sum(axis=1) == 1).all(), near.sum(axis=1)
                match = distance.argmin(axis=1)
                np.testing.assert_allclose(table["area_um2"].to_numpy()[match], areas, rtol=0.3)
                for result, tile in zip(results, tiles, strict=True):  # centroid in its tile
                    x = result.cells.table["centroid_x"]
                    assert x.between(tile.x, tile.x + tile.width, inclusive="left").all()
            else:  # tiles analysed alone cut every border nucleus
                cut = table["area_um2"].to_numpy()[near.any(axis=0)]
                assert near.sum() > len(planted) or (cut < 0.8 * areas.min()).any()
