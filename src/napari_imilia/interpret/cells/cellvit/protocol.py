"""HistoPLUS's inference protocol: 784 px windows, cells found per window, duplicates removed.

HistoPLUS (owkin/histoplus) reads the slide as an openslide DeepZoom grid of 656 px tiles with
64 px of overlap on each inner side (784 px windows; edge windows are smaller and padded with
black at their bottom/right), post-processes each window alone (``post.hover_instances`` on
float16 maps, the class of ``post.vote_fractions``, instances with a degenerate contour
dropped) and then removes the cells counted twice (:func:`remove_duplicates`):

1. a cell whose bounding box lies in [64, 720] of its window is *safe* and kept;
2. an unsafe cell not touching the window's edge is kept; one touching it is kept only when
   the neighbouring window its edge points to holds no unsafe cell (corner cases as
   HistoPLUS: two edges name three neighbours and the first one decides; other
   combinations are dropped);
3. cells with the same integer centroid (rounded, then truncated) are kept once;
4. cells whose contours intersect by >= 1% of either's area are grouped (transitively) and
   the largest of each group is kept.

:func:`segment_region` runs it over an image (a tile with its context, at the model's µm/px)
with the grid anchored at the image's top-left. Window positions are the true DeepZoom
positions; HistoPLUS itself offsets the cells of its first column and row by -64 px (its
projection assumes a left/top overlap those windows lack).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import shapely
from scipy import ndimage as ndi
from shapely.geometry import MultiPolygon, Polygon

from napari_imilia.interpret.cells.cellvit.contour import outer_contour
from napari_imilia.interpret.cells.cellvit.post import (
    HoverParams,
    hover_instances,
    thin_instances,
    vote_fractions,
)

#: HistoPLUS's inference window (``INFERENCE_TILE_SIZE``) and overlap, model pixels.
HISTOPLUS_WINDOW_PX = 784
HISTOPLUS_OVERLAP_PX = 64
#: Intersection (fraction of either cell's area) above which two cells are one.
INTERSECTION_THRESHOLD = 0.01

Predictor = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class GridWindow:
    """One DeepZoom tile: grid column/row, top-left (x, y) and size of its real pixels."""

    col: int
    row: int
    x: int
    y: int
    width: int
    height: int


@dataclass
class WindowCell:
    """A cell of one window. ``box``: [top, bottom, left, right) in window pixels;
    ``centroid``: (x, y) mean pixel index in window pixels; ``contour``: (K, 2) (x, y)
    window pixels; ``mask``: bool over ``box``; ``channel``: type channel (1..C-1)."""

    window: GridWindow
    box: tuple[int, int, int, int]
    centroid: tuple[float, float]
    contour: np.ndarray
    mask: np.ndarray
    channel: int
    confidence: float


def _axis(length: int, window_px: int, overlap_px: int) -> list[tuple[int, int]]:
    step = window_px - 2 * overlap_px
    count = max(1, -(-length // step))
    spans = []
    for index in range(count):
        start = index * step - (overlap_px if index > 0 else 0)
        stop = min((index + 1) * step, length) + (overlap_px if index < count - 1 else 0)
        spans.append((start, min(stop, length)))
    return spans


def plan_grid(
    height: int,
    width: int,
    window_px: int = HISTOPLUS_WINDOW_PX,
    overlap_px: int = HISTOPLUS_OVERLAP_PX,
) -> list[GridWindow]:
    """The DeepZoom tiles (tile size ``window_px - 2 * overlap_px``) covering an (height,
    width) image, sorted by column then row as HistoPLUS processes them."""
    if not 0 <= 2 * overlap_px < window_px:
        raise ValueError(f"overlap_px must be in [0, {window_px / 2}); got {overlap_px}")
    cols = _axis(width, window_px, overlap_px)
    rows = _axis(height, window_px, overlap_px)
    return [
        GridWindow(c, r, x0, y0, x1 - x0, y1 - y0)
        for c, (x0, x1) in enumerate(cols)
        for r, (y0, y1) in enumerate(rows)
    ]


def crop_padded(image: np.ndarray, window: GridWindow, window_px: int) -> np.ndarray:
    """The window's pixels, padded with zeros (black) at the bottom/right to ``window_px``."""
    out = np.zeros((window_px, window_px, *image.shape[2:]), dtype=image.dtype)
    out[: window.height, : window.width] = image[
        window.y : window.y + window.height, window.x : window.x + window.width
    ]
    return out


def window_cells(
    window: GridWindow,
    nuclei_prob: np.ndarray,
    hv: np.ndarray,
    type_map: np.ndarray,
    params: HoverParams,
) -> list[WindowCell]:
    """Cells of one window's maps (nuclei prob (w, w), HV (2, w, w), per-pixel class (w, w)),
    in label order, as HistoPLUS's post-processing keeps them."""
    prob = np.asarray(nuclei_prob, dtype=np.float16).astype(np.float32)
    hv32 = np.asarray(hv, dtype=np.float16).astype(np.float32)
    labels = hover_instances(prob, hv32, params)
    channel, confidence = vote_fractions(labels, np.asarray(type_map))
    thin = thin_instances(labels)
    cells = []
    for index, region in enumerate(ndi.find_objects(labels), start=1):
        if region is None or thin[index] or channel[index] == 0:
            continue
        rows, cols = region
        mask = labels[region] == index
        ys, xs = np.nonzero(mask)
        cells.append(
            WindowCell(
                window=window,
                box=(rows.start, rows.stop, cols.start, cols.stop),
                centroid=(float(xs.mean() + cols.start), float(ys.mean() + rows.start)),
                contour=outer_contour(mask) + np.array([cols.start, rows.start]),
                mask=mask,
                channel=int(channel[index]),
                confidence=float(confidence[index]),
            )
        )
    return cells


def _border_neighbours(cell: WindowCell, window_px: int) -> list[tuple[int, int]] | None:
    top, bottom, left, right = cell.box
    position = (top == 0, bottom == window_px, left == 0, right == window_px)
    col, row = cell.window.col, cell.window.row
    table = {
        (1, 0, 0, 0): [(col, row - 1)],
        (1, 0, 0, 1): [(col, row - 1), (col + 1, row - 1), (col + 1, row)],
        (0, 0, 0, 1): [(col + 1, row)],
        (0, 1, 0, 1): [(col + 1, row), (col + 1, row + 1), (col, row + 1)],
        (0, 1, 0, 0): [(col, row + 1)],
        (0, 1, 1, 0): [(col, row + 1), (col - 1, row + 1), (col - 1, row)],
        (0, 0, 1, 0): [(col - 1, row)],
        (1, 0, 1, 0): [(col - 1, row), (col - 1, row - 1), (col, row - 1)],
    }
    return table.get(tuple(int(v) for v in position))


def _polygon(contour: np.ndarray) -> Polygon:
    polygon = Polygon(contour) if len(contour) >= 3 else Polygon()
    if polygon.is_valid:
        return polygon
    fixed = polygon.buffer(0)
    if isinstance(fixed, MultiPolygon):
        return max(fixed.geoms, key=lambda part: part.area)
    return Polygon(fixed) if not fixed.is_empty else Polygon()


def remove_duplicates(
    cells: list[WindowCell],
    *,
    window_px: int = HISTOPLUS_WINDOW_PX,
    overlap_px: int = HISTOPLUS_OVERLAP_PX,
    threshold: float = INTERSECTION_THRESHOLD,
) -> list[WindowCell]:
    """The cells HistoPLUS keeps (module docstring, steps 1-4), in its order: safe cells
    first, then the kept unsafe ones, each in window then label order."""
    safe, unsafe = [], []
    for cell in cells:
        low, high = min(cell.box), max(cell.box)
        (safe if low >= overlap_px and high <= window_px - overlap_px else unsafe).append(cell)
    with_unsafe = {(c.window.col, c.window.row) for c in unsafe}
    kept_unsafe = []
    for cell in unsafe:
        if min(cell.box) != 0 and max(cell.box) != window_px:
            kept_unsafe.append(cell)
            continue
        neighbours = _border_neighbours(cell, window_px)
        if neighbours and neighbours[0] not in with_unsafe:
            kept_unsafe.append(cell)
    unique, seen = [], set()
    for cell in safe + kept_unsafe:
        x, y = _global_centroid(cell)
        key = (int(x), int(y))
        if key not in seen:
            seen.add(key)
            unique.append(cell)
    polygons = [
        _polygon(c.contour + np.array([c.window.x, c.window.y], dtype=np.float64)) for c in unique
    ]
    return [unique[i] for i in _largest_of_groups(polygons, threshold)]


def _global_centroid(cell: WindowCell) -> tuple[float, float]:
    return (
        float(np.rint(cell.centroid[0] + cell.window.x)),
        float(np.rint(cell.centroid[1] + cell.window.y)),
    )


def _largest_of_groups(polygons: list[Polygon], threshold: float) -> list[int]:
    if not polygons:
        return []
    parent = list(range(len(polygons)))

    def find(u: int) -> int:
        while parent[u] != u:
            parent[u] = parent[parent[u]]
            u = parent[u]
        return u

    areas = [p.area for p in polygons]
    tree = shapely.STRtree(polygons)
    for i, polygon in enumerate(polygons):
        for j in tree.query(polygon):
            if j <= i:
                continue
            overlap = polygon.intersection(polygons[j])
            if overlap.is_empty:
                continue
            shared = overlap.area
            ratios = [shared / a for a in (areas[i], areas[int(j)]) if a > 0]
            if any(r >= threshold for r in ratios):
                root_i, root_j = find(i), find(int(j))
                if root_i != root_j:
                    parent[root_j] = root_i
    best: dict[int, int] = {}
    for i in range(len(polygons)):
        root = find(i)
        if root not in best or areas[i] > areas[best[root]]:
            best[root] = i
    chosen = set(best.values())
    return [i for i in range(len(polygons)) if i in chosen]


def segment_region(
    image: np.ndarray,
    predictor: Predictor,
    params: HoverParams,
    *,
    window_px: int = HISTOPLUS_WINDOW_PX,
    overlap_px: int = HISTOPLUS_OVERLAP_PX,
    batch_size: int = 8,
) -> tuple[np.ndarray, list[WindowCell]]:
    """Cells of an (H, W, 3) uint8 image by HistoPLUS's protocol: (labels (H, W) int32, the
    kept cells in label order 1..n). ``predictor`` maps (B, w, w, 3) windows to nuclei
    probability (B, w, w), HV (B, 2, w, w) and type probabilities (B, C, w, w)."""
    grid = plan_grid(image.shape[0], image.shape[1], window_px, overlap_px)
    cells: list[WindowCell] = []
    for start in range(0, len(grid), batch_size):
        chunk = grid[start : start + batch_size]
        nuclei, hv, types = predictor(np.stack([crop_padded(image, w, window_px) for w in chunk]))
        for k, window in enumerate(chunk):
            type_map = np.argmax(types[k], axis=0).astype(np.uint8)
            cells.extend(window_cells(window, nuclei[k], hv[k], type_map, params))
    kept = remove_duplicates(cells, window_px=window_px, overlap_px=overlap_px)
    height, width = image.shape[:2]
    kept = [c for c in kept if _global_centroid(c)[0] < width and _global_centroid(c)[1] < height]
    labels = np.zeros((height, width), dtype=np.int32)
    for number, cell in enumerate(kept, start=1):
        top, bottom, left, right = cell.box
        y0, x0 = top + cell.window.y, left + cell.window.x
        y1, x1 = min(bottom + cell.window.y, height), min(right + cell.window.x, width)
        labels[y0:y1, x0:x1][cell.mask[: y1 - y0, : x1 - x0]] = number
    present = np.bincount(labels.ravel(), minlength=len(kept) + 1)[1:] > 0
    if not present.all():  # a cell painted over by later ones (they overlap by < 1%)
        lut = np.concatenate([[0], np.cumsum(present) * present]).astype(np.int32)
        labels = lut[labels]
        kept = [c for c, shown in zip(kept, present, strict=True) if shown]
    return labels, kept
