"""Context around a tile, so cells on tile borders are neither cut nor counted twice.

A tile is read and segmented with a margin of ``context_um`` µm of the slide around it
(``context_box``); the cells kept are those whose level-0 centroid lies in the tile's own box
(``cells_in_box``), with the measurements and contours of the whole nucleus, and every mask
is brought back onto the tile's grid (``onto_grid``). Two adjacent tiles split the cells
along their shared border by centroid, as HistoPLUS does, so a nucleus across it is counted
once, whole. Coordinates are continuous level-0 pixels (pixel i spans [i, i + 1)).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from napari_imilia.interpret.cells.types import TileCells
from napari_imilia.interpret.read import TileBox

#: Margin (µm) read around a tile: more than the radius of the largest nuclei (fibroblasts
#: up to ~16 µm long), so a nucleus whose centroid is in the tile is seen whole.
CONTEXT_UM = 8.0


def context_box(box: TileBox, margin_px: int) -> TileBox:
    """``box`` grown by ``margin_px`` level-0 px on every side."""
    margin = max(0, int(margin_px))
    return replace(
        box,
        x=box.x - margin,
        y=box.y - margin,
        width=box.width + 2 * margin,
        height=box.height + 2 * margin,
    )


def onto_grid(
    image: np.ndarray,
    *,
    source_xy: tuple[float, float],
    source_per_px: float,
    target_xy: tuple[float, float],
    target_per_px: float,
    target_shape: tuple[int, int],
    outside: object = None,
) -> np.ndarray:
    """``image`` (H, W, ...) on the grid of ``target_shape`` pixels of ``target_per_px``
    level-0 px from ``target_xy``: each target pixel takes the source pixel holding its
    centre (nearest neighbour). Target pixels beyond the source repeat its edge, or are
    ``outside`` when given. An exact crop when the grids share their pixel size and are
    offset by whole pixels."""
    rows = target_xy[1] + (np.arange(target_shape[0]) + 0.5) * target_per_px - source_xy[1]
    cols = target_xy[0] + (np.arange(target_shape[1]) + 0.5) * target_per_px - source_xy[0]
    rows, cols = np.floor(rows / source_per_px), np.floor(cols / source_per_px)
    out = image[
        np.clip(rows, 0, image.shape[0] - 1).astype(np.intp)[:, None],
        np.clip(cols, 0, image.shape[1] - 1).astype(np.intp)[None, :],
    ]
    if outside is not None:
        beyond = ((rows < 0) | (rows >= image.shape[0]))[:, None] | (
            (cols < 0) | (cols >= image.shape[1])
        )[None, :]
        out[beyond] = outside
    return out


def cells_in_box(
    cells: TileCells, box: TileBox, *, level0_per_px: float, shape: tuple[int, int]
) -> TileCells:
    """The cells of a context-padded tile whose centroid lies in ``box`` (level-0
    [x, x + width) x [y, y + height)), on a grid of ``shape`` pixels of ``level0_per_px``
    level-0 px from the box's top-left (the padded grid's pixel size, or nearly). Their table
    rows and contours are those of the whole nucleus; labels outside the tile and of the cells
    left out are dropped. Default cell ids (``backend:x0:y0:label``) name the tile's origin."""
    x, y = cells.table["centroid_x"].to_numpy(), cells.table["centroid_y"].to_numpy()
    keep = (x >= box.x) & (x < box.x + box.width) & (y >= box.y) & (y < box.y + box.height)
    labels = onto_grid(
        cells.labels,
        source_xy=cells.level0_xy,
        source_per_px=float(cells.level0_per_px),
        target_xy=(box.x, box.y),
        target_per_px=level0_per_px,
        target_shape=shape,
    )
    kept_labels = cells.table["label"].to_numpy()[keep]
    lut = np.zeros(int(cells.labels.max(initial=0)) + 1, dtype=np.int32)
    lut[kept_labels] = kept_labels
    table = cells.table[keep].reset_index(drop=True)
    # default ids name the analysed image's origin: name the tile's instead
    padded_prefix = f"{cells.backend}:{cells.level0_xy[0]}:{cells.level0_xy[1]}:"
    table["cell_id"] = [
        f"{cells.backend}:{box.x}:{box.y}:{i[len(padded_prefix) :]}"
        if i.startswith(padded_prefix)
        else i
        for i in table["cell_id"].astype(str)
    ]
    return replace(
        cells,
        labels=lut[labels],
        table=table,
        contours=[c for c, k in zip(cells.contours, keep, strict=True) if k],
        mpp=float(cells.mpp) * level0_per_px / float(cells.level0_per_px),
        level0_xy=(box.x, box.y),
        level0_per_px=float(level0_per_px),
    )
