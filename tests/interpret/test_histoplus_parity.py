"""HistoPLUS parity: our post-processing and inference protocol give HistoPLUS's cells.

Every number pinned here was computed once by owkin/histoplus's own code
(``CellViTPostprocessor`` and ``fix_border_effects``'s duplicate removal, OpenCV 5.0) on the
same deterministic maps (``tests/interpret/histoplus_maps.py``); see docs/imilia_parity.md. The only
change made to the reference for the protocol numbers: window offsets are the true DeepZoom
ones (HistoPLUS shifts its first column and row by -64 px).
"""

from __future__ import annotations

import numpy as np
import pytest
from histoplus_maps import NUM_CLASSES, scene_predictor, synthetic_maps, synthetic_scene

from napari_imilia.interpret.cells.cellvit.contour import outer_contour
from napari_imilia.interpret.cells.cellvit.post import (
    HoverParams,
    ellipse_footprint,
    hover_instances,
    open_markers,
    thin_instances,
    vote_fractions,
)
from napari_imilia.interpret.cells.cellvit.protocol import (
    crop_padded,
    plan_grid,
    remove_duplicates,
    segment_region,
    window_cells,
)

PARAMS = {
    0.25: HoverParams(min_size_px=10, sobel_ksize=21),
    0.5: HoverParams(min_size_px=5, sobel_ksize=11),
}

# (mpp, seed, cells, cells per class, sum of centroid x, sum of y, sum of confidences):
# HistoPLUS's CellViTPostprocessor on synthetic_maps(seed) (128 px, 40 planted nuclei).
# Before this parity work (5 px disk, scipy's border) 5 of these 8 map sets gave other cells.
REFERENCE_WINDOWS = [
    (0.25, 0, 31, [0, 2, 8, 8, 7, 6], 1887.918309, 2051.987539, 24.736780),
    (0.25, 1, 29, [0, 4, 5, 4, 8, 8], 1803.202461, 1772.919869, 21.785222),
    (0.25, 2, 27, [0, 6, 7, 4, 4, 6], 1850.697394, 1894.176021, 21.040689),
    (0.25, 3, 31, [0, 9, 6, 5, 6, 5], 1829.018457, 2135.704397, 23.761035),
    (0.5, 0, 34, [0, 3, 8, 8, 7, 8], 2041.215629, 2331.193663, 27.872629),
    (0.5, 1, 31, [0, 5, 5, 5, 8, 8], 1923.912204, 1893.176045, 23.927472),
    (0.5, 2, 27, [0, 6, 7, 4, 4, 6], 1849.718997, 1892.149235, 21.015679),
    (0.5, 3, 32, [0, 9, 6, 5, 6, 6], 1946.497784, 2254.945944, 24.488895),
]


@pytest.mark.parametrize(
    ("mpp", "seed", "count", "per_class", "sum_x", "sum_y", "conf"), REFERENCE_WINDOWS
)
def test_window_post_processing_matches_histoplus(mpp, seed, count, per_class, sum_x, sum_y, conf):
    prob, hv, types = synthetic_maps(seed)
    size = prob.shape[0]
    window = plan_grid(size, size, window_px=size, overlap_px=0)[0]
    cells = window_cells(window, prob, hv, types, PARAMS[mpp])
    assert len(cells) == count
    classes = np.bincount([c.channel for c in cells], minlength=NUM_CLASSES)
    assert classes.tolist() == per_class
    assert sum(c.centroid[0] for c in cells) == pytest.approx(sum_x, abs=1e-5)
    assert sum(c.centroid[1] for c in cells) == pytest.approx(sum_y, abs=1e-5)
    assert sum(c.confidence for c in cells) == pytest.approx(conf, abs=1e-5)


def test_ellipse_kernels_are_opencvs():
    # cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    assert ellipse_footprint(3).astype(int).tolist() == [[0, 1, 0], [1, 1, 1], [0, 1, 0]]
    five = [[0, 0, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 1, 1, 1], [1, 1, 1, 1, 1], [0, 0, 1, 0, 0]]
    assert ellipse_footprint(5).astype(int).tolist() == five
    rows = ellipse_footprint(9).sum(axis=1).tolist()
    assert rows == [1, 7, 7, 9, 9, 9, 7, 7, 1]
    assert ellipse_footprint(7).sum(axis=1).tolist() == [1, 5, 7, 7, 7, 5, 1]


def test_opening_keeps_markers_on_the_image_border_as_opencv():
    mask = np.zeros((9, 9), bool)
    mask[0:3, 0:6] = True  # on the top-left border
    mask[5:9, 6:9] = True  # on the bottom-right border
    mask[4:7, 1:4] = True  # inside, too small for the kernel
    # cv2.morphologyEx(mask, cv2.MORPH_OPEN, 5x5 ellipse)
    expected = np.zeros((9, 9), int)
    expected[0:2, 0:6] = 1
    expected[2, 0:4] = 1
    expected[5, 8] = 1
    expected[6:9, 6:9] = 1
    assert open_markers(mask, 5).astype(int).tolist() == expected.tolist()


@pytest.mark.parametrize(
    ("shape", "points"),
    [  # cv2.findContours(mask, RETR_TREE, CHAIN_APPROX_SIMPLE)[0][0]
        ([[1, 1, 1, 1]], [[0, 0], [3, 0]]),
        ([[1], [1], [1]], [[0, 0], [0, 2]]),
        ([[1]], [[0, 0]]),
        ([[1, 1], [0, 1]], [[0, 0], [1, 1], [1, 0]]),
        (
            [[0, 1, 1, 0], [1, 1, 1, 1], [1, 0, 0, 1]],
            [[1, 0], [0, 1], [0, 2], [1, 1], [2, 1], [3, 2], [3, 1], [2, 0]],
        ),
    ],
)
def test_contours_are_opencvs(shape, points):
    contour = outer_contour(np.array(shape, bool))
    assert sorted(map(tuple, contour.tolist())) == sorted(map(tuple, points))
    assert len(contour) == len(points)


def test_thin_instances_and_class_vote():
    labels = np.zeros((6, 8), np.int32)
    labels[0, 0:5] = 1  # one pixel high: OpenCV contour of 2 points, dropped
    labels[2:6, 7] = 2  # one pixel wide
    labels[2:5, 1:4] = 3  # 3 x 3: kept
    assert thin_instances(labels).tolist() == [False, True, True, False]
    types = np.zeros((6, 8), np.uint8)
    types[2:5, 1:4] = [[0, 0, 0], [0, 0, 2], [2, 4, 4]]  # background majority, tie 2/4
    types[2:6, 7] = 0  # all background: no class
    winner, fraction = vote_fractions(labels, types)
    assert winner.tolist() == [0, 0, 0, 2]
    assert fraction[3] == pytest.approx(2 / 9)


def test_hover_instances_accepts_float16_maps_like_float32():
    prob, hv, _ = synthetic_maps(7)
    a = hover_instances(prob, hv, PARAMS[0.25])
    b = hover_instances(prob.astype(np.float32), hv.astype(np.float32), PARAMS[0.25])
    assert np.array_equal(a, b)


def test_grid_is_deepzooms():
    # DeepZoomGenerator(tile_size=656, overlap=64): tile (col, row) spans
    # [col * 656 - 64 (not the first), min((col + 1) * 656, size) + 64 (not the last)).
    grid = plan_grid(800, 1400)
    assert [(w.col, w.row, w.x, w.y, w.width, w.height) for w in grid] == [
        (0, 0, 0, 0, 720, 720),
        (0, 1, 0, 592, 720, 208),
        (1, 0, 592, 0, 784, 720),
        (1, 1, 592, 592, 784, 208),
        (2, 0, 1248, 0, 152, 720),
        (2, 1, 1248, 592, 152, 208),
    ]


# (seed, height, width, nuclei, mpp, cells before duplicate removal, cells kept, kept per
# class, sum of rounded centroid x, sum of y, sum of confidences): HistoPLUS's
# post-processing of each window, then its duplicate removal.
REFERENCE_SCENES = [
    (0, 800, 800, 300, 0.25, 385, 274, [0, 55, 63, 49, 64, 43], 111707, 120112, 224.422514),
    (4, 700, 900, 280, 0.5, 354, 263, [0, 44, 53, 60, 53, 53], 121283, 99891, 217.237296),
]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("seed", "height", "width", "count", "mpp", "found", "kept", "per_class", "sx", "sy", "conf"),
    REFERENCE_SCENES,
)
def test_protocol_matches_histoplus_on_overlapping_windows(
    seed, height, width, count, mpp, found, kept, per_class, sx, sy, conf
):
    scene = synthetic_scene(seed, (height, width), count)
    labels, cells = segment_region(scene, scene_predictor, PARAMS[mpp], batch_size=2)
    grid = plan_grid(height, width)
    everything = []
    for window in grid:
        nuclei, hv, types = scene_predictor(crop_padded(scene, window, 784)[None])
        everything += window_cells(
            window, nuclei[0], hv[0], np.argmax(types[0], axis=0), PARAMS[mpp]
        )
    assert len(everything) == found  # nuclei in overlaps are found twice (or cut)
    assert len(remove_duplicates(everything)) == kept
    assert len(cells) == kept and labels.max() == kept
    xs = [np.rint(c.centroid[0] + c.window.x) for c in cells]
    ys = [np.rint(c.centroid[1] + c.window.y) for c in cells]
    assert (sum(xs), sum(ys)) == (sx, sy)
    assert np.bincount([c.channel for c in cells], minlength=NUM_CLASSES).tolist() == per_class
    assert sum(c.confidence for c in cells) == pytest.approx(conf, abs=1e-5)
    # each kept cell is painted where its window saw it (unless a neighbour overlaps it)
    for number, cell in enumerate(cells, start=1):
        ys_, xs_ = np.nonzero(labels == number)
        if len(xs_) != cell.mask.sum():
            continue
        assert xs_.mean() == pytest.approx(cell.centroid[0] + cell.window.x, abs=1e-6)
        assert ys_.mean() == pytest.approx(cell.centroid[1] + cell.window.y, abs=1e-6)


def test_backend_runs_the_histoplus_protocol_by_default():
    from napari_imilia.errors import ImiliaError
    from napari_imilia.interpret.cells.cellvit import (
        HISTOPLUS_40X,
        CellViT,
        CellViTBackend,
        scaled_down,
    )

    config = scaled_down(HISTOPLUS_40X, embed_dim=32, depth=4, num_heads=2, grid=4)
    model = CellViT(config).init_random(seed=3).eval()
    default = CellViTBackend(model, device="cpu")
    assert (default.protocol, default.window_px, default.overlap_px) == ("histoplus", 784, 64)
    assert CellViTBackend(model, device="cpu", protocol="tile_context").window_px == 224
    with pytest.raises(ImiliaError, match="protocol"):
        CellViTBackend(model, device="cpu", protocol="stitch")
    with pytest.raises(ImiliaError, match="overlap_px"):
        CellViTBackend(model, device="cpu", window_px=56, overlap_px=28)
    # The backend's own path with a stand-in network: the cells of segment_region, measured.
    backend = CellViTBackend(model, device="cpu", batch_size=2)
    backend.predict_windows = scene_predictor
    backend._taxonomy = np.arange(15)
    scene = synthetic_scene(3, (700, 900), 250)
    cells = backend.segment(scene, mpp=0.25, level0_xy=(10, 20), level0_per_px=1.0)
    labels, kept = segment_region(scene, scene_predictor, backend.hover)
    assert len(kept) > 150 and cells.n_cells == len(kept)
    assert np.array_equal(cells.labels, labels)
    assert cells.table["class_id"].tolist() == [c.channel for c in kept]
    assert cells.table["probability"].tolist() == pytest.approx([c.confidence for c in kept])
    xs = [c.centroid[0] + c.window.x + 10.5 for c in kept]  # pixel centres, level-0 origin
    whole = [np.count_nonzero(labels == k + 1) == c.mask.sum() for k, c in enumerate(kept)]
    found = cells.table["centroid_x"].to_numpy()
    assert np.allclose(found[whole], np.array(xs)[whole], atol=1e-6)


def test_inspect_config_chooses_the_cellvit_protocol(tmp_path):
    from napari_imilia.errors import ImiliaError
    from napari_imilia.interpret.cells.cellvit import (
        HISTOPLUS_20X,
        CellViT,
        save_cellvit,
        scaled_down,
    )
    from napari_imilia.interpret.tools import InspectConfig, InspectTools

    config = scaled_down(HISTOPLUS_20X, embed_dim=32, depth=4, num_heads=2, grid=4)
    path = save_cellvit(CellViT(config).init_random(seed=1), tmp_path / "cv.safetensors")
    for protocol, window in (("histoplus", 784), ("tile_context", 224)):
        chosen = InspectConfig("cellvit", str(path), device="cpu", cell_protocol=protocol)
        tools = InspectTools.load(chosen, slide=None)
        assert tools.backend.protocol == protocol.replace("_", "-")
        assert tools.backend.window_px == window
        assert chosen.describe()["cell_protocol"] == protocol.replace("_", "-")
    with pytest.raises(ImiliaError, match="--cell-protocol"):
        InspectConfig("cellvit", str(path), cell_protocol="stitched")
