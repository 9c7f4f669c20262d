"""Cell detection, segmentation and classification behind one interface.

Backends, created by name with ``create_cell_backend``: ``classical`` (colour deconvolution +
watershed + rules, no weights), ``cellvit`` (CellViT-style checkpoints, HistoPLUS
architecture) and ``histoplus-json`` (import of HistoPLUS's own JSON results). Every backend
returns ``TileCells``: labels, one table row per cell and level-0 contours;
``cells_to_features`` writes them as QuPath ``cell`` objects.
"""

from napari_imilia.interpret.cells.base import (
    CellBackend,
    create_cell_backend,
    list_cell_backends,
    register_cell_backend,
)
from napari_imilia.interpret.cells.geojson import (
    CELL_MEASUREMENTS,
    cells_to_features,
    expand_nuclei,
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
    "CELL_MEASUREMENTS",
    "CELL_TABLE_COLUMNS",
    "IMMUNE_CLASSES",
    "CellBackend",
    "CellTile",
    "TileCells",
    "build_tile_cells",
    "cells_to_features",
    "create_cell_backend",
    "expand_nuclei",
    "list_cell_backends",
    "register_cell_backend",
]
