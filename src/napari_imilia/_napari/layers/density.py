"""The census on the canvas: a density map for the zoomed-out view, the cells when zoomed in.

One :class:`CensusLayers` per viewer (the viewer link's) follows the viewer's
:class:`~napari_imilia._napari.census.CensusRunner` and draws:

- **density** (role ``census_density``): cells/mm² of the runner's selection (a class or
  several, in a compartment or anywhere, per mm² of tissue, epithelium or lamina propria),
  one pixel per census tile, as a napari multiscale Image (counts and areas summed over 2 x 2
  blocks per level, ``CensusData.density_pyramid``) with napari's colorbar and, top left, a
  caption naming the value, the slide's value and the worst window's;
- **cells** (role ``census_cells``): the selection's cells as a Points layer coloured by
  class (``CELL_CLASS_COLORS``), with ``class_name``, ``compartment`` and ``tile_id`` as
  ``layer.features`` and the class legend of the canvas (``layers.legend``). Only the cells of
  the tiles in view (plus a margin) are in the layer, refreshed when the view leaves them,
  and only while the view is narrower than ``CELLS_MAX_VIEW_UM`` and holds at most
  ``MAX_POINTS`` cells: a slide of 10^6 cells never puts 10^6 points on the canvas.

Placement: level-0 pixels on the slide layer (``layers.placement``); a density pixel is
centred on its tile.
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np

from napari_imilia._napari.compat import canvas_size_px, viewer_camera
from napari_imilia._napari.layers.placement import add_layer_keeping_selection, world_layer_kwargs
from napari_imilia._napari.roles import (
    CENSUS_CELLS_ROLE,
    CENSUS_DENSITY_ROLE,
    LAYER_ROLE_KEY,
    layers_with_role,
    remove_role_layers,
)

#: Cells are drawn while the view is at most this wide (µm); wider, only the density.
CELLS_MAX_VIEW_UM = 1500.0
#: Most cells put in the Points layer at once (more: zoom in).
MAX_POINTS = 150_000
#: Window (µm) of the "worst area" in the caption.
CAPTION_WINDOW_UM = 500.0
DENSITY_COLORMAP = "viridis"
DENSITY_OPACITY = 0.6
#: The density's opacity while the cells are drawn over it (the tissue shows through).
DENSITY_OPACITY_WITH_CELLS = 0.25
#: Point diameter (µm): about a nucleus.
POINT_UM = 5.0
CAPTION_OVERLAYS: tuple[str, ...] = ("imilia_census_caption_0", "imilia_census_caption_1")


class CensusLayers:
    """The density and cells layers of one viewer's census (see the module docstring)."""

    def __init__(self, viewer: Any, state: Any) -> None:
        self._viewer = weakref.ref(viewer)
        self.state = state
        self.runner = state.census
        self.points: Any = None  # CellPoints of the shown census, made when first needed
        self._window: tuple[float, float, float, float] | None = None
        self.runner.changed.connect(self._on_changed)
        self.runner.selection_changed.connect(self._on_selection)
        camera = viewer_camera(viewer)
        camera.events.center.connect(self._on_camera)
        camera.events.zoom.connect(self._on_camera)
        if self.runner.data is not None:
            self._on_changed(self.runner.data)

    @property
    def viewer(self) -> Any | None:
        return self._viewer()

    def density_layer(self) -> Any | None:
        viewer = self.viewer
        found = [] if viewer is None else layers_with_role(viewer, CENSUS_DENSITY_ROLE)
        return found[0] if found else None

    def cells_layer(self) -> Any | None:
        viewer = self.viewer
        found = [] if viewer is None else layers_with_role(viewer, CENSUS_CELLS_ROLE)
        return found[0] if found else None

    # ------------------------------------------------------------------ state changes
    def _on_changed(self, data: Any) -> None:
        self.points, self._window = None, None
        viewer = self.viewer
        if viewer is None:
            return
        if data is None or self.state.session is None:
            for role in (CENSUS_DENSITY_ROLE, CENSUS_CELLS_ROLE):
                remove_role_layers(viewer, role)
            self._caption(None)
            return
        self.refresh()

    def _on_selection(self, _selection: Any) -> None:
        self._window = None
        self.refresh()

    def refresh(self) -> None:
        """Redraw the density for the runner's selection, then the cells in view."""
        viewer, data, session = self.viewer, self.runner.data, self.state.session
        if viewer is None or data is None or session is None:
            return
        selection = self.runner.selection
        pyramid = [level.astype(np.float32) for level in data.density_pyramid(selection)]
        finite = np.concatenate([p[np.isfinite(p)] for p in pyramid[:1]] + [np.zeros(1)])
        high = max(float(np.quantile(finite, 0.99)) if finite.size > 1 else 1.0, 1.0)
        placement = world_layer_kwargs(viewer, session)
        um = placement["scale"][0]
        stride = data.stride_px
        scale = (stride * um, stride * um)
        translate = ((stride - 1) / 2 * um, (stride - 1) / 2 * um)
        name = f"{data.slide_id} cells/mm²: {selection.name}"
        layer = self.density_layer()
        data_arg = pyramid if len(pyramid) > 1 else pyramid[0]
        if layer is None:
            from napari.layers import Image

            layer = Image(
                data_arg,
                multiscale=len(pyramid) > 1,
                name=name,
                colormap=DENSITY_COLORMAP,
                contrast_limits=(0.0, high),
                opacity=DENSITY_OPACITY,
                interpolation2d="nearest",
                scale=scale,
                translate=translate,
                metadata={LAYER_ROLE_KEY: CENSUS_DENSITY_ROLE},
                **({"units": placement["units"]} if "units" in placement else {}),
            )
            layer.colorbar.visible = True
            layer.colorbar.box = True
            add_layer_keeping_selection(viewer, layer)
        else:
            layer.data = data_arg
            layer.contrast_limits_range = (0.0, high)
            layer.contrast_limits = (0.0, high)
            layer.name = name
        layer.metadata["selection"] = selection
        self._caption(data)
        self._on_camera()

    def _caption(self, data: Any) -> None:
        viewer = self.viewer
        if viewer is None:
            return
        if data is None:
            for key in CAPTION_OVERLAYS:
                if key in viewer.canvas.overlays:
                    viewer.canvas.overlays[key].visible = False
            return
        from napari.components.overlays import TextOverlay

        selection = self.runner.selection
        total = data.total(selection)
        worst = data.worst_window(selection, CAPTION_WINDOW_UM)
        lines = (
            f"{selection.name} /mm² {selection.per}",
            f"slide {_number(total.density_per_mm2)} · worst {CAPTION_WINDOW_UM:.0f} µm "
            f"{_number(worst.density_per_mm2)}",
        )
        viewer.canvas.overlay_tiling.top_left = "vertical"
        for key, text in zip(CAPTION_OVERLAYS, lines, strict=True):
            if key not in viewer.canvas.overlays:
                viewer.canvas.overlays[key] = TextOverlay(
                    text=text, position="top_left", font_size=8, box=True
                )
            viewer.canvas.overlays[key].text = text
            viewer.canvas.overlays[key].visible = True

    # ------------------------------------------------------------------ cells in view
    def view_window(self) -> tuple[float, float, float, float] | None:
        """The level-0 window (x0, y0, x1, y1) the canvas shows, None without a census."""
        viewer, session = self.viewer, self.state.session
        if viewer is None or session is None or self.runner.data is None:
            return None
        um = world_layer_kwargs(viewer, session)["scale"][0]
        camera = viewer_camera(viewer)
        height, width = canvas_size_px(viewer)
        row, col = (float(v) for v in list(camera.center)[-2:])
        half_w, half_h = width / camera.zoom / 2, height / camera.zoom / 2
        return ((col - half_w) / um, (row - half_h) / um, (col + half_w) / um, (row + half_h) / um)

    def _on_camera(self, *_: Any) -> None:
        window = self.view_window()
        if window is None:
            return
        x0, y0, x1, y1 = window
        um = float(self.runner.data.mpp)
        if (x1 - x0) * um > CELLS_MAX_VIEW_UM:
            self._show_cells(None)
            return
        shown = self._window
        if (
            shown is not None
            and shown[0] <= x0
            and shown[1] <= y0
            and x1 <= shown[2]
            and y1 <= shown[3]
        ):
            return  # still inside the cells already in the layer
        margin_x, margin_y = (x1 - x0) / 2, (y1 - y0) / 2
        wide = (x0 - margin_x, y0 - margin_y, x1 + margin_x, y1 + margin_y)
        if self.points is None:
            from napari_imilia.interpret.census.points import CellPoints

            self.points = CellPoints(self.runner.data)
        cells = self.points.in_window(*wide, selection=self.runner.selection)
        if len(cells) > MAX_POINTS:
            self._show_cells(None)
            self.runner.status.emit(f"{len(cells):,} cells in view: zoom in to see them")
            return
        self._window = wide
        self._show_cells(cells)

    def _show_cells(self, cells: Any) -> None:
        viewer, session = self.viewer, self.state.session
        if viewer is None or session is None:
            return
        self._fade_density(cells is not None and len(cells) > 0)
        layer = self.cells_layer()
        if cells is None:
            self._window = None
            if layer is not None and len(layer.data):
                layer.data = np.zeros((0, 2))
            return
        points = np.stack([cells.xy[:, 1] - 0.5, cells.xy[:, 0] - 0.5], axis=1)  # (row, col)
        size = POINT_UM / float(self.runner.data.mpp)
        if layer is None:
            from napari.layers import Points

            layer = Points(
                points,
                features=cells.features(),
                face_color=cells.rgba() if len(cells) else "white",
                border_width=0,
                size=size,
                name=f"{self.runner.data.slide_id} census cells",
                metadata={LAYER_ROLE_KEY: CENSUS_CELLS_ROLE},
                **world_layer_kwargs(viewer, session),
            )
            add_layer_keeping_selection(viewer, layer)
            return
        with layer.events.blocker_all():
            layer.data = points
            layer.features = cells.features()
            layer.size = size
            if len(cells):
                layer.face_color = cells.rgba()
        layer.refresh()
        layer.events.features()

    def _fade_density(self, fade: bool) -> None:
        """Lighter density while cells are drawn; an opacity the user chose is kept."""
        layer = self.density_layer()
        if layer is None:
            return
        ours = (DENSITY_OPACITY, DENSITY_OPACITY_WITH_CELLS)
        if any(abs(layer.opacity - value) < 1e-6 for value in ours):
            layer.opacity = DENSITY_OPACITY_WITH_CELLS if fade else DENSITY_OPACITY


def _number(value: float) -> str:
    return "–" if value is None or not np.isfinite(value) else f"{value:,.0f}"
