"""The heatmap on the canvas, shown whenever the viewer's session has a result.

One :class:`HeatmapLayers` per viewer (the viewer link's, so it exists whatever docks are
open) observes the session the link gives it and, as soon as a prediction is set (a run
ended, or a slide with a cached result was opened), shows:

- the **heatmap** Image layer (role ``heatmap``): the tile grid, one pixel per tile, NaN
  (transparent) where there is no tile, placed by ``ScoreGrid.napari_placement`` so each
  pixel is centred on its tile;
- napari's own **colorbar** of that layer (``layer.colorbar``) and above it, top right, a
  caption naming the value shown, its range and the slide score (one canvas text overlay per
  line: napari misplaces the box of a multi-line text overlay);
- the tile table as ``layer.features`` of a hidden Points layer (role ``tile_table``).

What is shown (:class:`HeatmapOptions`: tile score, attention, a channel's score or the
tiles that drive the score; raw or rank-normalised; a threshold) and how (colormap, opacity)
is held here; the Heatmap dock only changes it through :meth:`HeatmapLayers.show`.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from psygnal import Signal

from napari_imilia._napari.layers.placement import (
    add_layer_keeping_selection,
    world_layer_kwargs,
    world_um_per_px,
)
from napari_imilia._napari.roles import (
    HEATMAP_ROLE,
    LAYER_ROLE_KEY,
    TILE_TABLE_ROLE,
    layers_with_role,
)
from napari_imilia.mil.channels import SCORE_PREFIX
from napari_imilia.predict.heatmap import ScoreGrid, rank_normalise, score_grid

#: Keys of the caption's lines above the colorbar in ``viewer.canvas.overlays``.
CAPTION_OVERLAYS: tuple[str, ...] = tuple(f"imilia_heatmap_caption_{i}" for i in range(3))
DRIVE_COLUMN = "drive"
DEFAULT_COLORMAP = "inferno"
DEFAULT_OPACITY = 0.55
#: Drivers: blue = the tile's selected extremes push the slide score down, red = up.
DRIVE_COLORS = ((0.15, 0.35, 0.85, 1.0), (0.95, 0.95, 0.95, 1.0), (0.85, 0.1, 0.1, 1.0))


@dataclass(frozen=True)
class HeatmapOptions:
    """What the heatmap shows: ``column`` of the tile table (``score``, ``attention``,
    ``score_<channel>`` or ``drive``), rank-normalised or raw, and the value (in the shown
    units) below which tiles are hidden (None: show all)."""

    column: str = "score"
    rank_normalised: bool = False
    threshold: float | None = None


@dataclass(frozen=True)
class HeatmapImage:
    """Values to show (NaN = hidden), their full range before thresholding, and the grid."""

    values: np.ndarray
    value_range: tuple[float, float]
    grid: ScoreGrid


def driver_values(tiles: pd.DataFrame) -> np.ndarray:
    """Per tile: its ``drive`` where it was a selected extreme of some channel, else NaN."""
    selected = tiles["extreme_channels"].fillna("").astype(str).str.len() > 0
    return np.where(selected, tiles[DRIVE_COLUMN].to_numpy(np.float64), np.nan)


def heatmap_image(tiles: pd.DataFrame, options: HeatmapOptions) -> HeatmapImage:
    """The heatmap's pixels for ``options`` (float32, NaN where no tile or below threshold).

    Drivers are shown on a range symmetric about 0, so white means no net push.
    """
    column = options.column
    if column == DRIVE_COLUMN:
        tiles, column = tiles.assign(_drivers=driver_values(tiles)), "_drivers"
    grid = score_grid(tiles, column)
    values = grid.values.astype(np.float64)
    if options.rank_normalised:
        values = rank_normalise(values)
        low, high = 0.0, 1.0
    elif options.column == DRIVE_COLUMN:
        finite = values[np.isfinite(values)]
        half = max(float(np.abs(finite).max()) if finite.size else 1.0, 1.0)
        low, high = -half, half
    else:
        low, high = float(np.nanmin(values)), float(np.nanmax(values))
    if high <= low:
        high = low + 1e-6
    if options.threshold is not None:
        values = np.where(values >= options.threshold, values, np.nan)
    return HeatmapImage(values.astype(np.float32), (low, high), grid)


def value_name(options: HeatmapOptions) -> str:
    """What the colour means, for the colorbar's caption and the layer name."""
    column = options.column
    if column == "score":
        name = "tile score"
    elif column == DRIVE_COLUMN:
        name = "drivers: red pushes the slide score up, blue down"
    elif column.startswith(SCORE_PREFIX):
        name = f"channel {column[len(SCORE_PREFIX) :]} score"
    else:
        name = column
    if options.rank_normalised:
        name += " (rank: 0 lowest, 1 highest)"
    return name


def tile_table_points(tiles: pd.DataFrame) -> np.ndarray:
    """(N, 2) tile centres in level-0 pixel (row, col) coordinates."""
    rows = tiles["y"].to_numpy(np.float64) + (tiles["height"].to_numpy(np.float64) - 1) / 2
    cols = tiles["x"].to_numpy(np.float64) + (tiles["width"].to_numpy(np.float64) - 1) / 2
    return np.stack([rows, cols], axis=1)


def drivers_colormap() -> Any:
    from napari.utils.colormaps import Colormap

    return Colormap(colors=np.array(DRIVE_COLORS), name="imilia drivers")


class HeatmapLayers:
    """The heatmap, its colorbar and caption, and the tile table of one viewer's session.

    ``options_changed(options)`` fires when what is shown changes (also when a new result
    lacks the chosen column and the heatmap falls back to the tile score).
    """

    options_changed = Signal(object)

    def __init__(self, viewer: Any) -> None:
        self._viewer = weakref.ref(viewer)
        self.options = HeatmapOptions()
        self.colormap = DEFAULT_COLORMAP
        self.opacity = DEFAULT_OPACITY
        self._session: Any = None
        viewer.layers.events.removed.connect(self._on_layer_removed)

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
        """The caption's visible lines (empty when hidden)."""
        viewer = self.viewer
        if viewer is None:
            return ""
        lines = [viewer.canvas.overlays.get(key) for key in CAPTION_OVERLAYS]
        return "\n".join(o.text for o in lines if o is not None and o.visible)

    def caption_overlays(self) -> list[Any]:
        """The canvas text overlays holding the caption's lines (none before a result)."""
        viewer = self.viewer
        overlays = {} if viewer is None else viewer.canvas.overlays
        return [overlays[key] for key in CAPTION_OVERLAYS if key in overlays]

    def show(
        self,
        options: HeatmapOptions | None = None,
        *,
        colormap: str | None = None,
        opacity: float | None = None,
    ) -> None:
        """Change what the heatmap shows and how; redraws at once when a result exists."""
        if colormap is not None:
            self.colormap = colormap
        if opacity is not None:
            self.opacity = float(opacity)
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

    # ----------------------------------------------------------------- layers
    def refresh(self) -> None:
        """Recompute the heatmap pixels from the session's tiles and the options."""
        viewer, session = self.viewer, self._session
        if viewer is None or session is None or session.prediction is None:
            return
        options = self.options
        image = heatmap_image(session.tiles, options)
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
            layer.colorbar.visible = True
            layer.events.visible.connect(self._update_caption)
            add_layer_keeping_selection(viewer, layer)
        else:
            layer.data = image.values
            layer.scale = placement["scale"]
            layer.translate = placement["translate"]
            layer.contrast_limits_range = image.value_range
            layer.contrast_limits = image.value_range
            layer.name = name
        layer.metadata["heatmap_options"] = options
        layer.metadata["value_range"] = image.value_range
        self._apply_look()

    def _colormap(self) -> Any:
        return drivers_colormap() if self.options.column == DRIVE_COLUMN else self.colormap

    def _apply_look(self) -> None:
        layer = self.heatmap_layer()
        if layer is not None:
            layer.colormap = self._colormap()
            layer.opacity = self.opacity
        self._update_caption()

    def _update_caption(self, *_: Any) -> None:
        """The caption names the value, its range and the slide score while the heatmap is
        shown; hidden otherwise."""
        viewer = self.viewer
        if viewer is None:
            return
        layer, session = self.heatmap_layer(), self._session
        shown = layer is not None and layer.visible and session is not None
        if not shown:
            for overlay in self.caption_overlays():
                overlay.visible = False
            return
        low, high = layer.metadata["value_range"]
        lines = (
            value_name(self.options),
            f"range {low:.3g} to {high:.3g}",
            f"slide score {session.prediction.score:.4f}",
        )
        from napari.components.overlays import TextOverlay

        viewer.canvas.overlay_tiling.top_right = "vertical"  # caption above the colorbar
        for key, text in zip(CAPTION_OVERLAYS, lines, strict=True):
            if key not in viewer.canvas.overlays:
                viewer.canvas.overlays[key] = TextOverlay(
                    text=text, position="top_right", font_size=9, box=True
                )
            overlay = viewer.canvas.overlays[key]
            overlay.text = text
            overlay.visible = True

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
            layer.scale = placement["scale"]
