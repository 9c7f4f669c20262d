"""What the heatmap shows: its options, its pixels on the tile grid and their colour scale.

:func:`heatmap_image` turns the session's tile table and :class:`HeatmapOptions` into the
pixels of the heatmap layer (one per tile) with the colour limits and the neutral value that
sits in the middle of the colormap. By default the limits are a fixed scale, the same on
every slide (``predict.colour_scale``: the cohort's, else the model's reference); the
options may ask for this slide's own range instead. The drivers (tiles that push the slide
score up or down) and rank-normalised values are always per slide.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from napari_imilia.mil.channels import SCORE_PREFIX
from napari_imilia.predict.colour_scale import FIXED, SLIDE, ColourScale, is_attention
from napari_imilia.predict.heatmap import ScoreGrid, rank_normalise, score_grid

DRIVE_COLUMN = "drive"
#: Drivers: blue = the tile's selected extremes push the slide score down, red = up.
DRIVE_COLORS = ((0.15, 0.35, 0.85, 1.0), (0.95, 0.95, 0.95, 1.0), (0.85, 0.1, 0.1, 1.0))
#: Scale choices of the Heatmap dock: text -> ``HeatmapOptions.scale``.
SCALE_CHOICES: dict[str, str] = {
    "fixed for the model (same colours on every slide)": FIXED,
    "this slide's range": SLIDE,
}


@dataclass(frozen=True)
class HeatmapOptions:
    """What the heatmap shows: ``column`` of the tile table (``score``, ``attention``,
    ``score_<channel>`` or ``drive``), rank-normalised or raw, the value (in the shown
    units) below which tiles are hidden (None: show all) and the colour ``scale``: ``fixed``
    (the same on every slide) or ``slide`` (this slide's lowest to highest tile)."""

    column: str = "score"
    rank_normalised: bool = False
    threshold: float | None = None
    scale: str = FIXED


@dataclass(frozen=True)
class HeatmapImage:
    """Values to show (NaN = hidden), the colour limits, the grid, the value drawn in the
    middle of the colormap (``centre``; None: the middle of the limits), what the scale is
    and what its middle colour means, for the caption (``scale_text``, ``centre_text``)."""

    values: np.ndarray
    value_range: tuple[float, float]
    grid: ScoreGrid
    centre: float | None = None
    scale_text: str = "this slide's range"
    centre_text: str = ""

    @property
    def centre_position(self) -> float:
        """Where ``centre`` falls between the limits (0-1; 0.5 without a centre)."""
        low, high = self.value_range
        if self.centre is None or high <= low:
            return 0.5
        return float(np.clip((self.centre - low) / (high - low), 0.0, 1.0))


def driver_values(tiles: pd.DataFrame) -> np.ndarray:
    """Per tile: its ``drive`` where it was a selected extreme of some channel, else NaN."""
    selected = tiles["extreme_channels"].fillna("").astype(str).str.len() > 0
    return np.where(selected, tiles[DRIVE_COLUMN].to_numpy(np.float64), np.nan)


def _neutral_text(column: str) -> str:
    """What the middle colour of a fixed scale means."""
    return "1/N (uniform) = mid-colour" if is_attention(column) else "0 (neutral) = mid-colour"


def heatmap_image(
    tiles: pd.DataFrame, options: HeatmapOptions, fixed: ColourScale | None = None
) -> HeatmapImage:
    """The heatmap's pixels for ``options`` (float32, NaN where no tile or below threshold).

    Colour limits: ``fixed`` (for a slide of ``len(tiles)`` tiles) when given and the options
    ask for the fixed scale, else this slide's lowest to highest value. Drivers are shown on
    a range symmetric about 0 (white: no net push), ranks on 0-1.
    """
    column = options.column
    if column == DRIVE_COLUMN:
        tiles, column = tiles.assign(_drivers=driver_values(tiles)), "_drivers"
    grid = score_grid(tiles, column)
    values = grid.values.astype(np.float64)
    centre: float | None = None
    centre_text = ""
    if options.rank_normalised:
        values = rank_normalise(values)
        low, high, text = 0.0, 1.0, "rank within this slide"
    elif options.column == DRIVE_COLUMN:
        finite = values[np.isfinite(values)]
        half = max(float(np.abs(finite).max()) if finite.size else 1.0, 1.0)
        low, high, centre = -half, half, 0.0
        text, centre_text = "this slide's range", "white: no push"
    elif fixed is not None and options.scale == FIXED:
        low, centre, high = fixed.limits(len(tiles))
        text, centre_text = f"fixed scale: {fixed.source}", _neutral_text(options.column)
    else:
        low, high = float(np.nanmin(values)), float(np.nanmax(values))
        text = "this slide's range (not comparable)"
    if high <= low:
        high = low + 1e-6
    if options.threshold is not None:
        values = np.where(values >= options.threshold, values, np.nan)
    return HeatmapImage(values.astype(np.float32), (low, high), grid, centre, text, centre_text)


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


def centred_colormap(base: Any, centre_position: float) -> Any:
    """``base`` (a napari colormap or its name) warped so that ``centre_position`` (0-1 of the
    colour limits) gets the colormap's middle colour: a two-slope map, linear on either side
    (``base`` itself when the centre is already in the middle)."""
    from napari.utils.colormaps import Colormap, ensure_colormap

    cmap = ensure_colormap(base)
    t = round(float(np.clip(centre_position, 0.02, 0.98)), 3)
    if abs(t - 0.5) < 0.005:
        return cmap
    controls = np.concatenate([np.linspace(0.0, t, 65), np.linspace(t, 1.0, 65)[1:]])
    positions = np.concatenate([np.linspace(0.0, 0.5, 65), np.linspace(0.5, 1.0, 65)[1:]])
    return Colormap(
        colors=cmap.map(positions), controls=controls, name=f"{cmap.name} centred at {t:.3f}"
    )
