"""Per-tile mask files and an overlay gallery of inspected tiles (no Qt).

For a pathologist without napari at hand (the headless demo, a report), each inspected tile
is written as images on the analysis grid of its cells (``TileInspection.cells.labels``):

- ``<tile_id>_cells.tif``: int32 instance labels (0 background; values match the ``label``
  column of the cell table and ``cells.geojson``);
- ``<tile_id>_classes.png``: uint8 HistoPLUS class id per pixel (``CELL_CLASSES`` index);
- ``<tile_id>_epithelium.png``: 255 where epithelium, 0 elsewhere;

and ``overlay_gallery`` draws the tiles side by side with cells coloured by class and the
epithelium outlined. Each file's pixel (r, c) covers level-0 pixels
[x0 + c·s, x0 + (c+1)·s) x [y0 + r·s, y0 + (r+1)·s) with s = ``level0_per_px``.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from skimage.segmentation import find_boundaries

from napari_imilia.files import write_bytes_atomic
from napari_imilia.interpret.cells.types import CELL_CLASS_COLORS, CELL_CLASSES
from napari_imilia.interpret.tile import TileInspection

#: Colour of the epithelium outline in the gallery (RGB).
EPITHELIUM_OUTLINE_RGB = (255, 215, 0)
#: Opacity of the class colour over a cell in the gallery.
CELL_ALPHA = 0.55


def _png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _tiff_bytes(labels: np.ndarray) -> bytes:
    import tifffile

    buffer = io.BytesIO()
    tifffile.imwrite(buffer, labels.astype(np.int32), compression="zlib")
    return buffer.getvalue()


def write_inspection_masks(inspection: TileInspection, out_dir: str | Path) -> list[Path]:
    """Write the three mask files of one inspected tile into ``out_dir``; returns their paths.
    The tile id (read back from ``tiles.csv``) is made a safe name and kept inside ``out_dir``."""
    from napari_imilia.trust.paths import path_inside, safe_name

    stem = safe_name(str(inspection.tile_id))
    epithelium = np.where(inspection.epithelium_mask, 255, 0).astype(np.uint8)
    cells = _tiff_bytes(inspection.cells.labels)
    classes = _png_bytes(inspection.class_labels())
    return [
        write_bytes_atomic(path_inside(out_dir, f"{stem}_cells.tif"), cells),
        write_bytes_atomic(path_inside(out_dir, f"{stem}_classes.png"), classes),
        write_bytes_atomic(path_inside(out_dir, f"{stem}_epithelium.png"), _png_bytes(epithelium)),
    ]


def class_palette() -> np.ndarray:
    """(n_classes, 3) uint8 RGB colour of each ``CELL_CLASSES`` index."""
    return np.array([CELL_CLASS_COLORS[name] for name in CELL_CLASSES], dtype=np.uint8)


def overlay_tile(rgb: np.ndarray, inspection: TileInspection) -> np.ndarray:
    """``rgb`` (on the masks' grid) with cells tinted by class, their outlines darkened and
    the epithelium outlined; (H, W, 3) uint8."""
    if rgb.shape[:2] != inspection.shape:
        raise ValueError(f"tile image {rgb.shape[:2]} is not on the masks' grid {inspection.shape}")
    out = rgb[..., :3].astype(np.float32)
    classes = inspection.class_labels()
    colours = class_palette()[classes].astype(np.float32)
    cell = classes > 0
    out[cell] = (1 - CELL_ALPHA) * out[cell] + CELL_ALPHA * colours[cell]
    out[find_boundaries(inspection.cells.labels, mode="inner")] *= 0.4
    out[find_boundaries(inspection.epithelium_mask, mode="inner")] = EPITHELIUM_OUTLINE_RGB
    return np.clip(out, 0, 255).astype(np.uint8)


def overlay_gallery(
    tiles_rgb: Sequence[np.ndarray],
    inspections: Sequence[TileInspection],
    *,
    columns: int = 5,
    gap_px: int = 4,
) -> np.ndarray:
    """The overlays of several tiles on a white sheet, ``columns`` per row, in order."""
    if not inspections or len(tiles_rgb) != len(inspections):
        raise ValueError("give one tile image per inspection (at least one)")
    overlays = [overlay_tile(rgb, insp) for rgb, insp in zip(tiles_rgb, inspections, strict=True)]
    cell_h = max(o.shape[0] for o in overlays)
    cell_w = max(o.shape[1] for o in overlays)
    columns = max(1, min(columns, len(overlays)))
    rows = -(-len(overlays) // columns)
    sheet = np.full(
        (rows * cell_h + (rows - 1) * gap_px, columns * cell_w + (columns - 1) * gap_px, 3),
        255,
        dtype=np.uint8,
    )
    for index, overlay in enumerate(overlays):
        top = (index // columns) * (cell_h + gap_px)
        left = (index % columns) * (cell_w + gap_px)
        sheet[top : top + overlay.shape[0], left : left + overlay.shape[1]] = overlay
    return sheet


def write_overlay_gallery(
    path: str | Path,
    tiles_rgb: Sequence[np.ndarray],
    inspections: Sequence[TileInspection],
    *,
    columns: int = 5,
) -> Path:
    """``overlay_gallery`` written as a PNG, atomically; returns ``path``."""
    return write_bytes_atomic(
        path, _png_bytes(overlay_gallery(tiles_rgb, inspections, columns=columns))
    )
