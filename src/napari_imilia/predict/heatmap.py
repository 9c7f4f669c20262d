"""Per-tile scores as an image on the tile grid, and the heatmap PNG over the thumbnail.

The grid is the tiling's: tile (row, col) has its level-0 top-left at
(col * step_px, row * step_px) where ``step_px`` is the tile footprint in level-0 pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from napari_imilia.errors import DataError
from napari_imilia.files import atomic_path


@dataclass(frozen=True)
class ScoreGrid:
    """Scores on the tile grid: ``values[row, col]`` (NaN where there is no tile).

    ``step_px`` is the grid step in level-0 pixels; ``origin_xy`` the level-0 top-left of
    cell (0, 0).
    """

    values: np.ndarray
    step_px: float
    origin_xy: tuple[float, float]

    def napari_placement(self, mpp: float) -> dict[str, tuple[float, float]]:
        """``scale`` and ``translate`` (µm, row/col order) that put each cell on its tile.

        Matches a slide layer whose level-0 pixel ``i`` is centred at ``i * mpp`` µm.
        """
        step_um = self.step_px * mpp
        offset = (self.step_px - 1) / 2 * mpp
        return {
            "scale": (step_um, step_um),
            "translate": (self.origin_xy[1] * mpp + offset, self.origin_xy[0] * mpp + offset),
        }


def score_grid(tiles: pd.DataFrame, column: str = "score") -> ScoreGrid:
    """Place ``tiles[column]`` on the regular tile grid given by columns ``x, y, width``.

    Tiles must sit on one regular grid (as made by the tiling); anything else is an error.
    """
    if tiles.empty:
        raise DataError("no tiles to draw a heatmap from")
    for name in ("x", "y", "width", column):
        if name not in tiles.columns:
            raise DataError(f"tile table has no {name!r} column")
    step = float(tiles["width"].iloc[0])
    x = tiles["x"].to_numpy(dtype=np.float64)
    y = tiles["y"].to_numpy(dtype=np.float64)
    origin = (float(np.mod(x.min(), step)), float(np.mod(y.min(), step)))
    cols = np.rint((x - origin[0]) / step).astype(np.int64)
    rows = np.rint((y - origin[1]) / step).astype(np.int64)
    if (
        np.abs(cols * step + origin[0] - x).max() > 1.0
        or np.abs(rows * step + origin[1] - y).max() > 1.0
    ):
        raise DataError("tiles are not on a regular grid; cannot draw them as a heatmap image")
    values = np.full((rows.max() + 1, cols.max() + 1), np.nan, dtype=np.float32)
    values[rows, cols] = tiles[column].to_numpy(dtype=np.float32)
    return ScoreGrid(values=values, step_px=step, origin_xy=origin)


def rank_normalise(scores: np.ndarray) -> np.ndarray:
    """Map scores to their rank in [0, 1] (0 lowest, 1 highest; ties share a rank; NaN kept)."""
    scores = np.asarray(scores, dtype=np.float64)
    out = np.full(scores.shape, np.nan)
    valid = ~np.isnan(scores)
    if valid.sum() == 1:
        out[valid] = 1.0
    elif valid.any():
        ranks = pd.Series(scores[valid]).rank(method="average").to_numpy()
        out[valid] = (ranks - 1) / (valid.sum() - 1)
    return out


def colour_range(
    values: np.ndarray, vmin: float | None = None, vmax: float | None = None
) -> tuple[float, float]:
    """``(vmin, vmax)``: the given bounds, else the finite values' min and max (widened by
    0.5 either side when all values are equal, so the colour bar keeps a range)."""
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    low = float(finite.min()) if vmin is None and finite.size else vmin
    high = float(finite.max()) if vmax is None and finite.size else vmax
    low = 0.0 if low is None else float(low)
    high = 1.0 if high is None else float(high)
    if high <= low:
        low, high = low - 0.5, low + 0.5
    return low, high


def write_heatmap_png(
    path: str | Path,
    thumbnail: np.ndarray,
    grid: ScoreGrid,
    slide_dimensions_px: tuple[int, int],
    *,
    title: str = "",
    cmap: str = "inferno",
    alpha: float = 0.55,
    vmin: float | None = None,
    vmax: float | None = None,
    centre: float | None = None,
    label: str = "tile score (higher = more inflammation-like)",
) -> Path:
    """Write the score grid over ``thumbnail`` (RGB) as a PNG with a colour bar (atomic).

    Tile scores are on each model's own scale (a tile logit, a signed channel score), not
    probabilities: the colour range defaults to this slide's lowest and highest score;
    ``predict_slide`` passes the model's fixed scale (``colour_scale``) so every slide's PNG
    is coloured alike. ``centre`` (inside the range): the value drawn with the colormap's
    middle colour (a two-slope map). Uses matplotlib's ``Figure`` directly: the pyplot
    backend (napari's Qt one) is untouched.
    """
    from matplotlib.colors import Normalize, TwoSlopeNorm
    from matplotlib.figure import Figure

    vmin, vmax = colour_range(grid.values, vmin, vmax)
    if centre is not None and vmin < centre < vmax:
        norm: Normalize = TwoSlopeNorm(vcenter=centre, vmin=vmin, vmax=vmax)
    else:
        norm = Normalize(vmin=vmin, vmax=vmax)

    width0, height0 = slide_dimensions_px
    height_t, width_t = thumbnail.shape[:2]
    left = grid.origin_xy[0] / width0 * width_t
    top = grid.origin_xy[1] / height0 * height_t
    right = left + grid.values.shape[1] * grid.step_px / width0 * width_t
    bottom = top + grid.values.shape[0] * grid.step_px / height0 * height_t
    aspect = height_t / max(width_t, 1)
    fig = Figure(figsize=(8, max(3.0, 8 * aspect)), dpi=110)
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(thumbnail, extent=(0, width_t, height_t, 0))
    masked = np.ma.masked_invalid(grid.values)
    image = ax.imshow(
        masked,
        extent=(left, right, bottom, top),
        cmap=cmap,
        alpha=alpha,
        norm=norm,
        interpolation="nearest",
    )
    ax.set_xlim(0, width_t)
    ax.set_ylim(height_t, 0)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.035, pad=0.02, label=label)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    return path
