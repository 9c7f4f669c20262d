"""Per-tile markers against hand-computed values, and the marker-score summary."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from napari_imilia.errors import DataError
from napari_imilia.interpret.cells.types import CELL_CLASSES, CELL_TABLE_COLUMNS, TileCells
from napari_imilia.interpret.markers import (
    column_key,
    marker_columns,
    marker_score_summary,
    markers_table,
    plot_marker_summary,
    tile_markers,
)

X0, Y0, SCALE = 1000, 2000, 2.0  # level-0 origin; level-0 px per analysis px (0.5 / 0.25 µm)
# (class, analysis row, analysis col): epithelium = columns < 50, tissue = rows < 80.
CELLS = [
    ("Lymphocytes", 10, 10),  # intraepithelial
    ("Lymphocytes", 10, 70),  # stroma
    ("Lymphocytes", 10, 120),  # centroid outside the tile: counted, never intraepithelial
    ("Neutrophils", 20, 20),  # intraepithelial
    ("Neutrophils", 90, 10),  # in the epithelium mask but outside tissue
    ("Plasmocytes", 30, 60),
    ("Eosinophils", 40, 48),  # intraepithelial
    ("Epithelial", 5, 5),
    ("Fibroblasts", 50, 90),
]


def make_cells(cells=CELLS) -> TileCells:
    rows = []
    for index, (name, r, c) in enumerate(cells):
        rows.append(
            {
                "cell_id": f"c{index}",
                "label": index + 1,
                "class_id": CELL_CLASSES.index(name),
                "class_name": name,
                "probability": 0.9,
                "centroid_x": X0 + (c + 0.5) * SCALE,  # the pixel centre
                "centroid_y": Y0 + (r + 0.5) * SCALE,
                "area_um2": 30.0,
                "eccentricity": 0.5,
                "mean_hematoxylin_od": 0.4,
            }
        )
    table = pd.DataFrame(rows, columns=list(CELL_TABLE_COLUMNS))
    return TileCells(
        labels=np.zeros((100, 100), dtype=np.int32),
        table=table,
        contours=[np.zeros((0, 2)) for _ in rows],
        mpp=0.5,
        level0_xy=(X0, Y0),
        level0_per_px=SCALE,
        backend="test",
    )


def masks(shape=(100, 100)):
    epithelium = np.zeros(shape, dtype=bool)
    epithelium[:, : shape[1] // 2] = True
    tissue = np.zeros(shape, dtype=bool)
    tissue[: shape[0] * 8 // 10] = True
    return epithelium, tissue


def test_markers_match_hand_computed_values():
    epithelium, tissue = masks()
    m = tile_markers(make_cells(), epithelium, tissue)
    tissue_mm2 = 80 * 100 * 0.25 / 1e6  # 0.002 mm²
    epi_mm2 = 80 * 50 * 0.25 / 1e6  # 0.001 mm²
    assert m.tissue_area_mm2 == pytest.approx(tissue_mm2, rel=1e-12)
    assert m.epithelium_area_mm2 == pytest.approx(epi_mm2, rel=1e-12)
    assert m.epithelium_fraction == pytest.approx(0.5)
    assert m.n_cells == 9
    assert m.counts["Lymphocytes"] == 3 and m.counts["Neutrophils"] == 2
    assert m.counts["Plasmocytes"] == 1 and m.counts["Eosinophils"] == 1
    assert m.counts["Macrophages"] == 0 and "Background" not in m.counts
    assert set(m.counts) == set(CELL_CLASSES[1:])
    assert m.densities_per_mm2["Lymphocytes"] == pytest.approx(3 / tissue_mm2, rel=1e-12)
    assert m.densities_per_mm2["Macrophages"] == 0.0
    assert m.immune_count == 7
    assert m.immune_density_per_mm2 == pytest.approx(7 / tissue_mm2, rel=1e-12)
    assert m.intraepithelial_counts == {
        "Lymphocytes": 1,
        "Plasmocytes": 0,
        "Neutrophils": 1,
        "Eosinophils": 1,
    }
    assert m.intraepithelial_immune_count == 3
    assert m.intraepithelial_densities_per_mm2["Neutrophils"] == pytest.approx(1 / epi_mm2)
    assert m.intraepithelial_immune_density_per_mm2 == pytest.approx(3 / epi_mm2)


def test_masks_at_another_resolution_give_the_same_markers():
    full = tile_markers(make_cells(), *masks())
    half = tile_markers(make_cells(), *masks((50, 50)), mpp=1.0)
    assert half == full


def test_no_tissue_mask_uses_whole_tile_and_empty_tissue_gives_nan():
    epithelium, _ = masks()
    m = tile_markers(make_cells(), epithelium)
    assert m.tissue_area_mm2 == pytest.approx(100 * 100 * 0.25 / 1e6)
    assert m.intraepithelial_counts["Neutrophils"] == 2  # the row-90 neutrophil now counts
    empty = tile_markers(make_cells(), epithelium, np.zeros_like(epithelium))
    assert empty.tissue_area_mm2 == 0.0
    assert math.isnan(empty.densities_per_mm2["Lymphocytes"])
    assert math.isnan(empty.epithelium_fraction)
    assert math.isnan(empty.intraepithelial_immune_density_per_mm2)
    assert empty.counts["Lymphocytes"] == 3


def test_mask_of_another_tile_size_is_an_error():
    with pytest.raises(DataError, match="µm"):
        tile_markers(make_cells(), np.zeros((60, 60), dtype=bool))
    with pytest.raises(DataError, match="tissue mask"):
        tile_markers(make_cells(), np.zeros((100, 100), bool), np.zeros((50, 50), bool))


def test_markers_table_has_documented_columns():
    epithelium, tissue = masks()
    cells = make_cells()
    df = markers_table(
        [("t0", tile_markers(cells, epithelium, tissue)), ("t1", tile_markers(cells, epithelium))]
    )
    assert list(df.columns) == marker_columns()
    assert df["tile_id"].tolist() == ["t0", "t1"]
    for name in (
        "count_Lymphocytes",
        "density_per_mm2_Red_blood_cell",
        "epithelium_fraction",
        "intraepithelial_Neutrophils",
        "intraepithelial_density_per_mm2_immune",
    ):
        assert name in df.columns
    assert df.loc[0, "intraepithelial_Neutrophils"] == 1
    assert df.loc[1, "intraepithelial_Neutrophils"] == 2
    assert column_key("Red blood cell") == "Red_blood_cell"


def synthetic_markers(n=40, seed=0):
    rng = np.random.default_rng(seed)
    scores = rng.random(n)
    df = pd.DataFrame({c: np.zeros(n) for c in marker_columns()})
    df["tile_id"] = [f"t{i}" for i in range(n)]
    df["density_per_mm2_Neutrophils"] = 1000 * scores**2  # monotone in score
    df["density_per_mm2_Lymphocytes"] = -scores + 0.01 * rng.random(n)
    df["density_per_mm2_Eosinophils"] = rng.random(n)
    df.loc[3, "density_per_mm2_Eosinophils"] = np.nan
    df["epithelium_fraction"] = 0.3  # constant
    return df, scores


def test_marker_score_summary_spearman_and_nan_safety():
    df, scores = synthetic_markers()
    summary = marker_score_summary(df, scores)
    neut = summary["markers"]["density_per_mm2_Neutrophils"]
    assert neut["spearman_rho"] == pytest.approx(1.0)
    assert neut["p_value"] < 1e-6
    assert neut["mean_high_score"] > neut["mean_low_score"]
    assert summary["markers"]["density_per_mm2_Lymphocytes"]["spearman_rho"] < -0.9
    assert summary["markers"]["density_per_mm2_Eosinophils"]["n_tiles"] == 39
    constant = summary["markers"]["epithelium_fraction"]
    assert math.isnan(constant["spearman_rho"]) and math.isnan(constant["p_value"])
    # A Series indexed by tile id is aligned on tile_id, whatever its order.
    shuffled = pd.Series(scores, index=df["tile_id"]).iloc[::-1]
    assert marker_score_summary(df, shuffled)["markers"]["density_per_mm2_Neutrophils"][
        "spearman_rho"
    ] == pytest.approx(1.0)
    with pytest.raises(DataError, match="scores"):
        marker_score_summary(df, scores[:-1])


def test_plot_marker_summary_writes_png(tmp_path):
    df, scores = synthetic_markers()
    summary = marker_score_summary(df, scores)
    path = plot_marker_summary(summary, df, scores, tmp_path / "summary.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_scatter_titles_and_axes_of_the_summary_png():
    from napari_imilia.interpret.markers import density_axis_limits, scatter_title

    assert scatter_title("density_per_mm2_Eosinophils", math.nan) == "Eosinophils (rho n/a)"
    assert scatter_title("density_per_mm2_immune", 0.8512) == "immune (rho +0.85)"
    assert density_axis_limits(np.zeros(5)) == (0.0, 1.0)
    assert density_axis_limits(np.array([10.0, np.nan, 200.0])) == (0.0, pytest.approx(210.0))


def test_markers_of_a_rendered_tile_equal_hand_counts_from_its_planted_cells():
    """A synthetic H&E tile with 16 planted immune cells (lymphocytes, plasma cells,
    eosinophils, neutrophils on a grid) through the classical backend: counts, densities and
    intraepithelial counts equal those computed by hand from the planted cells and a
    hand-drawn epithelium band (the left 100 columns). Seed 0 is a tile the backend
    classifies exactly (its accuracy is tested in test_cells_classical.py)."""
    from napari_imilia.demo.synthetic import PlantedCell, render_tile
    from napari_imilia.demo.synthetic.looks import CELL_LOOKS
    from napari_imilia.interpret.cells.classical import ClassicalBackend

    names = ["Lymphocytes", "Plasmocytes", "Eosinophils", "Neutrophils"]
    planted = []
    for k in range(16):
        look = CELL_LOOKS[names[k % 4]]
        planted.append(
            PlantedCell(
                x_px=28 + 56 * (k // 4) + (k % 3),
                y_px=28 + 56 * (k % 4) + (k % 2),
                class_name=names[k % 4],
                major_um=look.nucleus_um[0],
                minor_um=look.nucleus_um[1],
                angle_rad=0.4 * k,
                lobes=look.lobes[0],
            )
        )
    tile = render_tile(224, 0.5, seed=0, epithelium=False, cells=planted)
    cells = ClassicalBackend().segment(tile.rgb, mpp=0.5, level0_xy=(X0, Y0), level0_per_px=2.0)
    epithelium = np.zeros((224, 224), dtype=bool)
    epithelium[:, :100] = True
    m = tile_markers(cells, epithelium)

    tissue_mm2 = 224 * 224 * 0.25 / 1e6
    for name in names:
        n = sum(c.class_name == name for c in planted)
        inside = sum(c.class_name == name and c.x_px + 0.5 < 100 for c in planted)
        assert m.counts[name] == n == 4, (name, cells.counts())
        assert m.densities_per_mm2[name] == pytest.approx(n / tissue_mm2, rel=1e-12)
        assert m.intraepithelial_counts[name] == inside
        assert m.intraepithelial_densities_per_mm2[name] == pytest.approx(
            inside / (224 * 100 * 0.25 / 1e6), rel=1e-12
        )
    assert m.n_cells == 16 and m.immune_count == 16
    assert m.intraepithelial_immune_count == 8  # the first two grid columns
    assert m.epithelium_fraction == pytest.approx(100 / 224)
