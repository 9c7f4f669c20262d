"""Per-tile interpretability: cells, epithelium, tissue and markers of scored tiles (no Qt).

- ``inspect_tile(slide, tile_row, cell_backend=..., epithelium_method=...)`` ->
  ``TileInspection`` for one tile (the napari tile inspector runs it on a click);
- ``InspectConfig`` / ``InspectTools``: which backends, loaded once and reused;
- ``inspect_slide(slide, out_dir, tiles="top:50")``: many tiles of a slide scored by
  ``imilia predict``, on all cores, written as markers.csv, cells.geojson,
  epithelium.geojson, markers_summary.json and markers_vs_score.png (``imilia inspect``).

See docs/epithelium_markers.md ("Inspecting tiles").
"""

from napari_imilia.interpret.batch import (
    INSPECT_FILES,
    SlideInspection,
    inspect_slide,
    markers_frame,
)
from napari_imilia.interpret.context import CONTEXT_UM
from napari_imilia.interpret.epithelium.geojson import EPITHELIUM_CLASS, EPITHELIUM_COLOR
from napari_imilia.interpret.pool import TileRecord, default_workers, inspect_tiles
from napari_imilia.interpret.read import (
    DEFAULT_ANALYSIS_MPP,
    TileBox,
    backend_analysis_mpp,
    read_tile_at_mpp,
)
from napari_imilia.interpret.select import select_tiles
from napari_imilia.interpret.tile import (
    INSPECTION_FLAGS,
    MIN_TISSUE_FRACTION,
    TileInspection,
    inspect_tile,
    inspect_tiles_batched,
)
from napari_imilia.interpret.tools import CELL_BACKENDS, InspectConfig, InspectTools

__all__ = [
    "CELL_BACKENDS",
    "CONTEXT_UM",
    "DEFAULT_ANALYSIS_MPP",
    "EPITHELIUM_CLASS",
    "EPITHELIUM_COLOR",
    "INSPECTION_FLAGS",
    "INSPECT_FILES",
    "MIN_TISSUE_FRACTION",
    "InspectConfig",
    "InspectTools",
    "SlideInspection",
    "TileBox",
    "TileInspection",
    "TileRecord",
    "backend_analysis_mpp",
    "default_workers",
    "inspect_slide",
    "inspect_tile",
    "inspect_tiles",
    "inspect_tiles_batched",
    "markers_frame",
    "read_tile_at_mpp",
    "select_tiles",
]
