"""The classical cell backend: accuracy on synthetic H&E with planted nuclei, bad tiles,
table/label/contour consistency, resolution invariance and the real small_HE.svs slide."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from scipy import ndimage as ndi
from skimage.draw import ellipse
from skimage.measure import regionprops

from napari_imilia.errors import DataError
from napari_imilia.interpret.cells import (
    CELL_TABLE_COLUMNS,
    CellBackend,
    CellTile,
    build_tile_cells,
    create_cell_backend,
)
from napari_imilia.interpret.cells.classical import ClassicalBackend
from napari_imilia.interpret.cells.classical_rules import ClassicalRules
from napari_imilia.interpret.cells.evaluate import AccuracyReport, evaluate_tile
from napari_imilia.interpret.cells.stain import optical_density, tissue_from_od
from napari_imilia.interpret.cells.types import class_id

synthetic = pytest.importorskip("napari_imilia.demo.synthetic")


def _segment(backend, tile, *, level0_xy=(0, 0), level0_per_px=1.0, **extra):
    return backend.segment(
        tile.rgb, mpp=tile.mpp, level0_xy=level0_xy, level0_per_px=level0_per_px, **extra
    )


def _evaluate(tile, cells, level0_per_px=1.0):
    """``cells.evaluate`` of detections against the tile's planted nucleated cells (matched
    within 4 µm); planted pixel-index centres become continuous level-0 px."""
    height, width = tile.rgb.shape[:2]
    planted = [
        c
        for c in tile.cells
        if c.class_name != "Red blood cell" and 0 <= c.x_px < width and 0 <= c.y_px < height
    ]
    xy = (np.array([[c.x_px, c.y_px] for c in planted]).reshape(-1, 2) + 0.5) * level0_per_px
    origin = np.asarray(cells.level0_xy, dtype=np.float64)
    size = (round(width * tile.mpp / cells.mpp), round(height * tile.mpp / cells.mpp))
    return evaluate_tile(cells, xy + origin, [c.class_name for c in planted], tile_size_px=size)


def _match(tile, cells, level0_per_px=1.0):
    """(pairs, planted count, false detections) of ``_evaluate``."""
    result = _evaluate(tile, cells, level0_per_px)
    return result.pairs, result.n_known, len(result.false_classes)


@pytest.fixture(scope="module")
def backend() -> ClassicalBackend:
    return ClassicalBackend()


@pytest.fixture(scope="module")
def report(backend) -> AccuracyReport:
    """Detections against planted nuclei on 8 held-out synthetic tiles (seeds 100-103,
    normal and inflamed; the rules were not tuned on them)."""
    report = AccuracyReport()
    for seed in range(100, 104):
        for kwargs in ({}, {"inflamed": True}):
            tile = synthetic.render_tile(224, 0.5, seed=seed, **kwargs)
            report.add([_evaluate(tile, _segment(backend, tile))])
    return report


def test_detects_planted_nuclei_at_their_positions_and_counts(report):
    # stated tolerances; docs/cells.md gives the figures measured on seeds 100-119
    assert report.n_known > 300
    assert report.recall >= 0.97, report.recall  # measured 0.996
    assert report.precision >= 0.97, report.precision  # measured 0.989
    assert report.position_error_um(0.5) <= 0.3  # measured median 0.09 µm
    assert report.position_error_um(0.95) <= 2.0  # measured 95th percentile 1.15 µm
    assert report.count_error(0.5) <= 0.05  # measured median 1.6% per tile
    assert report.count_error(1.0) <= 0.15  # measured worst tile 10.6%


@pytest.mark.parametrize(
    ("name", "min_recall", "min_precision"),
    [
        # measured on these 8 tiles: recall / precision
        ("Lymphocytes", 0.88, 0.95),  # 0.94 / 0.99
        ("Plasmocytes", 0.75, 0.95),  # 0.82 / 1.00
        ("Epithelial", 0.85, 0.95),  # 0.92 / 0.99 (no epithelium mask)
        ("Eosinophils", 0.9, 0.9),  # 1.00 / 1.00
        ("Neutrophils", 0.75, 0.9),  # 0.86 / 1.00
        ("Fibroblasts", 0.8, 0.65),  # 1.00 / 0.77
    ],
)
def test_per_class_recall_and_precision(report, name, min_recall, min_precision):
    """Macrophages are left out: 5 planted here, recall 0.8 but precision 0.25 (pale nuclei
    of other classes); docs/cells.md reports them as the classical rules' weakest class."""
    row = report.per_class()[name]
    assert row["n_known"] >= 5, row
    assert row["recall"] >= min_recall, (name, row)
    assert row["precision"] >= min_precision, (name, row)


GRID_CLASSES = ("Lymphocytes", "Plasmocytes", "Neutrophils", "Eosinophils", "Fibroblasts")


def _grid_tile(seed: int):
    """A 224 px tile at 0.5 µm/px with one nucleus of each lamina-propria class per cell of
    a 4 x 4 grid (56 px apart, jittered), macrophages included, on plain stroma."""
    from napari_imilia.demo.synthetic.looks import CELL_LOOKS

    rng = np.random.default_rng(seed)
    names = [*GRID_CLASSES, "Macrophages"]
    planted = []
    for k in range(16):
        name = names[k % len(names)]
        look = CELL_LOOKS[name]
        planted.append(
            synthetic.PlantedCell(
                x_px=28 + 56 * (k % 4) + rng.uniform(-3, 3),
                y_px=28 + 56 * (k // 4) + rng.uniform(-3, 3),
                class_name=name,
                major_um=look.nucleus_um[0],
                minor_um=look.nucleus_um[1],
                angle_rad=rng.uniform(0, np.pi),
                lobes=look.lobes[0],
            )
        )
    return synthetic.render_tile(224, 0.5, seed=seed, epithelium=False, cells=planted)


def test_each_planted_class_comes_back_at_its_position(backend):
    report = AccuracyReport()
    for seed in range(3):
        tile = _grid_tile(seed)
        report.add([_evaluate(tile, _segment(backend, tile))])
    confusion = report.confusion
    for name in GRID_CLASSES:  # 9 of each but fibroblasts (6)
        planted = sum(n for (truth, _), n in confusion.items() if truth == name)
        assert planted == (6 if name == "Fibroblasts" else 9), name  # every one detected
        assert confusion[(name, name)] >= planted - 1, (name, confusion)
    errors = [
        error
        for tile in report.tiles
        for (truth, _), error in zip(tile.pairs, tile.errors_um, strict=True)
        if truth != "Macrophages"
    ]
    assert max(errors) <= 0.6, max(errors)  # centroid within 0.6 µm (measured at most 0.38)
    # pale vesicular macrophage nuclei are mostly missed or split on plain stroma (measured
    # 0 of 4 recovered): they must at least never count as immune cells
    immune = {"Lymphocytes", "Plasmocytes", "Neutrophils", "Eosinophils"}
    assert not any(p in immune for (t, p) in confusion if t == "Macrophages")


def test_separates_granulocytes_from_lymphocytes(backend):
    mix = {"Eosinophils": 0.35, "Neutrophils": 0.35, "Lymphocytes": 0.3}
    pairs = []
    for seed in (100, 101):
        tile = synthetic.render_tile(224, 0.5, seed=seed, composition=mix, epithelium=False)
        pairs += _match(tile, _segment(backend, tile))[0]
    for name, minimum in (("Eosinophils", 0.85), ("Neutrophils", 0.75), ("Lymphocytes", 0.85)):
        predicted = [p for t, p in pairs if t == name]
        assert len(predicted) >= 10
        assert np.mean([p == name for p in predicted]) >= minimum, name


def test_epithelium_mask_helps_epithelium_but_keeps_immune_cells(backend):
    tile = synthetic.render_tile(224, 0.5, seed=102, inflamed=True)
    plain = _match(tile, _segment(backend, tile))[0]
    masked = _match(tile, _segment(backend, tile, epithelium_mask=tile.epithelium_mask))[0]

    def accuracy(pairs, name):
        return np.mean([p == name for t, p in pairs if t == name])

    assert accuracy(masked, "Epithelial") >= accuracy(plain, "Epithelial")
    assert accuracy(masked, "Lymphocytes") == accuracy(plain, "Lymphocytes")


def test_blank_and_nucleus_free_tiles_give_no_cells(backend):
    white = np.full((224, 224, 3), 245, np.uint8)
    cells = backend.segment(white, mpp=0.5, level0_xy=(0, 0), level0_per_px=1.0)
    assert cells.n_cells == 0 and cells.flags == ["no_tissue"]
    assert list(cells.table.columns) == list(CELL_TABLE_COLUMNS)
    assert not cells.labels.any()
    noise = np.random.default_rng(0).normal(0, 4, (224, 224, 3))
    stroma = np.clip(np.array([232, 165, 205]) + noise, 0, 255).astype(np.uint8)
    cells = backend.segment(stroma, mpp=0.5, level0_xy=(0, 0), level0_per_px=1.0)
    assert cells.n_cells == 0 and "no_tissue" not in cells.flags


def test_blurred_tile_is_flagged(backend):
    tile = synthetic.render_tile(224, 0.5, seed=100)
    assert "out_of_focus" not in _segment(backend, tile).flags
    blurred = ndi.gaussian_filter(tile.rgb.astype(np.float32), (2.0, 2.0, 0))  # σ = 1 µm
    cells = backend.segment(
        blurred.round().astype(np.uint8), mpp=0.5, level0_xy=(0, 0), level0_per_px=1.0
    )
    assert "out_of_focus" in cells.flags


def test_ink_is_flagged_and_never_a_nucleus(backend):
    tile = synthetic.render_tile(224, 0.5, seed=101, inflamed=True)
    rgb = tile.rgb.copy()
    rgb[:, 60:130] = (40, 150, 120)  # tissue-marking dye
    cells = backend.segment(rgb, mpp=0.5, level0_xy=(0, 0), level0_per_px=1.0)
    assert "not_he" in cells.flags
    assert not cells.labels[:, 60:130].any()
    assert cells.n_cells > 20


def test_bad_inputs_raise_data_errors(backend):
    rgb = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(DataError, match="uint8"):
        backend.segment(rgb.astype(float), mpp=0.5, level0_xy=(0, 0), level0_per_px=1.0)
    with pytest.raises(DataError, match=r"\(H, W, 3\)"):
        backend.segment(rgb[:, :, 0], mpp=0.5, level0_xy=(0, 0), level0_per_px=1.0)
    with pytest.raises(DataError, match="mpp"):
        backend.segment(rgb, mpp=0.0, level0_xy=(0, 0), level0_per_px=1.0)
    with pytest.raises(DataError, match="tissue mask"):
        backend.segment(
            rgb, mpp=0.5, level0_xy=(0, 0), level0_per_px=1.0, tissue_mask=np.ones((8, 8))
        )


def test_labels_table_and_contours_agree(backend):
    tile = synthetic.render_tile(224, 0.5, seed=103, inflamed=True)
    x0, y0, s = 1000, 2000, 2.0  # a slide scanned at 0.25 µm/px, tile read at 0.5
    cells = _segment(backend, tile, level0_xy=(x0, y0), level0_per_px=s)
    table = cells.table
    assert cells.n_cells > 30 and cells.mpp == 0.5 and cells.level0_per_px == s
    present = np.unique(cells.labels)[1:]
    assert sorted(table["label"]) == present.tolist()
    assert table["cell_id"].is_unique
    counts = np.bincount(cells.labels.ravel())[table["label"]]
    np.testing.assert_allclose(table["area_um2"], counts * 0.25)
    assert ((table["probability"] > 0) & (table["probability"] <= 1)).all()
    assert (table["class_id"] == [class_id(n) for n in table["class_name"]]).all()
    assert len(cells.contours) == len(table)
    for contour, count in zip(cells.contours, counts, strict=True):
        assert contour.shape[1] == 2 and len(contour) >= 4
        np.testing.assert_array_equal(contour[0], contour[-1])
        assert contour[:, 0].min() >= x0 and contour[:, 0].max() <= x0 + 224 * s
        assert contour[:, 1].min() >= y0 and contour[:, 1].max() <= y0 + 224 * s
        polygon = shapely.Polygon(contour)
        assert polygon.is_valid
        assert 0.55 <= polygon.area / (count * s * s) <= 1.0
    rows = np.floor((table["centroid_y"] - y0) / s).astype(int)
    cols = np.floor((table["centroid_x"] - x0) / s).astype(int)
    assert ((rows >= 0) & (rows < 224) & (cols >= 0) & (cols < 224)).all()


def test_same_counts_at_025_and_05_um_per_px():
    for seed in (100, 101):
        fine = synthetic.render_tile(448, 0.25, seed=seed, inflamed=True)
        coarse = synthetic.render_tile(224, 0.5, seed=seed, inflamed=True)
        for backend in (ClassicalBackend(), ClassicalBackend(analysis_mpp=None)):
            n_fine = _segment(backend, fine).n_cells
            n_coarse = _segment(backend, coarse).n_cells
            assert abs(n_fine - n_coarse) <= 0.1 * n_coarse, (seed, n_fine, n_coarse)
    cells = _segment(ClassicalBackend(), fine)  # resampled to 0.5 µm/px
    assert cells.labels.shape == (224, 224) and cells.level0_per_px == pytest.approx(2.0)
    pairs, n_planted, _ = _match(fine, cells, level0_per_px=1.0)
    assert len(pairs) >= 0.95 * n_planted


def test_deterministic_and_segment_many(backend):
    tiles = [synthetic.render_tile(160, 0.5, seed=s, inflamed=True) for s in (104, 105)]
    many = backend.segment_many([CellTile(t.rgb, t.mpp, (0, 0), 1.0, t.tissue_mask) for t in tiles])
    for tile, cells in zip(tiles, many, strict=True):
        again = _segment(backend, tile, tissue_mask=tile.tissue_mask)
        assert cells.table.equals(again.table)
        np.testing.assert_array_equal(cells.labels, again.labels)


def test_registry_and_rule_overrides():
    backend = create_cell_backend("classical", analysis_mpp=0.25)
    assert isinstance(backend, CellBackend) and backend.analysis_mpp == 0.25
    tile = synthetic.render_tile(160, 0.5, seed=104, inflamed=True)
    nothing_matches = ClassicalRules(lymphocyte_min_area_um2=1e6, default_class="Macrophages")
    cells = _segment(ClassicalBackend(rules=nothing_matches), tile)
    assert "Lymphocytes" not in set(cells.table["class_name"])
    assert (cells.table["class_name"] == "Macrophages").any()


def test_build_tile_cells_measures_like_regionprops():
    labels = np.zeros((64, 80), np.int32)
    labels[ellipse(20, 30, 6, 12, shape=labels.shape, rotation=0.4)] = 3
    labels[ellipse(45, 60, 8, 5, shape=labels.shape)] = 7
    cells = build_tile_cells(
        labels,
        {3: 2, 7: 11},
        {3: 0.5, 7: 0.25},
        None,
        mpp=0.5,
        level0_xy=(100, 200),
        level0_per_px=2.0,
        backend="test",
    )
    assert cells.table["label"].tolist() == [3, 7]
    assert cells.table["class_name"].tolist() == ["Lymphocytes", "Epithelial"]
    assert cells.table["cell_id"].tolist() == ["test:100:200:3", "test:100:200:7"]
    for region, row in zip(regionprops(labels), cells.table.itertuples(), strict=True):
        assert row.area_um2 == pytest.approx(region.area * 0.25)
        assert row.eccentricity == pytest.approx(region.eccentricity)
        # continuous level-0 coordinates: pixel j of the labels spans [x0 + 2j, x0 + 2j + 2)
        assert row.centroid_x == pytest.approx(100 + (region.centroid[1] + 0.5) * 2)
        assert row.centroid_y == pytest.approx(200 + (region.centroid[0] + 0.5) * 2)
    assert np.isnan(cells.table["mean_hematoxylin_od"]).all()
    with pytest.raises(DataError, match="class ids"):
        build_tile_cells(
            labels,
            np.full(8, 99),
            None,
            None,
            mpp=0.5,
            level0_xy=(0, 0),
            level0_per_px=1.0,
            backend="test",
        )
    with pytest.raises(DataError, match="no entry for label"):
        build_tile_cells(
            labels, {3: 2}, None, None, mpp=0.5, level0_xy=(0, 0), level0_per_px=1.0, backend="test"
        )
    empty = build_tile_cells(
        np.zeros((4, 4), np.int32),
        [],
        None,
        None,
        mpp=0.5,
        level0_xy=(0, 0),
        level0_per_px=1.0,
        backend="test",
    )
    assert empty.n_cells == 0 and list(empty.table.columns) == list(CELL_TABLE_COLUMNS)


def test_real_slide_density_and_cells_in_tissue(backend, small_svs):
    import tiffslide

    slide = tiffslide.TiffSlide(small_svs)
    mpp = 0.499
    for x, y in ((1000, 1300), (600, 2000), (800, 1200)):
        rgb = np.asarray(slide.read_region((x, y), 0, (448, 448)))[:, :, :3]
        cells = backend.segment(rgb, mpp=mpp, level0_xy=(x, y), level0_per_px=1.0)
        tissue = tissue_from_od(optical_density(rgb), mpp=mpp)
        density = cells.n_cells / (tissue.sum() * mpp * mpp / 1e6)
        assert 500 <= density <= 10_000, density  # nuclei per mm² of tissue
        rows = np.floor(cells.table["centroid_y"].to_numpy() - y).astype(int)
        cols = np.floor(cells.table["centroid_x"].to_numpy() - x).astype(int)
        assert tissue[rows, cols].all()
        assert not {"out_of_focus", "no_tissue"} & set(cells.flags)


def test_evaluate_counts_matches_false_detections_and_classes_by_hand():
    labels = np.zeros((40, 40), np.int32)
    labels[4:8, 4:8], labels[20:24, 20:24], labels[30:34, 10:14] = 1, 2, 3  # centres + 0.5
    class_ids = [0, class_id("Lymphocytes"), class_id("Plasmocytes"), class_id("Lymphocytes")]
    cells = build_tile_cells(
        labels, class_ids, None, None, mpp=0.5, level0_xy=(100, 0), level0_per_px=2.0, backend="t"
    )
    # detections at level-0 (112, 12), (144, 44), (124, 64) (0.25 µm per level-0 px); known:
    # the first exactly, the second 1 µm off, a third more than 4 µm from any detection
    known = np.array([[112.0, 12.0], [148.0, 44.0], [160.0, 40.0]])
    result = evaluate_tile(
        cells, known, ["Lymphocytes", "Lymphocytes", "Neutrophils"], tile_size_px=(40, 40)
    )
    assert result.pairs == [("Lymphocytes", "Lymphocytes"), ("Lymphocytes", "Plasmocytes")]
    np.testing.assert_allclose(result.errors_um, [0.0, 1.0])
    assert result.false_classes == ["Lymphocytes"]  # (124, 64): 12 µm inside, unmatched
    report = AccuracyReport([result])
    assert (report.recall, report.precision) == (2 / 3, 2 / 3)
    assert report.per_class()["Lymphocytes"] == {
        "n_known": 2,
        "recall": 0.5,
        "n_predicted": 2,
        "precision": 0.5,
    }
    assert report.count_error(0.5) == 0.0  # 3 known and 3 found inside the 3 µm border
