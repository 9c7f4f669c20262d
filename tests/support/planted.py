"""The cells planted in a generated slide (``demo.synthetic`` truth), placed in census tiles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def planted_cells(slide: Path, tiles: pd.DataFrame) -> pd.DataFrame:
    """Planted cells inside the census ``tiles``: class, compartment (true epithelium), tile
    (row number in ``tiles``)."""
    from napari_imilia.demo.sample import synthetic_slide_scene
    from napari_imilia.demo.synthetic.looks import LOOK_NAMES
    from napari_imilia.demo.synthetic.truth import epithelium_mask_level0

    scene = synthetic_slide_scene(slide)
    cells = scene.cells
    epithelium = epithelium_mask_level0(scene, 0, 0, scene.width_px, scene.height_px)
    col = np.clip(cells.x.astype(int), 0, scene.width_px - 1)
    row = np.clip(cells.y.astype(int), 0, scene.height_px - 1)
    tile_of = np.full(len(cells), -1)
    for i, (x, y, w, h) in enumerate(tiles[["x", "y", "width", "height"]].to_numpy()):
        inside = (cells.x >= x) & (cells.x < x + w) & (cells.y >= y) & (cells.y < y + h)
        tile_of[inside] = i
    frame = pd.DataFrame(
        {
            "class_name": np.asarray(LOOK_NAMES)[cells.look],
            "compartment": np.where(epithelium[row, col], "epithelium", "lamina propria"),
            "tile": tile_of,
        }
    )
    return frame[frame["tile"] >= 0]
