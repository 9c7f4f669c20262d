"""The whole-slide census on a generated slide with planted cells (``demo.synthetic`` truth):
counts and densities per class and compartment, files re-read, reuse, cancel and resume
after a real SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from napari_imilia.demo.sample import write_synthetic_slide
from napari_imilia.export.geojson_stream_read import iter_object_batches
from napari_imilia.interpret.census import (
    CENSUS_FILES,
    CellSelection,
    CensusCancelled,
    CensusData,
    CensusSettings,
    census_slide,
)
from napari_imilia.interpret.census.parts import PARTS_DIR
from support.planted import planted_cells

INFLAMED_BOX = (600, 400, 700, 600)  # level-0 px (x, y, w, h) of the planted inflamed area
#: Tolerance of census counts against the planted cells of a class in its compartment.
COUNT_TOLERANCE = 0.10
#: Tolerance of a density against the planted density (same tiles, same tissue area).
DENSITY_TOLERANCE = 0.12


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("census_slide")
    return write_synthetic_slide(
        folder / "planted.svs",
        width_px=2048,
        height_px=1536,
        seed=3,
        inflamed_regions=[INFLAMED_BOX],
        compression="zlib",
    )


@pytest.fixture(scope="module")
def census(planted: Path, tmp_path_factory: pytest.TempPathFactory) -> CensusData:
    out = tmp_path_factory.mktemp("census_out")
    result = census_slide(planted, out, workers=1)
    assert not result.reused
    return CensusData.load(result.folder)


_planted_cells = planted_cells


@pytest.mark.parametrize(
    ("class_name", "compartment"),
    [
        ("Lymphocytes", "lamina propria"),
        ("Plasmocytes", "lamina propria"),
        ("Neutrophils", "lamina propria"),
        ("Eosinophils", "lamina propria"),
        ("Epithelial", "epithelium"),
        ("Fibroblasts", "lamina propria"),
    ],
)
def test_counts_match_the_planted_cells(census, planted, class_name, compartment):
    truth = _planted_cells(planted, census.tiles)
    expected = int(
        ((truth["class_name"] == class_name) & (truth["compartment"] == compartment)).sum()
    )
    found = census.total(CellSelection((class_name,), (compartment,))).count
    assert expected > 40
    assert abs(found - expected) <= COUNT_TOLERANCE * expected, (found, expected)


def test_densities_in_and_outside_the_inflamed_area_match_the_planted_ones(census, planted):
    truth = _planted_cells(planted, census.tiles)
    immune = CellSelection(("Lymphocytes", "Plasmocytes", "Neutrophils", "Eosinophils"))
    inflamed = census.tiles_in_box(INFLAMED_BOX)
    assert 4 <= inflamed.sum() < len(inflamed) - 4
    layer = census.density_pyramid(immune)[0]  # what the napari density layer shows
    area = census.areas_mm2(immune)
    planted_counts = np.bincount(
        truth["tile"][truth["class_name"].isin(immune.classes)], minlength=len(census.tiles)
    )
    for where in (inflamed, ~inflamed):
        expected = planted_counts[where].sum() / area[where].sum()
        value = census.total(immune, where).density_per_mm2
        assert abs(value - expected) <= DENSITY_TOLERANCE * expected, (value, expected)
        # the layer's pixels are the tiles' densities: area-weighted, they give the same value
        pixels = layer[census.row[where], census.col[where]]
        assert np.nansum(pixels * area[where]) / area[where].sum() == pytest.approx(value)
    inside = census.total(immune, inflamed).density_per_mm2
    outside = census.total(immune, ~inflamed).density_per_mm2
    assert inside > 2 * outside  # planted: 3.5 times as dense
    worst = census.worst_window(immune, 300)
    assert worst.density_per_mm2 > 1.5 * outside  # a 3 x 3 tile window overlapping the area
    x, y, w, h = worst.box
    assert x < INFLAMED_BOX[0] + INFLAMED_BOX[2] and INFLAMED_BOX[0] < x + w
    assert y < INFLAMED_BOX[1] + INFLAMED_BOX[3] and INFLAMED_BOX[1] < y + h


def test_the_files_agree_with_each_other(census):
    folder = census.folder
    assert sorted(os.listdir(folder)) == sorted(CENSUS_FILES)
    cells = pq.read_table(folder / "cells.parquet").to_pandas()
    assert len(cells) == census.info["n_cells"] == census.tiles["n_cells"].sum()
    assert set(cells["compartment"].astype(str)) <= {"epithelium", "lamina propria", "other"}
    for class_name in ("Lymphocytes", "Neutrophils", "Epithelial"):
        for compartment in ("epithelium", "lamina propria"):
            n = ((cells["class_name"] == class_name) & (cells["compartment"] == compartment)).sum()
            assert census.total(CellSelection((class_name,), (compartment,))).count == n
    regions = pd.read_csv(folder / "regions.csv")
    slide = regions[regions["region"] == "slide"].iloc[0]
    assert slide["n_cells"] == len(cells)
    assert slide["tissue_area_mm2"] == pytest.approx(census.tiles["tissue_area_mm2"].sum())
    batches = list(iter_object_batches(folder / "cells.geojson"))
    assert sum(len(b) for b in batches) == len(cells)
    batch = batches[0]
    assert batch.class_names()[:50] == cells["class_name"].astype(str).tolist()[:50]
    assert batch.metadata["compartment"][:50] == cells["compartment"].astype(str).tolist()[:50]
    # the outline's area centroid is the nucleus's (a lobed nucleus's outline is its
    # largest lobe: a few px away)
    offset = np.abs(batch.x - cells["centroid_x"].to_numpy()[: len(batch)])
    assert np.median(offset) < 0.01 and np.quantile(offset, 0.95) < 0.5
    area = batch.measurements["Nucleus: Area µm^2"]
    assert np.allclose(area, cells["area_um2"].to_numpy()[: len(batch)], rtol=1e-5)


def test_a_finished_census_is_reused_only_with_the_same_settings(census, planted):
    out = census.folder.parent.parent
    again = census_slide(planted, out)
    assert again.reused and again.n_cells == census.info["n_cells"]
    other = census_slide(planted, out, CensusSettings(min_tissue_fraction=0.5), workers=1)
    assert not other.reused and other.n_tiles < census.info["n_tiles"]


def test_cancel_keeps_the_parts_and_says_so(planted, tmp_path):
    cancel = threading.Event()
    settings = CensusSettings(tile_px=112)

    def stop_after_first_part(progress):
        if progress.done >= 64:
            cancel.set()

    with pytest.raises(CensusCancelled, match="run it again"):
        census_slide(
            planted, tmp_path, settings, workers=1, progress=stop_after_first_part, cancel=cancel
        )
    parts = tmp_path / "planted" / "census" / PARTS_DIR
    assert (parts / "part-000000.parquet").is_file()
    assert not (tmp_path / "planted" / "census" / "census.json").exists()


def test_a_census_killed_halfway_resumes_to_the_same_table(planted, tmp_path):
    settings = CensusSettings(tile_px=112)  # 144 tiles: three parts
    fresh = census_slide(planted, tmp_path / "fresh", settings, workers=1)
    out = tmp_path / "killed"
    script = (
        "import sys; from napari_imilia.interpret.census import CensusSettings, census_slide; "
        "census_slide(sys.argv[1], sys.argv[2], CensusSettings(tile_px=112), workers=1)"
    )
    process = subprocess.Popen([sys.executable, "-c", script, str(planted), str(out)])
    parts = out / "planted" / "census" / PARTS_DIR
    try:
        deadline = time.monotonic() + 120
        while not (parts / "part-000000.parquet").exists() and process.poll() is None:
            assert time.monotonic() < deadline, "no part written in 120 s"
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    kept = sorted(p.name for p in parts.glob("part-*.parquet"))
    assert kept and "part-000002.parquet" not in kept
    assert not (out / "planted" / "census" / "census.json").exists()
    seen = []
    resumed = census_slide(planted, out, settings, workers=1, progress=seen.append)
    assert seen[0].reused == 64 * len(kept)  # the kept parts were not inspected again
    assert not parts.exists()
    drop = ["outline"]
    a = pq.read_table(fresh.folder / "cells.parquet").drop(drop).to_pandas()
    b = pq.read_table(resumed.folder / "cells.parquet").drop(drop).to_pandas()
    pd.testing.assert_frame_equal(a, b)
    ta = pd.read_csv(fresh.folder / "tiles.csv").drop(columns=["seconds"])
    tb = pd.read_csv(resumed.folder / "tiles.csv").drop(columns=["seconds"])
    pd.testing.assert_frame_equal(ta, tb)
    info = json.loads((resumed.folder / "census.json").read_text())
    assert info["n_cells"] == fresh.n_cells


def test_worst_window_and_pyramid_on_a_known_table(tmp_path):
    columns = {"tile_id": [], "x": [], "y": [], "width": [], "height": [], "region": []}
    counts, areas = [], []
    for r in range(4):
        for c in range(4):
            columns["tile_id"].append(f"{c * 100}_{r * 100}")
            for key, value in (("x", c * 100), ("y", r * 100), ("width", 100), ("height", 100)):
                columns[key].append(value)
            columns["region"].append("piece 1")
            counts.append(40 if (r, c) == (2, 3) else 0 if (r, c) == (0, 0) else 10)
            areas.append(0.01 if (r, c) != (0, 0) else 0.0)
    tiles = pd.DataFrame(columns)
    selection = CellSelection(("Neutrophils",), ("lamina propria",))
    for column in selection.columns():
        tiles[column] = counts
    tiles["tissue_area_mm2"] = areas
    tiles["epithelium_area_mm2"] = 0.0
    tiles["lamina_propria_area_mm2"] = areas
    data = CensusData(tmp_path, {"mpp": 0.5}, tiles)
    selection = CellSelection(("Neutrophils",), ("lamina propria",), "lamina propria")
    pyramid = data.density_pyramid(selection)
    assert np.isnan(pyramid[0][0, 0]) and pyramid[0][2, 3] == pytest.approx(4000)
    assert pyramid[1][1, 1] == pytest.approx((40 + 30) / 0.04)  # sums, then divides
    assert pyramid[1][0, 0] == pytest.approx(30 / 0.03)  # the tile without tissue adds none
    worst = data.worst_window(selection, 100)  # 100 µm = two 50 µm tiles
    assert worst.density_per_mm2 == pytest.approx(70 / 0.04)
    assert worst.box[2] == 200 and "300_200" in worst.tile_ids
    assert data.top_tiles(selection, 1) == ["300_200"]


def test_imilia_cells_reuses_a_finished_census_and_refuses_bad_options(census, planted, capsys):
    from napari_imilia.cli import main

    out = census.folder.parent.parent
    assert main(["cells", str(planted), "--out", str(out)]) == 0  # made (or reused)
    capsys.readouterr()
    assert main(["cells", str(planted), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert (
        f"planted: {census.info['n_tiles']} tiles, {census.info['n_cells']} cells (reused)"
        in printed
    )
    table = pd.read_csv(out / "cells_cohort.csv")
    assert table["status"].tolist() == ["ok"] and bool(table["reused"].iloc[0])
    assert main(["cells", str(planted), "--out", str(out), "--cell-backend", "cellvit"]) == 2
    assert "needs a local checkpoint" in capsys.readouterr().err
    assert main(["cells", str(planted), "--out", str(out), "--min-tissue", "0"]) == 2
