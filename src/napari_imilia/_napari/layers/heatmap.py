"""The heatmap on the canvas, shown whenever the viewer's session has a result.

One :class:`HeatmapLayers` per viewer (the viewer link's, so it exists whatever docks are
open) observes the session the link gives it and, as soon as a prediction is set (a run
ended, or a slide with a cached result was opened), shows:

- the **heatmap** Image layer (role ``heatmap``): the tile grid, one pixel per tile, NaN
  (transparent) where there is no tile, placed by ``ScoreGrid.napari_placement`` so each
  pixel is centred on its tile;
- napari's own **colorbar** of that layer (``layer.colorbar``) and beside it, in one corner
  of the canvas (top right unless the Heatmap dock moves it: :data:`CORNERS`), a caption
  naming the value shown and the slide score, which colour scale is used, its range and
  what its middle colour means
  (one canvas text overlay per line: napari misplaces the box of a multi-line text overlay);
- a red **DEMO** line above the caption whenever a demonstration model scored the slide;
- the tile table as ``layer.features`` of a hidden Points layer (role ``tile_table``).

Colours mean the same on every slide: by default a value is drawn on a fixed scale
(``predict.colour_scale``: the scale of the cohort under review in the viewer's state, over
its slides scored by the same model; else the model's reference saved with the result),
centred where a tile pushes the slide neither way; "this slide's range" is an option.
What is shown (:class:`HeatmapOptions`: tile score, attention, a channel's score or the
tiles that drive the score; raw or rank-normalised; a threshold; the scale) and how
(colormap, opacity, corner) is held here; the Heatmap dock only changes it through
:meth:`HeatmapLayers.show`.
"""

from __future__ import annotations

import weakref
from dataclasses import replace
from typing import Any

import pandas as pd
from psygnal import Signal

from napari_imilia._napari.layers.heatmap_values import (
    DRIVE_COLORS,
    DRIVE_COLUMN,
    HeatmapImage,
    HeatmapOptions,
    centred_colormap,
    driver_values,
    drivers_colormap,
    heatmap_image,
    tile_table_points,
    value_name,
)
from napari_imilia._napari.layers.placement import (
    add_layer_keeping_selection,
    set_if_changed,
    world_layer_kwargs,
    world_um_per_px,
)
from napari_imilia._napari.roles import (
    HEATMAP_ROLE,
    LAYER_ROLE_KEY,
    TILE_TABLE_ROLE,
    layers_with_role,
)
from napari_imilia.predict.colour_scale import ColourScale, cohort_scale, reference_scale

__all__ = [
    "CAPTION_OVERLAYS",
    "DRIVE_COLORS",
    "DRIVE_COLUMN",
    "HeatmapImage",
    "HeatmapLayers",
    "HeatmapOptions",
    "driver_values",
    "drivers_colormap",
    "heatmap_image",
    "tile_table_points",
    "value_name",
]

#: Keys of the caption's lines beside the colorbar in ``viewer.canvas.overlays``.
CAPTION_OVERLAYS: tuple[str, ...] = tuple(f"imilia_heatmap_caption_{i}" for i in range(3))
#: Key of the canvas line that flags a result of a demonstration model.
DEMO_OVERLAY = "imilia_demo_flag"
DEMO_TEXT = "DEMO MODEL: not for diagnosis"
DEMO_COLOUR = (1.0, 0.35, 0.35, 1.0)
DEFAULT_COLORMAP = "inferno"
DEFAULT_OPACITY = 0.55
#: Corners the colour bar and its caption may take (the Heatmap dock moves them).
CORNERS: tuple[str, ...] = ("top_right", "top_left", "bottom_right", "bottom_left")
#: Colour bar size on the canvas (width, height in screen px; napari's default is 25 x 150).
COLORBAR_SIZE_PX = (18, 110)


class HeatmapLayers:
    """The heatmap, its colorbar and caption, and the tile table of one viewer's session.

    ``state``: the viewer's state (its cohort under review gives the fixed colour scale).
    ``options_changed(options)`` fires when what is shown changes (also when a new result
    lacks the chosen column and the heatmap falls back to the tile score);
    ``corner_changed(corner)`` when the colour bar and caption move.
    """

    options_changed = Signal(object)
    corner_changed = Signal(str)

    def __init__(self, viewer: Any, state: Any = None) -> None:
        self._viewer = weakref.ref(viewer)
        self.state = state
        self.options = HeatmapOptions()
        self.colormap = DEFAULT_COLORMAP
        self.opacity = DEFAULT_OPACITY
        self.corner = CORNERS[0]
        self.image: HeatmapImage | None = None
        self._session: Any = None
        viewer.layers.events.removed.connect(self._on_layer_removed)
        if state is not None:
            state.cohort_changed.connect(self._on_cohort_changed)

    # ----------------------------------------------------------------- state
    @property
    def viewer(self) -> Any | None:
        return self._viewer()

    def heatmap_layer(self) -> Any | None:
        viewer = self.viewer
        layers = [] if viewer is None else layers_with_role(viewer, HEATMAP_ROLE)
        return layers[0] if layers else None

    def tile_table_layer(self) -> Any | None:
        viewer = self.viewer
        layers = [] if viewer is None else layers_with_role(viewer, TILE_TABLE_ROLE)
        return layers[0] if layers else None

    def caption(self) -> str:
        """The caption's visible lines, the DEMO flag first (empty when hidden)."""
        viewer = self.viewer
        if viewer is None:
            return ""
        lines = [viewer.canvas.overlays.get(key) for key in (DEMO_OVERLAY, *CAPTION_OVERLAYS)]
        return "\n".join(o.text for o in lines if o is not None and o.visible)

    def caption_overlays(self) -> list[Any]:
        """The canvas text overlays holding the caption's lines (none before a result)."""
        viewer = self.viewer
        overlays = {} if viewer is None else viewer.canvas.overlays
        return [overlays[key] for key in CAPTION_OVERLAYS if key in overlays]

    def demo_overlay(self) -> Any | None:
        """The canvas line flagging a demonstration model's result (None before one)."""
        viewer = self.viewer
        return None if viewer is None else viewer.canvas.overlays.get(DEMO_OVERLAY)

    def fixed_scale(self, column: str) -> ColourScale | None:
        """The fixed colour scale of ``column`` for the session's result: the cohort's (its
        slides scored by the same model) when a cohort is under review and records it,
        else the model's reference saved with the result. None without a result."""
        session = self._session
        if session is None or session.prediction is None:
            return None
        info = session.prediction.info
        cohort = None if self.state is None else self.state.cohort
        if cohort is not None:
            sha = info.get("model_sha256")
            ranges = [
                item.value_ranges
                for item in list(cohort.items)
                if item.value_ranges and item.model_sha256 == sha
            ]
            scale = cohort_scale(ranges, column)
            if scale is not None:
                return scale
        return reference_scale(info, column)

    def show(
        self,
        options: HeatmapOptions | None = None,
        *,
        colormap: str | None = None,
        opacity: float | None = None,
        corner: str | None = None,
    ) -> None:
        """Change what the heatmap shows and how; redraws at once when a result exists."""
        if colormap is not None:
            self.colormap = colormap
        if opacity is not None:
            self.opacity = float(opacity)
        if corner is not None and corner != self.corner:
            if corner not in CORNERS:
                raise ValueError(f"corner must be one of {CORNERS}, not {corner!r}")
            self.corner = corner
            self._place()
            self.corner_changed.emit(corner)
        if options is not None and options != self.options:
            self.options = options
            self.refresh()
            self.options_changed.emit(self.options)
        else:
            self._apply_look()

    def set_session(self, session: Any) -> None:
        """Show ``session``'s result (and follow its ``prediction_changed``); None: nothing."""
        if self._session is not None:
            self._session.prediction_changed.disconnect(self._on_prediction_changed)
        self._session = session
        if session is not None:
            session.prediction_changed.connect(self._on_prediction_changed)
        self._on_prediction_changed(None if session is None else session.prediction)

    def _on_prediction_changed(self, result: Any) -> None:
        viewer = self.viewer
        if viewer is None:
            return
        if result is None:
            for role in (HEATMAP_ROLE, TILE_TABLE_ROLE):
                for layer in layers_with_role(viewer, role):
                    viewer.layers.remove(layer)
            self.image = None
            self._update_caption()
            return
        if self.options.column not in result.tiles.columns:
            self.options = replace(self.options, column="score", threshold=None)
            self.options_changed.emit(self.options)
        self.refresh()
        self._update_tile_table(result.tiles)

    def _on_layer_removed(self, event: Any) -> None:
        if event.value.metadata.get(LAYER_ROLE_KEY) == HEATMAP_ROLE:
            self._update_caption()

    def _on_cohort_changed(self, _cohort: Any) -> None:
        self.refresh()  # the fixed scale is the new cohort's

    # ----------------------------------------------------------------- layers
    def refresh(self) -> None:
        """Recompute the heatmap pixels from the session's tiles, the options and the scale."""
        viewer, session = self.viewer, self._session
        if viewer is None or session is None or session.prediction is None:
            return
        options = self.options
        image = heatmap_image(session.tiles, options, self.fixed_scale(options.column))
        self.image = image
        placement = image.grid.napari_placement(world_um_per_px(viewer, session))
        units = world_layer_kwargs(viewer, session).get("units")
        name = f"{session.slide_id} heatmap ({options.column})"
        layer = self.heatmap_layer()
        if layer is None:
            from napari.layers import Image

            layer = Image(
                image.values,
                name=name,
                colormap=self._colormap(),
                contrast_limits=image.value_range,
                opacity=self.opacity,
                interpolation2d="nearest",
                metadata={LAYER_ROLE_KEY: HEATMAP_ROLE},
                **placement,
                **({} if units is None else {"units": units}),
            )
            layer.colorbar.box = True
            layer.colorbar.size = COLORBAR_SIZE_PX
            layer.colorbar.visible = True
            layer.events.visible.connect(self._update_caption)
            add_layer_keeping_selection(viewer, layer)
        else:
            layer.data = image.values
            set_if_changed(layer, "scale", placement["scale"])
            set_if_changed(layer, "translate", placement["translate"])
            layer.contrast_limits_range = image.value_range
            layer.contrast_limits = image.value_range
            layer.name = name
        layer.metadata["heatmap_options"] = options
        layer.metadata["value_range"] = image.value_range
        self._apply_look()

    def _colormap(self) -> Any:
        if self.options.column == DRIVE_COLUMN:
            return drivers_colormap()
        position = 0.5 if self.image is None else self.image.centre_position
        return centred_colormap(self.colormap, position)

    def _apply_look(self) -> None:
        layer = self.heatmap_layer()
        if layer is not None:
            set_if_changed(layer, "colormap", self._colormap())
            layer.opacity = self.opacity
        self._update_caption()

    def _place(self) -> None:
        """Put the colour bar and the caption (and the DEMO line) in ``self.corner``."""
        viewer = self.viewer
        if viewer is None:
            return
        setattr(viewer.canvas.overlay_tiling, self.corner, "vertical")
        layer = self.heatmap_layer()
        if layer is not None:
            layer.colorbar.position = self.corner
        for overlay in [self.demo_overlay(), *self.caption_overlays()]:
            if overlay is not None:
                overlay.position = self.corner

    def _caption_lines(self, layer: Any, session: Any) -> tuple[str, ...]:
        """The value and the slide score; the scale; its range and its middle colour."""
        low, high = layer.metadata["value_range"]
        image = self.image
        scale = "" if image is None else image.scale_text
        centre = "" if image is None or not image.centre_text else f" · {image.centre_text}"
        return (
            f"{value_name(self.options)} · slide score {session.prediction.score:.4f}",
            scale,
            f"range {low:.3g} to {high:.3g}{centre}",
        )

    def _update_caption(self, *_: Any) -> None:
        """The caption names the value, the scale and its range, and the slide score while the
        heatmap is shown (hidden otherwise); the DEMO line shows whenever a demonstration
        model scored the slide."""
        viewer = self.viewer
        if viewer is None:
            return
        layer, session = self.heatmap_layer(), self._session
        prediction = None if session is None else session.prediction
        demo = prediction is not None and bool(prediction.info.get("model_is_demo"))
        from napari.components.overlays import TextOverlay

        if demo and DEMO_OVERLAY not in viewer.canvas.overlays:
            viewer.canvas.overlays[DEMO_OVERLAY] = TextOverlay(
                text=DEMO_TEXT, position=self.corner, font_size=10, box=True, color=DEMO_COLOUR
            )
        if DEMO_OVERLAY in viewer.canvas.overlays:
            viewer.canvas.overlays[DEMO_OVERLAY].visible = demo
        shown = layer is not None and layer.visible and prediction is not None
        if not shown:
            for overlay in self.caption_overlays():
                overlay.visible = False
            return
        setattr(viewer.canvas.overlay_tiling, self.corner, "vertical")  # a column of lines
        for key, text in zip(CAPTION_OVERLAYS, self._caption_lines(layer, session), strict=True):
            if key not in viewer.canvas.overlays:
                viewer.canvas.overlays[key] = TextOverlay(
                    text=text, position=self.corner, font_size=9, box=True
                )
            overlay = viewer.canvas.overlays[key]
            overlay.text = text
            overlay.visible = True
        self._place()

    def _update_tile_table(self, tiles: pd.DataFrame) -> None:
        viewer, session = self.viewer, self._session
        placement = world_layer_kwargs(viewer, session)
        features = tiles.reset_index(drop=True)
        layer = self.tile_table_layer()
        if layer is None:
            from napari.layers import Points

            layer = Points(
                tile_table_points(tiles),
                features=features,
                name=f"{session.slide_id} tiles (table)",
                size=max(float(tiles["width"].iloc[0]) * 0.15, 1.0),
                face_color="white",
                visible=False,
                metadata={LAYER_ROLE_KEY: TILE_TABLE_ROLE},
                **placement,
            )
            add_layer_keeping_selection(viewer, layer)
        else:
            layer.data = tile_table_points(tiles)
            layer.features = features
            set_if_changed(layer, "scale", placement["scale"])
            layer.name = f"{session.slide_id} tiles (table)"
