"""Glue between a napari viewer and its ``ReviewSession``, shared by the dock widgets.

:func:`link_viewer` (idempotent, one link per viewer) makes sure that:

- a slide layer made by our reader (drag and drop, *File → Open*, ``viewer.open``) gets a
  session (``ReviewSession.for_slide``, which loads an earlier result instantly), and that
  removing that layer ends the session;
- clicking a tile on the canvas (a click, not a drag, in pan/zoom mode) selects it
  (``session.tile_at`` on the clicked level-0 pixel, then ``session.select_tile``);
- the selected tile is outlined by a one-rectangle Shapes layer (role ``selected_tile``);
- the session's result is shown as the heatmap with its colorbar (``_heatmap_layer``) and
  the cell classes of an inspection get a legend on the canvas (``_canvas_legend``), whatever
  docks are open.
- reviewed tiles are outlined in their verdict's colour (``_verdict_layer``).

Coordinates: the slide layer's level-0 pixel ``i`` is centred at ``i * um_per_px`` in world
coordinates (µm; row, col order), so a level-0 point (x, y) is world ``(y, x) * um_per_px``.
The link keeps only a weak reference to its viewer, so closing the viewer frees everything.
"""

from __future__ import annotations

import math
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from napari_imilia._napari.compat import canvas_size_px, viewer_camera
from napari_imilia._napari.layers.verdicts import VERDICTS_ROLE, sync_verdict_layer
from napari_imilia._napari.reader import slide_from_metadata
from napari_imilia._napari.state import LAYER_ROLE_KEY, layers_with_role, viewer_state
from napari_imilia.review.session import ReviewSession

SELECTION_ROLE = "selected_tile"
#: Role of the heatmap layer (``heatmap.HEATMAP_ROLE``; not imported: that module imports this).
HEATMAP_ROLE_NAME = "heatmap"
#: A press and release further apart than this (canvas px) is a drag (pan), not a click.
CLICK_SLOP_PX = 4.0
#: When jumping to a tile, the camera shows about this many tile widths across.
TILES_ACROSS_VIEW = 3.0

_LINKS: weakref.WeakKeyDictionary[Any, ViewerLink] = weakref.WeakKeyDictionary()


# ----------------------------------------------------------------------------- coordinates
def world_um_per_px(viewer: Any, session: ReviewSession) -> float:
    """World units per level-0 pixel: the slide layer's scale (µm/px; 1 without an MPP)."""
    layer = slide_layer(viewer, session)
    if layer is not None:
        return float(layer.scale[-1])
    return float(session.slide.mpp or 1.0)


def world_layer_kwargs(viewer: Any, session: ReviewSession) -> dict[str, Any]:
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


def world_um_to_level0_pixel(world_rc: Any, um_per_px: float) -> tuple[int, int]:
    """The level-0 pixel (x, y) under the world point (…, row, col)."""
    row, col = (float(v) for v in list(world_rc)[-2:])
    return math.floor(col / um_per_px + 0.5), math.floor(row / um_per_px + 0.5)


def tile_outline_px(tile: Any) -> np.ndarray:
    """The tile's outer edge as a (4, 2) rectangle in level-0 pixel (row, col) coordinates."""
    x, y = float(tile["x"]) - 0.5, float(tile["y"]) - 0.5
    w, h = float(tile["width"]), float(tile["height"])
    return np.array([[y, x], [y, x + w], [y + h, x + w], [y + h, x]], dtype=np.float64)


# ----------------------------------------------------------------------------- layers
def slide_layer(viewer: Any, session: ReviewSession | None) -> Any | None:
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


def add_layer_keeping_selection(viewer: Any, layer: Any) -> Any:
    """Add ``layer`` without making it the active layer (the user's selection stays)."""
    previous = viewer.layers.selection.active
    viewer.add_layer(layer)
    if previous is not None and previous in viewer.layers:
        viewer.layers.selection.active = previous
    return layer


def remove_role_layers(viewer: Any, role: str) -> None:
    for layer in layers_with_role(viewer, role):
        viewer.layers.remove(layer)


def centre_on_tile(viewer: Any, session: ReviewSession, tile_id: str) -> tuple[float, float]:
    """Centre the camera on a tile and zoom so about three tiles fit; returns the world
    centre (row, col) in µm."""
    tile = session.tile_row(tile_id)
    um_per_px = world_um_per_px(viewer, session)
    centre = tile_centre_world(tile, um_per_px)
    camera = viewer_camera(viewer)
    camera.center = centre
    tile_um = float(tile["width"]) * um_per_px
    camera.zoom = min(canvas_size_px(viewer)) / (TILES_ACROSS_VIEW * tile_um)
    return centre


def select_tile_at_world(viewer: Any, world_rc: Any, *, notify: bool = True) -> str | None:
    """Select the tile under a world point; returns its id (None outside the scored tiles)."""
    session = viewer_state(viewer).session
    if session is None or session.prediction is None:
        return None
    x, y = world_um_to_level0_pixel(world_rc, world_um_per_px(viewer, session))
    tile_id = session.tile_at(x, y)
    if tile_id is None:
        if notify:
            from napari.utils.notifications import show_info

            show_info(f"no scored tile at level-0 ({x}, {y}): outside the tissue tiles")
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
    if moved <= CLICK_SLOP_PX:
        select_tile_at_world(viewer, event.position)


# ----------------------------------------------------------------------------- the link
class ViewerLink:
    """Keeps one viewer's session in step with its slide layers; see the module docstring."""

    def __init__(self, viewer: Any) -> None:
        self._viewer = weakref.ref(viewer)
        self._session: ReviewSession | None = None
        self.state = viewer_state(viewer)
        #: Results folder for new sessions instead of the saved setting (the Cohort dock's).
        self.results_root: Path | None = None
        self.state.session_changed.connect(self._on_session_changed)
        viewer.layers.events.inserted.connect(self._on_layer_inserted)
        viewer.layers.events.removed.connect(self._on_layer_removed)
        if tile_click_callback not in viewer.mouse_drag_callbacks:
            viewer.mouse_drag_callbacks.append(tile_click_callback)
        from napari_imilia._napari.layers.heatmap import heatmap_layers
        from napari_imilia._napari.layers.legend import cell_class_legend

        self.heatmap = heatmap_layers(viewer, self.state)
        self.legend = cell_class_legend(viewer)
        self._on_session_changed(self.state.session)

    @property
    def viewer(self) -> Any | None:
        return self._viewer()

    def ensure_session(self, results_root: Path | None = None) -> ReviewSession | None:
        """The viewer's session, created for its latest slide layer when there is none."""
        viewer = self.viewer
        if self.state.session is None and viewer is not None:
            layer = latest_slide_layer(viewer)
            if layer is not None:
                self._start_session(slide_from_metadata(layer.metadata), results_root)
        return self.state.session

    def _start_session(self, slide: Any, results_root: Path | None = None) -> None:
        results_root = results_root or self.results_root
        if results_root is None:
            from napari_imilia._napari.settings import load_settings

            saved = load_settings().results_root
            results_root = Path(saved) if saved else None
        self.state.set_session(ReviewSession.for_slide(slide, results_root))

    def _on_layer_inserted(self, event: Any) -> None:
        if event.value.metadata.get(LAYER_ROLE_KEY) == HEATMAP_ROLE_NAME:
            self._raise_outlines()
        slide = slide_from_metadata(event.value.metadata)
        session = self.state.session
        if slide is not None and (session is None or session.slide is not slide):
            self._start_session(slide)

    def _on_layer_removed(self, event: Any) -> None:
        session = self.state.session
        slide = slide_from_metadata(event.value.metadata)
        if session is not None and slide is session.slide:
            self.state.set_session(None)

    def _on_session_changed(self, session: ReviewSession | None) -> None:
        if self._session is not None:
            self._session.tile_selected.disconnect(self._on_tile_selected)
            self._session.prediction_changed.disconnect(self._on_prediction_changed)
            self._session.review_changed.disconnect(self._show_verdicts)
        self._session = session
        if session is not None:
            session.tile_selected.connect(self._on_tile_selected)
            session.prediction_changed.connect(self._on_prediction_changed)
            session.review_changed.connect(self._show_verdicts)
        self._show_selection()
        self._show_verdicts()

    def _on_tile_selected(self, _tile_id: Any) -> None:
        self._show_selection()

    def _on_prediction_changed(self, _result: Any) -> None:
        self._show_selection()
        self._show_verdicts()

    def _raise_outlines(self) -> None:
        """Keep the verdict and selection outlines above a heatmap added after them."""
        viewer = self.viewer
        if viewer is None:
            return
        for role in (VERDICTS_ROLE, SELECTION_ROLE):
            for layer in layers_with_role(viewer, role):
                viewer.layers.move(viewer.layers.index(layer), len(viewer.layers))

    def _show_verdicts(self) -> None:
        """Outline the reviewed tiles in their verdict's colour (``_verdict_layer``)."""
        viewer = self.viewer
        if viewer is not None:
            sync_verdict_layer(viewer, self._session)

    def _show_selection(self) -> None:
        """Outline the session's selected tile (remove the outline when nothing is selected)."""
        viewer = self.viewer
        if viewer is None:
            return
        session = self._session
        tile_id = None if session is None else session.selected_tile_id
        if tile_id is None or session.prediction is None:
            remove_role_layers(viewer, SELECTION_ROLE)
            return
        tile = session.tile_row(tile_id)
        placement = world_layer_kwargs(viewer, session)
        layers = layers_with_role(viewer, SELECTION_ROLE)
        outline = tile_outline_px(tile)
        if layers:
            layers[0].data = [outline]
            layers[0].scale = placement["scale"]
            return
        from napari.layers import Shapes

        layer = Shapes(
            [outline],
            shape_type="rectangle",
            name="selected tile",
            edge_color="#00e5ff",
            face_color="transparent",
            edge_width=max(float(tile["width"]) * 0.03, 1.0),
            metadata={LAYER_ROLE_KEY: SELECTION_ROLE},
            **placement,
        )
        add_layer_keeping_selection(viewer, layer)


def link_viewer(viewer: Any) -> ViewerLink:
    """The viewer's :class:`ViewerLink` (created on first use)."""
    link = _LINKS.get(viewer)
    if link is None:
        from napari_imilia._napari.keys import register_review_actions

        register_review_actions()
        link = ViewerLink(viewer)
        _LINKS[viewer] = link
    return link
