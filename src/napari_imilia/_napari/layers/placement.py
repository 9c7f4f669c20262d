"""Where napari-imilia's layers sit: level-0 pixels on the slide layer, in world µm.

The slide layer's level-0 pixel ``i`` is centred at ``i * um_per_px`` in world coordinates
(µm; row, col order), so a level-0 point (x, y) is world ``(y, x) * um_per_px``. Every layer
drawn over a session's slide takes the slide layer's scale (µm per level-0 px) and units from
here, is added without taking the user's layer selection, and the camera centres on a tile
with :func:`centre_on_tile`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from napari_imilia._napari.compat import canvas_size_px, viewer_camera
from napari_imilia._napari.reader import slide_from_metadata

#: When jumping to a tile, the camera shows about this many tile widths across.
TILES_ACROSS_VIEW = 3.0


def slide_layer(viewer: Any, session: Any | None) -> Any | None:
    """The viewer's image layer showing ``session``'s slide, or None."""
    if session is None:
        return None
    for layer in viewer.layers:
        if slide_from_metadata(layer.metadata) is session.slide:
            return layer
    for layer in viewer.layers:  # a session opened from the same file
        slide = slide_from_metadata(layer.metadata)
        if slide is not None and Path(slide.path) == Path(session.slide.path):
            return layer
    return None


def latest_slide_layer(viewer: Any) -> Any | None:
    """The top-most layer made by our reader, or None."""
    for layer in reversed(list(viewer.layers)):
        if slide_from_metadata(layer.metadata) is not None:
            return layer
    return None


def world_um_per_px(viewer: Any, session: Any) -> float:
    """World units per level-0 pixel: the slide layer's scale (µm/px; 1 without an MPP)."""
    layer = slide_layer(viewer, session)
    if layer is not None:
        return float(layer.scale[-1])
    return float(session.slide.mpp or 1.0)


def world_layer_kwargs(viewer: Any, session: Any) -> dict[str, Any]:
    """``scale`` (µm per level-0 px) and ``units`` for a layer in level-0 pixel coordinates
    that must sit on the session's slide layer (same units, so napari keeps them)."""
    um_per_px = world_um_per_px(viewer, session)
    kwargs: dict[str, Any] = {"scale": (um_per_px, um_per_px)}
    layer = slide_layer(viewer, session)
    if layer is not None:
        kwargs["units"] = tuple(str(unit) for unit in layer.units)
    return kwargs


def tile_centre_world(tile: Any, um_per_px: float) -> tuple[float, float]:
    """World (row, col) of a tile row's centre: level-0 centre ``x + (w - 1) / 2`` times µm/px."""
    col = (float(tile["x"]) + (float(tile["width"]) - 1) / 2) * um_per_px
    row = (float(tile["y"]) + (float(tile["height"]) - 1) / 2) * um_per_px
    return row, col


def level0_pixel_at(world_rc: Any, um_per_px: float) -> tuple[int, int]:
    """The level-0 pixel (x, y) under the world point (…, row, col) (µm)."""
    row, col = (float(v) for v in list(world_rc)[-2:])
    return math.floor(col / um_per_px + 0.5), math.floor(row / um_per_px + 0.5)


def tile_outline_px(tile: Any) -> np.ndarray:
    """The tile's outer edge as a (4, 2) rectangle in level-0 pixel (row, col) coordinates."""
    x, y = float(tile["x"]) - 0.5, float(tile["y"]) - 0.5
    w, h = float(tile["width"]), float(tile["height"])
    return np.array([[y, x], [y, x + w], [y + h, x + w], [y + h, x]], dtype=np.float64)


def add_layer_keeping_selection(viewer: Any, layer: Any) -> Any:
    """Add ``layer`` without making it the active layer (the user's selection stays)."""
    previous = viewer.layers.selection.active
    viewer.add_layer(layer)
    if previous is not None and previous in viewer.layers:
        viewer.layers.selection.active = previous
    return layer


def centre_on_tile(viewer: Any, session: Any, tile_id: str) -> tuple[float, float]:
    """Centre the camera on a tile and zoom so about three tiles fit; returns the world
    centre (row, col) in µm."""
    return centre_on_tile_row(viewer, session, session.tile_row(tile_id))


def centre_on_tile_row(viewer: Any, session: Any, tile: Any) -> tuple[float, float]:
    """:func:`centre_on_tile` for any tile row with level-0 ``x``, ``y``, ``width``,
    ``height`` (a census tile that was not scored, say)."""
    um_per_px = world_um_per_px(viewer, session)
    centre = tile_centre_world(tile, um_per_px)
    camera = viewer_camera(viewer)
    camera.center = centre
    tile_um = float(tile["width"]) * um_per_px
    camera.zoom = min(canvas_size_px(viewer)) / (TILES_ACROSS_VIEW * tile_um)
    return centre


#: Share of the canvas width kept free beside the slide for the colour bar and its caption
#: (at most ``OVERLAY_COLUMN_PX`` screen px), so they sit off the tissue.
OVERLAY_COLUMN_SHARE = 0.38
OVERLAY_COLUMN_PX = 360
#: Blank margin around the slide, share of the canvas.
FIT_MARGIN = 0.03


def fit_beside_overlays(viewer: Any, layer: Any, corner: str = "top_right") -> None:
    """Show the whole slide ``layer`` with a free column on the side of ``corner`` (where the
    colour bar and caption sit), so the canvas overlays do not cover the tissue."""
    (row0, col0), (row1, col1) = (np.asarray(v, dtype=np.float64)[-2:] for v in layer.extent.world)
    height_um, width_um = max(row1 - row0, 1e-9), max(col1 - col0, 1e-9)
    canvas_h, canvas_w = canvas_size_px(viewer)
    free_px = min(canvas_w * OVERLAY_COLUMN_SHARE, OVERLAY_COLUMN_PX)
    usable_w = max(canvas_w - free_px, canvas_w * 0.5) * (1 - 2 * FIT_MARGIN)
    usable_h = canvas_h * (1 - 2 * FIT_MARGIN)
    camera = viewer_camera(viewer)
    zoom = min(usable_w / width_um, usable_h / height_um)
    shift_um = free_px / 2 / zoom * (1 if corner.endswith("right") else -1)
    camera.zoom = zoom
    camera.center = ((row0 + row1) / 2, (col0 + col1) / 2 + shift_um)


def set_if_changed(layer: Any, name: str, value: Any) -> None:
    """``layer.<name> = value`` unless it already has that value (a colormap: that name):
    each napari setter refreshes the layer, and a new colormap rebuilds its shader."""
    current = getattr(layer, name)
    if name == "colormap":
        same = getattr(current, "name", None) == getattr(value, "name", value)
    elif name == "units":
        same = tuple(str(u) for u in current) == tuple(str(u) for u in value)
    else:
        try:
            same = np.allclose(
                np.asarray(current, dtype=np.float64), np.asarray(value, dtype=np.float64)
            )
        except (TypeError, ValueError):
            same = current == value
    if not same:
        setattr(layer, name, value)
