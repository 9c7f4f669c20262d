"""Cell detection, segmentation and classification behind one interface.

Backends: ``classical`` (colour deconvolution + watershed + rules, no weights), ``cellvit``
(CellViT-style checkpoints, HistoPLUS architecture) and ``histoplus_json`` (import of
HistoPLUS's own JSON results).
"""

from napari_imilia.cells.types import (
    CELL_CLASS_COLORS,
    CELL_CLASSES,
    IMMUNE_CLASSES,
    TileCells,
)

__all__ = ["CELL_CLASSES", "CELL_CLASS_COLORS", "IMMUNE_CLASSES", "TileCells"]
