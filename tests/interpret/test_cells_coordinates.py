"""One level-0 coordinate convention for cells, epithelium, HistoPLUS JSON and napari layers.

QuPath's continuous level-0 coordinates: level-0 pixel i spans [i, i + 1). A label pixel j of
a tile with top-left x0 and s level-0 px per label pixel spans [x0 + j s, x0 + (j + 1) s), its
centre is x0 + (j + 0.5) s. A nucleus planted symmetrically about a known level-0 point must
come back with its centroid on that point, its contour on the edges of its pixel squares and
exactly inside the epithelium polygon drawn around the same pixels.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import shapely

from napari_imilia.export.layers import labels_to_geometries, level0_to_world
from napari_imilia.interpret.cells.classical import ClassicalBackend
from napari_imilia.interpret.cells.histoplus_json import read_histoplus_json
from napari_imilia.interpret.cells.histoplus_json_write import write_histoplus_json
from napari_imilia.interpret.epithelium import epithelium_polygons
from napari_imilia.interpret.markers import tile_markers

X0, Y0 = 1000, 2000
TOLERANCE_PX = 0.01
STROMA_RGB = (235, 170, 210)
NUCLEUS_RGB = (60, 40, 120)


def planted_tile(centre_px: tuple[float, float], radius_px: float, size_px: int = 96):
    """A pink tile with one dark round nucleus of ``radius_px`` centred on the continuous
    tile-pixel position ``centre_px`` (x, y): the pixels whose centres lie inside the disc."""
    rows, cols = np.mgrid[0:size_px, 0:size_px] + 0.5  # pixel centres, continuous
    inside = (cols - centre_px[0]) ** 2 + (rows - centre_px[1]) ** 2 < radius_px**2
    rgb = np.empty((size_px, size_px, 3), np.uint8)
    rgb[:] = STROMA_RGB
    rgb[inside] = NUCLEUS_RGB
    return rgb, inside


@pytest.mark.parametrize("level0_per_px", [1.0, 2.0])
@pytest.mark.parametrize("centre_px", [(40.0, 31.0), (52.5, 47.5)])
def test_planted_nucleus_centroid_contour_and_epithelium_polygon_agree(level0_per_px, centre_px):
    s = level0_per_px
    rgb, _ = planted_tile(centre_px, 5.0)
    cells = ClassicalBackend().segment(rgb, mpp=0.5, level0_xy=(X0, Y0), level0_per_px=s)
    assert cells.n_cells == 1 and cells.level0_per_px == s
    row = cells.table.iloc[0]
    centroid = np.array([row["centroid_x"], row["centroid_y"]])
    planted = np.array([X0 + centre_px[0] * s, Y0 + centre_px[1] * s])
    np.testing.assert_allclose(centroid, planted, atol=TOLERANCE_PX)

    # the epithelium polygon of the same pixels (the union of their squares)
    pixels = cells.labels == row["label"]
    (polygon,) = epithelium_polygons(pixels, mpp=0.5, level0_xy=(X0, Y0), level0_per_px=s)
    np.testing.assert_allclose(
        [polygon.centroid.x, polygon.centroid.y], centroid, atol=TOLERANCE_PX
    )
    contour = cells.contours[0]
    np.testing.assert_allclose(
        [*contour.min(axis=0), *contour.max(axis=0)], polygon.bounds, atol=TOLERANCE_PX
    )
    # every contour vertex lies on the boundary of the exact union of the pixel squares
    # (marching squares puts them at edge midpoints; its edges cut the staircase's corners)
    rows, cols = np.nonzero(pixels)
    squares = shapely.union_all(
        shapely.box(X0 + cols * s, Y0 + rows * s, X0 + (cols + 1) * s, Y0 + (rows + 1) * s)
    )
    assert max(squares.exterior.distance(shapely.Point(p)) for p in contour) < TOLERANCE_PX
    # the export's pixel-square polygons of the labels are the same shape
    exported = labels_to_geometries(cells.labels, (X0, Y0), s)[int(row["label"])]
    assert exported.symmetric_difference(polygon).area < TOLERANCE_PX


def test_tile_centre_pixel_and_napari_world():
    """Label pixel j's centre is x0 + (j + 0.5) s; napari world (X - 0.5) mpp is where the
    slide layer shows the level-0 pixel holding X, and where a Labels layer placed as the
    inspector places it (scale s mpp, translate (x0 + (s - 1) / 2) mpp) shows pixel j."""
    s, mpp = 2.0, 0.25
    rgb, _ = planted_tile((40.5, 31.5), 4.0)  # centred on pixel (40, 31)
    cells = ClassicalBackend().segment(rgb, mpp=0.5, level0_xy=(X0, Y0), level0_per_px=s)
    centroid = cells.table[["centroid_x", "centroid_y"]].to_numpy()[0]
    np.testing.assert_allclose(centroid, [X0 + 40.5 * s, Y0 + 31.5 * s], atol=TOLERANCE_PX)
    world = level0_to_world(centroid, mpp)[0]
    translate = np.array([Y0 + (s - 1) / 2, X0 + (s - 1) / 2]) * mpp
    np.testing.assert_allclose(world, translate + np.array([31, 40]) * s * mpp, atol=1e-9)


def test_markers_use_the_pixel_holding_the_centroid():
    rgb, _ = planted_tile((40.0, 31.0), 5.0)
    cells = ClassicalBackend().segment(rgb, mpp=0.5, level0_xy=(X0, Y0), level0_per_px=2.0)
    assert cells.table["class_name"].iloc[0] == "Lymphocytes"
    # the centroid is the corner shared by pixels (30, 39), (30, 40), (31, 39), (31, 40);
    # continuous coordinates put it in pixel (31, 40), the square [40, 41) x [31, 32)
    for (row, col), expected in (((31, 40), 1), ((30, 39), 0), ((31, 39), 0), ((30, 40), 0)):
        epithelium = np.zeros(rgb.shape[:2], dtype=bool)
        epithelium[row, col] = True
        assert tile_markers(cells, epithelium).intraepithelial_immune_count == expected


def test_histoplus_json_uses_opencv_pixel_indices(tmp_path):
    """HistoPLUS writes cv2 contour points and moments centroids: pixel indices of its
    DeepZoom level. Writing and reading back keeps the continuous level-0 centroid."""
    rgb, _ = planted_tile((40.0, 31.0), 5.0)
    cells = ClassicalBackend().segment(rgb, mpp=0.5, level0_xy=(X0, Y0), level0_per_px=2.0)
    dimensions = (4096, 4096)  # 13 DeepZoom levels: level 11 is 2 level-0 px per pixel
    path = write_histoplus_json(tmp_path / "cells.json", [cells], level0_dimensions=dimensions)
    (tile,) = json.loads(path.read_text())["cell_masks"]
    (cell,) = tile["masks"]
    rows, cols = np.nonzero(cells.labels == cells.table["label"].iloc[0])
    level_index = np.array([X0 / 2 + cols.mean(), Y0 / 2 + rows.mean()])  # cv2.moments
    offset = np.array([tile["x"] * tile["width"], tile["y"] * tile["height"]])
    np.testing.assert_allclose(np.array(cell["centroid"]) + offset, level_index, atol=1e-9)
    points = np.array(cell["coordinates"]) + offset  # boundary pixel indices
    assert points[:, 0].min() == X0 / 2 + cols.min() and points[:, 1].max() == Y0 / 2 + rows.max()
    back = read_histoplus_json(path, level0_dimensions=dimensions)
    np.testing.assert_allclose(
        back.centroids_xy[0], cells.table[["centroid_x", "centroid_y"]].to_numpy()[0], atol=1e-9
    )
    region = back.region_cells((X0, Y0), rgb.shape[:2], mpp=0.5, level0_per_px=2.0)
    np.testing.assert_array_equal(region.labels > 0, cells.labels > 0)
