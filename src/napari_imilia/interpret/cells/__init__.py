"""Cell detection, segmentation and classification behind one interface.

Backends, created by name with ``create_cell_backend``: ``classical`` (colour deconvolution +
watershed + rules, no weights), ``cellvit`` (CellViT-style checkpoints, HistoPLUS
architecture) and ``histoplus-json`` (import of HistoPLUS's own JSON results). Every backend
returns ``TileCells``: labels, one table row per cell and level-0 contours.
"""

from napari_imilia.interpret.cells.base import (
    CellBackend,
    create_cell_backend,
    list_cell_backends,
    register_cell_backend,
)
from napari_imilia.interpret.cells.measure import build_tile_cells
from napari_imilia.interpret.cells.types import (
    CELL_CLASS_COLORS,
    CELL_CLASSES,
    CELL_FLAGS,
    CELL_TABLE_COLUMNS,
    IMMUNE_CLASSES,
    CellTile,
    TileCells,
)

__all__ = [
    "CELL_CLASSES",
    "CELL_CLASS_COLORS",
    "CELL_FLAGS",
    "CELL_TABLE_COLUMNS",
    "IMMUNE_CLASSES",
    "CellBackend",
    "CellTile",
    "TileCells",
    "build_tile_cells",
    "create_cell_backend",
    "list_cell_backends",
    "register_cell_backend",
]
