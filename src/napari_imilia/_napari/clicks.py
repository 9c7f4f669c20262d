"""Clicks on the canvas: a left click (no drag) in pan/zoom mode picks the census tile under
it while the census is shown, else selects the scored tile there (the viewer state's
session); the viewer link registers :func:`tile_click_callback`."""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_imilia._napari.compat import viewer_camera
from napari_imilia._napari.layers.placement import level0_pixel_at, world_um_per_px
from napari_imilia._napari.notify import notify
from napari_imilia._napari.roles import CENSUS_CELLS_ROLE, CENSUS_DENSITY_ROLE, layers_with_role
from napari_imilia._napari.state import viewer_state

#: A press and release further apart than this (canvas px) is a drag (pan), not a click.
CLICK_SLOP_PX = 4.0


def select_tile_at_world(viewer: Any, world_rc: Any, *, announce: bool = True) -> str | None:
    """Select the tile under a world point; returns its id (None outside the scored tiles;
    ``announce``: say so in a notification)."""
    session = viewer_state(viewer).session
    if session is None or session.prediction is None:
        return None
    x, y = level0_pixel_at(world_rc, world_um_per_px(viewer, session))
    tile_id = session.tile_at(x, y)
    if tile_id is None:
        if announce:
            notify("info", f"no scored tile at level-0 ({x}, {y}): outside the tissue tiles")
        return None
    session.select_tile(tile_id)
    return tile_id


def tile_click_callback(viewer: Any, event: Any) -> Any:
    """napari mouse-drag callback: a left click (no drag) in pan/zoom mode selects a tile."""
    if getattr(event, "button", 1) != 1 or getattr(event, "modifiers", ()):
        return
    active = viewer.layers.selection.active
    if active is not None and str(getattr(active, "mode", "pan_zoom")) != "pan_zoom":
        return
    pressed = np.asarray(event.position, dtype=np.float64)
    yield
    moved = 0.0
    while event.type == "mouse_move":
        delta = np.asarray(event.position, dtype=np.float64)[-2:] - pressed[-2:]
        moved = max(moved, float(np.hypot(*delta)) * float(viewer_camera(viewer).zoom))
        yield
    if moved <= CLICK_SLOP_PX and not pick_census_tile_at_world(viewer, event.position):
        select_tile_at_world(viewer, event.position)


def pick_census_tile_at_world(viewer: Any, world_rc: Any) -> str | None:
    """While the census is shown, pick its tile under a world point: its cells are listed
    and, on a scored slide, the tile is selected and inspected (``CensusRunner.pick``)."""
    state = viewer_state(viewer)
    census, session = state.census, state.session
    shown = [
        layer
        for role in (CENSUS_DENSITY_ROLE, CENSUS_CELLS_ROLE)
        for layer in layers_with_role(viewer, role)
        if layer.visible
    ]
    if census.data is None or session is None or not shown:
        return None
    x, y = level0_pixel_at(world_rc, world_um_per_px(viewer, session))
    tile_id = census.tile_at(x, y)
    if tile_id is not None:
        census.pick(tile_id)
    return tile_id
