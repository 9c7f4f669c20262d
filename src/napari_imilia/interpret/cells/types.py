"""What every cell backend returns: an instance label image plus one row per cell.

Class names follow HistoPLUS's taxonomy (owkin/histoplus ``class_mapping``: 14 cell types plus
background). Index 0 is background; a cell's ``class_id`` indexes ``CELL_CLASSES``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

CELL_CLASSES: tuple[str, ...] = (
    "Background",
    "Cancer cell",
    "Lymphocytes",
    "Fibroblasts",
    "Plasmocytes",
    "Eosinophils",
    "Neutrophils",
    "Macrophages",
    "Muscle Cell",
    "Endothelial Cell",
    "Red blood cell",
    "Epithelial",
    "Apoptotic Body",
    "Mitotic Figures",
    "Minor Stromal Cell",
)

#: Immune cell types whose density IMILIA relates to inflammation.
IMMUNE_CLASSES: tuple[str, ...] = ("Lymphocytes", "Plasmocytes", "Neutrophils", "Eosinophils")

#: RGB colours (0-255) for display and QuPath export, one per class in ``CELL_CLASSES``.
CELL_CLASS_COLORS: dict[str, tuple[int, int, int]] = {
    "Background": (0, 0, 0),
    "Cancer cell": (230, 25, 75),
    "Lymphocytes": (0, 130, 200),
    "Fibroblasts": (170, 110, 40),
    "Plasmocytes": (145, 30, 180),
    "Eosinophils": (245, 130, 48),
    "Neutrophils": (255, 225, 25),
    "Macrophages": (60, 180, 75),
    "Muscle Cell": (128, 0, 0),
    "Endothelial Cell": (70, 240, 240),
    "Red blood cell": (250, 190, 212),
    "Epithelial": (240, 50, 230),
    "Apoptotic Body": (128, 128, 128),
    "Mitotic Figures": (0, 0, 128),
    "Minor Stromal Cell": (210, 245, 60),
}

#: Columns of ``TileCells.table``; coordinates are level-0 pixels, areas µm².
CELL_TABLE_COLUMNS: tuple[str, ...] = (
    "cell_id",
    "label",
    "class_id",
    "class_name",
    "probability",
    "centroid_x",
    "centroid_y",
    "area_um2",
    "eccentricity",
    "mean_hematoxylin_od",
)


#: Tile-quality flags a backend may set on ``TileCells.flags``.
CELL_FLAGS: dict[str, str] = {
    "no_tissue": "less than 1% of the tile is tissue (blank glass, background); no cells",
    "out_of_focus": "the tile is blurred (low Laplacian variance); cells may be missed or merged",
    "not_he": "the tissue is not H&E: many pixels of other colours (ink, dye, another stain) "
    "or no stain colour at all (greyscale)",
    "ink": "ink, a pen mark or tissue-marking dye covers part of the tile; no nucleus is taken "
    "from it",
}


def class_id(name: str) -> int:
    """Index of a HistoPLUS class name in ``CELL_CLASSES``; raises ``KeyError`` if unknown."""
    return CELL_CLASSES.index(name)


@dataclass
class TileCells:
    """Cells found in one tile.

    ``labels``: (H, W) int32 instance image at the analysis resolution ``mpp`` (µm/px), 0 is
    background, value ``k`` is the row whose ``label`` column is ``k``. ``level0_xy`` is the
    tile's top-left in level-0 pixels and ``level0_per_px`` the number of level-0 pixels per
    analysis pixel, so analysis pixel (r, c) covers the level-0 square [x0 + c s, x0 + (c + 1) s)
    x [y0 + r s, y0 + (r + 1) s) (QuPath's continuous coordinates; centre x0 + (c + 0.5) s).
    Table centroids are in those coordinates; ``contours`` holds one (K, 2) float array of
    level-0 (x, y) points per row of ``table``, on the edges of the cell's pixel squares.
    """

    labels: np.ndarray
    table: pd.DataFrame
    contours: list[np.ndarray]
    mpp: float
    level0_xy: tuple[int, int]
    level0_per_px: float
    backend: str
    flags: list[str] = field(default_factory=list)

    @property
    def n_cells(self) -> int:
        return len(self.table)

    def class_map(self) -> np.ndarray:
        """(H, W) uint8 image of class ids (0 background), from ``labels`` and ``table``."""
        lut = np.zeros(int(self.labels.max(initial=0)) + 1, dtype=np.uint8)
        lut[self.table["label"].to_numpy(dtype=np.int64)] = self.table["class_id"].to_numpy()
        return lut[self.labels]

    def counts(self) -> dict[str, int]:
        """Number of cells per class name (every class present, background excluded)."""
        counts = self.table["class_name"].value_counts()
        return {name: int(counts.get(name, 0)) for name in CELL_CLASSES[1:]}


@dataclass
class CellTile:
    """One tile to segment: (H, W, 3) uint8 ``rgb`` at ``mpp`` µm/px, its top-left
    ``level0_xy`` in level-0 pixels, ``level0_per_px`` level-0 pixels per tile pixel, and an
    optional (H, W) bool ``tissue_mask``."""

    rgb: np.ndarray
    mpp: float
    level0_xy: tuple[int, int]
    level0_per_px: float
    tissue_mask: np.ndarray | None = None


def empty_table() -> pd.DataFrame:
    """A cell table with no rows and the standard columns."""
    return pd.DataFrame(
        {column: pd.Series(dtype=_COLUMN_DTYPES[column]) for column in CELL_TABLE_COLUMNS}
    )


_COLUMN_DTYPES: dict[str, str] = {
    "cell_id": "str",
    "label": "int64",
    "class_id": "int64",
    "class_name": "str",
    "probability": "float64",
    "centroid_x": "float64",
    "centroid_y": "float64",
    "area_um2": "float64",
    "eccentricity": "float64",
    "mean_hematoxylin_od": "float64",
}
