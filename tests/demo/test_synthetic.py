"""Synthetic H&E: determinism, ground truth that matches the pixels, plausible appearance."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from napari_imilia.demo.synthetic import PlantedCell, make_scene, render_region, render_tile
from napari_imilia.demo.synthetic.raster import rasterise
from napari_imilia.interpret.cells.types import CELL_CLASSES, IMMUNE_CLASSES


@pytest.fixture(scope="module")
def normal_tile():
    return render_tile(320, 0.5, seed=11)


@pytest.fixture(scope="module")
def inflamed_tile():
    return render_tile(320, 0.5, seed=11, inflamed=True)


def _interior_labels(tile, margin_px: int = 2) -> list[int]:
    """Labels whose pixels stay ``margin_px`` away from the image border."""
    height, width = tile.instance_labels.shape
    slices = ndimage.find_objects(tile.instance_labels)
    return [
        k + 1
        for k, box in enumerate(slices)
        if box is not None
        and box[0].start >= margin_px
        and box[1].start >= margin_px
        and box[0].stop <= height - margin_px
        and box[1].stop <= width - margin_px
    ]


def test_same_seed_same_pixels_other_seed_other_pixels():
    first, again = render_tile(seed=5, inflamed=True), render_tile(seed=5, inflamed=True)
    for name in ("rgb", "instance_labels", "class_ids", "epithelium_mask", "tissue_mask"):
        np.testing.assert_array_equal(getattr(first, name), getattr(again, name))
    assert first.cells == again.cells
    other = render_tile(seed=6, inflamed=True)
    assert np.abs(first.rgb.astype(int) - other.rgb.astype(int)).mean() > 10


def test_shapes_and_dtypes(normal_tile):
    tile = render_tile(200, 0.25, seed=1)
    assert tile.rgb.shape == (200, 200, 3) and tile.rgb.dtype == np.uint8
    assert tile.instance_labels.shape == (200, 200) and tile.instance_labels.dtype == np.int32
    assert tile.class_ids.dtype == np.uint8
    assert tile.epithelium_mask.dtype == bool and tile.tissue_mask.dtype == bool
    assert tile.mpp == 0.25
    region = render_region(300, 180, 0.5, seed=2)
    assert region.rgb.shape == (180, 300, 3) and region.instance_labels.shape == (180, 300)


def test_labels_and_classes_match_the_planted_cells(normal_tile, inflamed_tile):
    for tile in (normal_tile, inflamed_tile):
        labels = tile.instance_labels
        assert set(np.unique(labels)) == set(range(len(tile.cells) + 1))
        expected = np.array([0] + [CELL_CLASSES.index(c.class_name) for c in tile.cells])
        np.testing.assert_array_equal(tile.class_ids, expected[labels].astype(np.uint8))
        interior = _interior_labels(tile)
        assert len(interior) > 20
        centres = ndimage.center_of_mass(np.ones_like(labels), labels, interior)
        for k, (row, col) in zip(interior, centres, strict=True):
            cell = tile.cells[k - 1]
            tolerance = 0.6 if cell.lobes == 1 else 1.5
            assert abs(col - cell.x_px) < tolerance and abs(row - cell.y_px) < tolerance, cell


def test_cells_do_not_overlap_so_each_keeps_its_whole_nucleus(inflamed_tile):
    tile = inflamed_tile
    areas = ndimage.sum_labels(
        np.ones_like(tile.instance_labels), tile.instance_labels, np.arange(1, len(tile.cells) + 1)
    )
    for k in _interior_labels(tile):
        cell = tile.cells[k - 1]
        if cell.lobes != 1:
            continue
        ellipse_px = np.pi / 4 * cell.major_um * cell.minor_um / tile.mpp**2
        assert areas[k - 1] == pytest.approx(ellipse_px, rel=0.2), cell


def test_explicit_cells_are_drawn_where_asked():
    cells = [
        PlantedCell(40.0, 50.0, "Lymphocytes", 6.5, 6.0, 0.0),
        PlantedCell(120.0, 60.0, "Neutrophils", 8.6, 6.6, 0.4, lobes=4),
        PlantedCell(60.0, 140.0, "Plasmocytes", 6.4, 5.9, 1.0),
        PlantedCell(150.0, 150.0, "Red blood cell", 7.4, 7.0, 0.0),
    ]
    tile = render_tile(200, 0.5, seed=3, epithelium=False, cells=cells)
    assert tile.cells == cells
    centres = ndimage.center_of_mass(
        np.ones_like(tile.instance_labels), tile.instance_labels, [1, 2, 3, 4]
    )
    for cell, (row, col) in zip(cells, centres, strict=True):
        assert (col, row) == pytest.approx((cell.x_px, cell.y_px), abs=1.0)
    assert tile.class_ids[50, 40] == CELL_CLASSES.index("Lymphocytes")
    with pytest.raises(ValueError, match="Goblin"):
        render_tile(cells=[PlantedCell(5, 5, "Goblin", 5, 5, 0)])


def _mean_rgb(tile, mask):
    return tile.rgb[mask].astype(float).mean(axis=0)


def test_class_appearance_lymphocytes_darker_and_smaller_eosinophils_redder():
    cells = []
    for row in range(4):
        for col, name in enumerate(("Lymphocytes", "Epithelial", "Eosinophils", "Neutrophils")):
            shape = {
                "Lymphocytes": (6.6, 6.1, 1),
                "Epithelial": (10.0, 4.6, 1),
                "Eosinophils": (9.0, 4.4, 2),
                "Neutrophils": (8.6, 6.6, 3),
            }[name]
            cells.append(
                PlantedCell(
                    30.0 + 60 * col,
                    30.0 + 60 * row,
                    name,
                    shape[0],
                    shape[1],
                    0.3 * row,
                    lobes=shape[2],
                )
            )
    tile = render_tile(240, 0.5, seed=4, epithelium=False, cells=cells)
    labels, classes = tile.instance_labels, tile.class_ids
    lymph = classes == CELL_CLASSES.index("Lymphocytes")
    epi = classes == CELL_CLASSES.index("Epithelial")
    assert _mean_rgb(tile, lymph).sum() < _mean_rgb(tile, epi).sum() - 40
    assert lymph.sum() < epi.sum()
    rings = {}
    for name in ("Eosinophils", "Neutrophils"):
        nuclei = classes == CELL_CLASSES.index(name)
        around = ndimage.binary_dilation(nuclei, iterations=4) & (labels == 0)
        rings[name] = _mean_rgb(tile, around)
    stroma = ~ndimage.binary_dilation(labels > 0, iterations=12)
    redness = {name: rgb[0] - rgb[1] for name, rgb in rings.items()}
    stroma_rgb = _mean_rgb(tile, stroma)
    assert redness["Eosinophils"] > redness["Neutrophils"] + 25
    assert redness["Eosinophils"] > stroma_rgb[0] - stroma_rgb[1] + 25


def test_haematoxylin_nuclei_eosin_stroma_white_background():
    tile = render_tile(256, 0.5, seed=8, background_fraction=0.3)
    nuclei = tile.instance_labels > 0
    red_cells = tile.class_ids == CELL_CLASSES.index("Red blood cell")
    nuclear = _mean_rgb(tile, nuclei & ~red_cells)
    assert nuclear[2] > nuclear[1] and nuclear.mean() < 150  # blue-purple and dark
    stroma = tile.tissue_mask & ~tile.epithelium_mask
    stroma &= ~ndimage.binary_dilation(nuclei, iterations=6)
    pink = _mean_rgb(tile, stroma)
    assert pink[0] > pink[2] > pink[1]  # eosin pink: red > blue > green
    glass = ~ndimage.binary_dilation(tile.tissue_mask, iterations=4)
    assert glass.mean() == pytest.approx(0.3, abs=0.08)
    assert _mean_rgb(tile, glass).min() > 230
    assert not (tile.instance_labels[~tile.tissue_mask] > 0).any()


def test_epithelial_nuclei_lie_in_crypt_epithelium_around_white_lumina():
    tile = render_region(768, 768, 0.5, seed=21, tissue="full")
    epithelium = tile.epithelium_mask
    assert 0.05 < epithelium.mean() < 0.5
    epithelial = tile.class_ids == CELL_CLASSES.index("Epithelial")
    assert epithelial.sum() > 1000
    assert epithelium[epithelial].mean() > 0.97
    immune = np.isin(
        tile.class_ids, [CELL_CLASSES.index(n) for n in ("Lymphocytes", "Plasmocytes")]
    )
    assert epithelium[immune].mean() < 0.02
    lumina = ndimage.binary_fill_holes(epithelium) & ~epithelium
    assert lumina.sum() > 500
    assert _mean_rgb(tile, ndimage.binary_erosion(lumina, iterations=2)).min() > 200
    _, n_rings = ndimage.label(epithelium)
    assert n_rings >= 4


def test_surface_epithelium_borders_luminal_space():
    tile = render_tile(256, 0.5, seed=2, epithelium="surface")
    column_tissue = tile.tissue_mask.mean(axis=0)
    assert 0.7 < column_tissue.mean() < 0.92
    rows = np.flatnonzero(tile.epithelium_mask[:, 128])
    assert rows.size > 30 and not tile.tissue_mask[: rows.min() - 2, 128].any()


def test_inflamed_tile_has_a_dense_granulocyte_rich_infiltrate(normal_tile, inflamed_tile):
    def count(tile, names):
        return sum(cell.class_name in names for cell in tile.cells)

    assert count(inflamed_tile, IMMUNE_CLASSES) > 1.8 * count(normal_tile, IMMUNE_CLASSES)
    assert count(inflamed_tile, {"Neutrophils"}) >= 5
    assert count(normal_tile, {"Neutrophils"}) == 0
    assert normal_tile.inflamed_boxes_px == []
    assert inflamed_tile.inflamed_boxes_px == [(0.0, 0.0, 320.0, 320.0)]


def test_inflamed_regions_are_denser_and_crypts_get_intraepithelial_neutrophils():
    box = (400, 0, 400, 800)
    tile = render_region(800, 800, 0.5, seed=9, tissue="full", inflamed_regions=[box])
    xs = np.array([c.x_px for c in tile.cells])
    immune = np.array([c.class_name in IMMUNE_CLASSES for c in tile.cells])
    inside = xs >= 400
    assert immune[inside].sum() > 1.8 * immune[~inside].sum()
    neutrophils = tile.class_ids == CELL_CLASSES.index("Neutrophils")
    assert (neutrophils & tile.epithelium_mask)[:, 400:].any()  # intraepithelial
    assert not neutrophils[:, :380].any()


def test_composition_and_density_are_honoured():
    for inflamed in (False, True):
        only = render_tile(
            256, 0.5, seed=3, epithelium=False, inflamed=inflamed, composition={"Plasmocytes": 1.0}
        )
        assert {c.class_name for c in only.cells} == {"Plasmocytes"}
    sparse = render_tile(256, 0.5, seed=3, epithelium=False, cell_density_per_mm2=1000)
    dense = render_tile(256, 0.5, seed=3, epithelium=False, cell_density_per_mm2=4000)
    area_mm2 = (256 * 0.5 / 1000) ** 2
    assert len(sparse.cells) / area_mm2 == pytest.approx(1000, rel=0.45)
    assert len(dense.cells) > 2.5 * len(sparse.cells)
    with pytest.raises(ValueError, match="Goblin"):
        render_tile(composition={"Goblin": 1.0})


def test_nuclei_scale_with_pixel_size():
    cell = [PlantedCell(64.0, 64.0, "Lymphocytes", 6.6, 6.1, 0.0)]
    coarse = render_tile(128, 0.5, seed=1, epithelium=False, cells=cell)
    fine = render_tile(128, 0.25, seed=1, epithelium=False, cells=cell)
    ratio = (fine.instance_labels == 1).sum() / (coarse.instance_labels == 1).sum()
    assert ratio == pytest.approx(4.0, rel=0.12)


@pytest.mark.parametrize("mpp", [0.5, 1.0])
def test_any_window_equals_the_same_pixels_of_a_bigger_window(mpp):
    scene = make_scene(1100, 400, mpp, 4, inflamed_regions=[(200, 100, 300, 300)])
    full = rasterise(scene, 0, 0, 1100, 400)  # drawn as two blocks of at most 1024 px
    for x, y, w, h in ((0, 0, 1100, 37), (923, 211, 150, 100), (1050, 350, 50, 50)):
        part = rasterise(scene, x, y, w, h)
        for name in ("rgb", "labels", "class_ids", "epithelium_mask", "tissue_mask"):
            np.testing.assert_array_equal(
                getattr(part, name), getattr(full, name)[y : y + h, x : x + w]
            )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mpp": 0.0}, "mpp"),
        ({"size_px": 0}, "size"),
        ({"epithelium": "villi"}, "epithelium"),
        ({"background_fraction": 1.0}, "background_fraction"),
        ({"cell_density_per_mm2": -1}, "density"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        render_tile(**kwargs)
