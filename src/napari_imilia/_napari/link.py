"""The viewer link: draws every napari-imilia layer from the viewer's state, whatever docks are
open.

:func:`link_viewer` (idempotent; the link lives in ``viewer_state(viewer).link``) makes sure
that:

- a slide layer made by our reader (drag and drop, *File → Open*, ``viewer.open``) gets a
  session (``ReviewSession.for_slide``, which loads an earlier result instantly; in the
  results folder of the cohort under review, else the saved one), and that removing that
  layer ends the session;
- clicking a tile on the canvas (a click, not a drag, in pan/zoom mode) selects it
  (``session.tile_at`` on the clicked level-0 pixel, then ``session.select_tile``);
- from the state it draws: the heatmap with its colorbar and the tile table
  (``layers.heatmap``), the selected tile's outline (role ``selected_tile``), the reviewed
  tiles in their verdict's colour (``layers.verdicts``), the "Review regions" layer
  (``layers.regions``), the shown inspection's cell and epithelium masks
  (``layers.inspection``) and their legend on the canvas (``layers.legend``), the census's
  density map and cells in view (``layers.density``; a click on it picks the census tile
  there: ``CensusRunner.pick``), and a scale bar on every slide whatever opened it (reader,
  Cohort dock, ``open_review_viewer``);
- the state's ``review_target`` follows the user: 'tile' when a tile is selected, 'region'
  when a region is drawn or selected (``region_drawn(index)``, ``regions_selected(indices)``).

A new session is drawn over the previous one's layers (reused, not removed: see
``layers.slide``); in a shown window the review layers are drawn in a turn of the event
loop of their own, after the slide and its heatmap, so opening the next slide never blocks
the window for long.
Coordinates are those of ``layers.placement`` (level-0 pixels on the slide layer, world µm).
The link keeps only weak references to its viewer, so closing the viewer frees everything.
"""

from __future__ import annotations

import weakref
from functools import partial
from pathlib import Path
from typing import Any

from psygnal import Signal
from qtpy.QtCore import QTimer

from napari_imilia._napari.clicks import tile_click_callback
from napari_imilia._napari.compat import main_window, scale_bar
from napari_imilia._napari.layers.density import CensusLayers
from napari_imilia._napari.layers.heatmap import HeatmapLayers
from napari_imilia._napari.layers.inspection import remove_inspection_layers, show_inspection
from napari_imilia._napari.layers.legend import CellClassLegend
from napari_imilia._napari.layers.placement import (
    add_layer_keeping_selection,
    fit_beside_overlays,
    latest_slide_layer,
    set_if_changed,
    tile_outline_px,
    world_layer_kwargs,
)
from napari_imilia._napari.layers.regions import ReviewRegions
from napari_imilia._napari.layers.verdicts import sync_verdict_layer
from napari_imilia._napari.notify import notify
from napari_imilia._napari.reader import slide_from_metadata
from napari_imilia._napari.roles import (
    HEATMAP_ROLE,
    LAYER_ROLE_KEY,
    SELECTION_ROLE,
    VERDICTS_ROLE,
    layers_with_role,
    remove_role_layers,
)
from napari_imilia._napari.settings import load_settings
from napari_imilia._napari.state import ViewerState, viewer_state
from napari_imilia.errors import ImiliaError
from napari_imilia.review.session import ReviewSession

#: Where the scale bar sits (napari's toasts come up bottom right).
SCALE_BAR_POSITION = "bottom_left"


class ViewerLink:
    """Keeps one viewer's layers in step with its state; see the module docstring."""

    region_drawn = Signal(int)
    regions_selected = Signal(object)

    def __init__(self, viewer: Any, state: ViewerState) -> None:
        self._viewer = weakref.ref(viewer)
        self._session: ReviewSession | None = None
        self.state = state
        self.regions: ReviewRegions | None = None
        self._generation = 0
        self.heatmap = HeatmapLayers(viewer, state)
        self.legend = CellClassLegend(viewer)
        self.census = CensusLayers(viewer, state)
        self.heatmap.corner_changed.connect(self._place_legend)
        self._place_legend(self.heatmap.corner)
        state.session_changed.connect(self._on_session_changed)
        state.inspections.shown.connect(self._show_inspection)
        viewer.layers.events.inserted.connect(self._on_layer_inserted)
        viewer.layers.events.removed.connect(self._on_layer_removed)
        if tile_click_callback not in viewer.mouse_drag_callbacks:
            viewer.mouse_drag_callbacks.append(tile_click_callback)
        self._on_session_changed(state.session)

    @property
    def viewer(self) -> Any | None:
        return self._viewer()

    # ------------------------------------------------------------------ sessions
    def ensure_session(self, results_root: Path | None = None) -> ReviewSession | None:
        """The viewer's session, created for its latest slide layer when there is none."""
        viewer = self.viewer
        if self.state.session is None and viewer is not None:
            layer = latest_slide_layer(viewer)
            if layer is not None:
                self._start_session(slide_from_metadata(layer.metadata), results_root)
        return self.state.session

    def _start_session(self, slide: Any, results_root: Path | None = None) -> None:
        """A session for ``slide`` in ``results_root``, else the cohort's results folder,
        else the saved one."""
        cohort = self.state.cohort
        if results_root is None and cohort is not None:
            results_root = cohort.results_root
        if results_root is None:
            saved = load_settings().results_root
            results_root = Path(saved) if saved else None
        self.state.set_session(ReviewSession.for_slide(slide, results_root))

    def _on_layer_inserted(self, event: Any) -> None:
        if event.value.metadata.get(LAYER_ROLE_KEY) == HEATMAP_ROLE:
            self._raise_outlines()
        slide = slide_from_metadata(event.value.metadata)
        session = self.state.session
        if slide is not None and (session is None or session.slide is not slide):
            self._start_session(slide)
            self.fit_view()

    def open_slide(self, slide: Any, results_root: Path | None = None) -> Any:
        """Show ``slide`` in place of the viewer's slide (``layers.slide.show_slide``: its
        layer reused, the layers drawn over it redrawn) with a session in ``results_root``
        (default: the cohort's, else the saved folder); returns the slide layer."""
        from napari_imilia._napari.layers.slide import show_slide

        layer, reused = show_slide(self.viewer, slide)
        session = self.state.session
        stale = session is None or session.slide is not slide
        if reused or stale or (results_root is not None and session.results_root != results_root):
            self._start_session(slide, results_root)
        if reused:
            self.fit_view()
        return layer

    def fit_view(self) -> None:
        """Show the whole slide with the canvas overlays' corner kept free of tissue."""
        viewer = self.viewer
        layer = None if viewer is None else latest_slide_layer(viewer)
        if layer is not None:
            fit_beside_overlays(viewer, layer, self.heatmap.corner)

    def _on_layer_removed(self, event: Any) -> None:
        session = self.state.session
        slide = slide_from_metadata(event.value.metadata)
        if session is not None and slide is session.slide:
            self.state.set_session(None)

    def _on_session_changed(self, session: ReviewSession | None) -> None:
        old = self._session
        if old is not None:
            old.tile_selected.disconnect(self._on_tile_selected)
            old.prediction_changed.disconnect(self._on_prediction_changed)
            old.review_changed.disconnect(self._on_review_changed)
        # the next slide reuses the layers of the previous one (a removed layer costs napari
        # a full garbage collection, a new one its Qt controls)
        self._drop_regions(keep_layer=session is not None)
        self._session = session
        if session is not None:
            session.tile_selected.connect(self._on_tile_selected)
            session.prediction_changed.connect(self._on_prediction_changed)
            session.review_changed.connect(self._on_review_changed)
        self._generation += 1
        self.heatmap.set_session(session)  # with the slide: never a frame of the old heatmap
        self._in_stages([lambda: self._draw_review(session)])

    def _draw_review(self, session: ReviewSession | None) -> None:
        """The scale bar, the review regions, the verdict and selection outlines."""
        if session is not None:
            self._show_scale_bar(session)
        if session is not None and self.ensure_regions() is not None:
            for message in session.review.warnings:
                notify("warning", message)
        self._show_verdicts(keep_empty=True)
        self._show_selection(keep_empty=True)

    def _in_stages(self, stages: list[Any]) -> None:
        """Run ``stages`` now in a hidden window (scripts, tests); in a shown one each in its
        own turn of the event loop, so drawing the next slide never blocks the window for
        long. A stage of an older session is dropped."""
        viewer = self.viewer
        window = None if viewer is None else main_window(viewer)
        if window is None or not window.isVisible():
            for stage in stages:
                stage()
            return
        generation = self._generation

        def run(index: int) -> None:
            if generation != self._generation or self.viewer is None:
                return
            stages[index]()
            if index + 1 < len(stages):
                QTimer.singleShot(0, partial(run, index + 1))

        QTimer.singleShot(0, partial(run, 0))

    def _on_tile_selected(self, _tile_id: Any) -> None:
        self.state.review_target = "tile"
        self._show_selection()

    def _on_prediction_changed(self, _result: Any) -> None:
        # a new model reopens the review store (it is keyed by the model): redraw all
        if self.regions is not None and self.regions.alive:
            self.regions.sync()
        self._show_selection()
        self._show_verdicts()

    def _on_review_changed(self) -> None:
        if self.regions is not None and self.regions.alive:
            self.regions.sync()
        self._show_verdicts()

    # ------------------------------------------------------------------ review regions
    def ensure_regions(self) -> ReviewRegions | None:
        """The session's "Review regions" layer, (re)made when missing (e.g. the user removed
        it); None without a session or when its review cannot be read (said in an error)."""
        session, viewer = self.state.session, self.viewer
        if session is None or viewer is None:
            return None
        if self.regions is not None and self.regions.alive:
            return self.regions
        self._drop_regions()
        try:
            self.regions = ReviewRegions(viewer, session, on_drawn=self._on_region_drawn)
        except ImiliaError as error:
            notify("error", f"the review of {session.slide_id} cannot be opened: {error}")
            return None
        self.regions.layer.selected_data.events.items_changed.connect(self._on_shape_selection)
        return self.regions

    def _drop_regions(self, keep_layer: bool = False) -> None:
        """Let go of the session's regions (``keep_layer``: the layer stays, for the next
        session's regions)."""
        if self.regions is not None:
            self.regions.layer.selected_data.events.items_changed.disconnect(
                self._on_shape_selection
            )
            self.regions.close(keep_layer=keep_layer)
            self.regions = None

    def _on_region_drawn(self, index: int) -> None:
        self.state.review_target = "region"
        self.region_drawn.emit(index)

    def _on_shape_selection(self, _event: Any = None) -> None:
        regions = self.regions
        if regions is None or regions.syncing:
            return
        indices = regions.selected_indices()
        if indices:
            self.state.review_target = "region"
            self.regions_selected.emit(indices)

    # ------------------------------------------------------------------ drawing
    def _place_legend(self, heatmap_corner: str) -> None:
        """The cell legend takes the top corner the colour bar does not (napari's toasts
        come up bottom right, the scale bar sits bottom left)."""
        self.legend.set_position("top_left" if heatmap_corner.endswith("right") else "top_right")

    def _show_scale_bar(self, session: ReviewSession) -> None:
        """A scale bar on every slide with a known pixel size, whatever opened it."""
        viewer = self.viewer
        if viewer is None or not getattr(session.slide, "mpp", None):
            return
        bar = scale_bar(viewer)
        bar.visible = True
        bar.position = SCALE_BAR_POSITION
        bar.box = True

    def _raise_outlines(self) -> None:
        """Keep the verdict and selection outlines above a heatmap added after them."""
        viewer = self.viewer
        if viewer is None:
            return
        for role in (VERDICTS_ROLE, SELECTION_ROLE):
            for layer in layers_with_role(viewer, role):
                viewer.layers.move(viewer.layers.index(layer), len(viewer.layers))

    def _show_verdicts(self, keep_empty: bool = False) -> None:
        """Outline the reviewed tiles in their verdict's colour (``layers.verdicts``)."""
        viewer = self.viewer
        if viewer is not None:
            sync_verdict_layer(viewer, self._session, keep_empty=keep_empty)

    def _show_inspection(self, inspection: Any) -> None:
        """Show the state's current inspection as masks (remove them for None)."""
        viewer, session = self.viewer, self._session
        if viewer is None:
            return
        if inspection is None or session is None:
            remove_inspection_layers(viewer)
        else:
            show_inspection(viewer, session, inspection)

    def _show_selection(self, keep_empty: bool = False) -> None:
        """Outline the session's selected tile (remove the outline when nothing is selected;
        ``keep_empty``: empty it, keeping the layer for the next slide)."""
        viewer = self.viewer
        if viewer is None:
            return
        session = self._session
        tile_id = None if session is None else session.selected_tile_id
        if tile_id is None or session.prediction is None:
            kept = layers_with_role(viewer, SELECTION_ROLE)
            if keep_empty and session is not None and kept:
                kept[0].data = []
            else:
                remove_role_layers(viewer, SELECTION_ROLE)
            return
        tile = session.tile_row(tile_id)
        placement = world_layer_kwargs(viewer, session)
        layers = layers_with_role(viewer, SELECTION_ROLE)
        outline = tile_outline_px(tile)
        if layers:
            layers[0].data = [outline]
            set_if_changed(layers[0], "scale", placement["scale"])
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
    """The viewer's :class:`ViewerLink` (created on first use, kept in its state)."""
    state = viewer_state(viewer)
    if state.link is None:
        state.link = ViewerLink(viewer, state)
    return state.link
