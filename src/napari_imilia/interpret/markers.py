"""Per-tile interpretability markers: cell densities, epithelium fraction, intraepithelial cells.

IMILIA relates a tile's inflammation score to its cell composition (HistoPLUS cell types on
top- and bottom-scored tiles). ``tile_markers`` computes, for one tile, from its cells and its
epithelium / tissue masks:

- counts per cell class (rows of ``cells.table``), densities per mm² of tissue;
- immune cells (``IMMUNE_CLASSES``) in total;
- the epithelium fraction of the tissue area;
- intraepithelial immune cells (centroid inside the epithelium mask), per class and per mm²
  of epithelium.

``markers_table`` turns many tiles into one DataFrame with the column names listed in
``marker_columns``; ``marker_score_summary`` gives the Spearman correlation of every density
with the tile scores.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from napari_imilia.errors import DataError
from napari_imilia.files import atomic_path
from napari_imilia.interpret.cells.types import CELL_CLASSES, IMMUNE_CLASSES, TileCells

UM2_PER_MM2 = 1e6
#: Cell classes that get counts and densities (every HistoPLUS class but background).
MARKER_CLASSES: tuple[str, ...] = CELL_CLASSES[1:]


def column_key(class_name: str) -> str:
    """Class name as used in column names: spaces become underscores ("Red_blood_cell")."""
    return class_name.replace(" ", "_")


def marker_columns() -> list[str]:
    """Columns of ``markers_table`` in order; densities are per mm², areas in mm²."""
    keys = [column_key(name) for name in MARKER_CLASSES]
    immune = [column_key(name) for name in IMMUNE_CLASSES]
    return [
        "tile_id",
        "n_cells",
        "tissue_area_mm2",
        "epithelium_area_mm2",
        "epithelium_fraction",
        *[f"count_{k}" for k in keys],
        *[f"density_per_mm2_{k}" for k in keys],
        "count_immune",
        "density_per_mm2_immune",
        *[f"intraepithelial_{k}" for k in immune],
        "intraepithelial_immune",
        *[f"intraepithelial_density_per_mm2_{k}" for k in immune],
        "intraepithelial_density_per_mm2_immune",
    ]


@dataclass(frozen=True)
class TileMarkers:
    """Markers of one tile. Areas in mm²; densities per mm² (NaN when the area is 0).

    ``densities_per_mm2`` divide counts by the tissue area; ``intraepithelial_densities_per_mm2``
    divide intraepithelial counts by the epithelium area (epithelium within tissue).
    """

    n_cells: int
    tissue_area_mm2: float
    epithelium_area_mm2: float
    epithelium_fraction: float
    counts: dict[str, int]
    densities_per_mm2: dict[str, float]
    immune_count: int
    immune_density_per_mm2: float
    intraepithelial_counts: dict[str, int]
    intraepithelial_immune_count: int
    intraepithelial_densities_per_mm2: dict[str, float]
    intraepithelial_immune_density_per_mm2: float

    def as_row(self) -> dict[str, Any]:
        """Flat dict with ``marker_columns()`` names (without ``tile_id``)."""
        row: dict[str, Any] = {
            "n_cells": self.n_cells,
            "tissue_area_mm2": self.tissue_area_mm2,
            "epithelium_area_mm2": self.epithelium_area_mm2,
            "epithelium_fraction": self.epithelium_fraction,
        }
        row.update({f"count_{column_key(k)}": v for k, v in self.counts.items()})
        row.update(
            {f"density_per_mm2_{column_key(k)}": v for k, v in self.densities_per_mm2.items()}
        )
        row["count_immune"] = self.immune_count
        row["density_per_mm2_immune"] = self.immune_density_per_mm2
        row.update(
            {f"intraepithelial_{column_key(k)}": v for k, v in self.intraepithelial_counts.items()}
        )
        row["intraepithelial_immune"] = self.intraepithelial_immune_count
        row.update(
            {
                f"intraepithelial_density_per_mm2_{column_key(k)}": v
                for k, v in self.intraepithelial_densities_per_mm2.items()
            }
        )
        row["intraepithelial_density_per_mm2_immune"] = self.intraepithelial_immune_density_per_mm2
        return row


def _per_mm2(count: float, area_mm2: float) -> float:
    return float(count) / area_mm2 if area_mm2 > 0 else math.nan


def _check_mask(mask: np.ndarray, name: str, shape: tuple[int, ...] | None) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise DataError(f"{name} must be a 2-D array; got shape {mask.shape}")
    if shape is not None and mask.shape != shape:
        raise DataError(f"{name} has shape {mask.shape} but the epithelium mask has {shape}")
    return mask.astype(bool)


def tile_markers(
    cells: TileCells,
    epithelium_mask: np.ndarray,
    tissue_mask: np.ndarray | None = None,
    *,
    mpp: float | None = None,
) -> TileMarkers:
    """Markers of one tile from its cells and masks.

    ``epithelium_mask`` and ``tissue_mask`` are (H, W) bool at ``mpp`` µm/px (default: the
    cells' analysis ``cells.mpp``) and cover the same tile as ``cells.labels``. Tissue area is
    the tissue mask's pixel count x mpp² (the whole mask when ``tissue_mask`` is None);
    epithelium counts only inside tissue. A cell is intraepithelial when the mask pixel under
    its level-0 centroid is epithelium (the pixel whose square holds it; centroids outside the
    tile are not).
    """
    epithelium = _check_mask(epithelium_mask, "epithelium mask", None)
    tissue = (
        np.ones(epithelium.shape, dtype=bool)
        if tissue_mask is None
        else _check_mask(tissue_mask, "tissue mask", epithelium.shape)
    )
    mpp = float(cells.mpp if mpp is None else mpp)
    if not mpp > 0:
        raise DataError(f"mask µm/px must be positive; got {mpp}")
    tile_um = np.array(cells.labels.shape[:2], dtype=np.float64) * float(cells.mpp)
    mask_um = np.array(epithelium.shape, dtype=np.float64) * mpp
    if np.any(np.abs(tile_um - mask_um) > max(mpp, float(cells.mpp)) + 1e-9):
        raise DataError(
            f"masks cover {mask_um[1]:.1f} x {mask_um[0]:.1f} µm but the cells' tile covers "
            f"{tile_um[1]:.1f} x {tile_um[0]:.1f} µm; give masks of the same tile "
            "(check the masks' µm/px, mpp=...)"
        )
    epithelium &= tissue
    px_area_mm2 = mpp * mpp / UM2_PER_MM2
    tissue_area_mm2 = float(tissue.sum()) * px_area_mm2
    epithelium_area_mm2 = float(epithelium.sum()) * px_area_mm2

    table = cells.table
    names = table["class_name"].astype(str).to_numpy()
    counts = {name: int(np.count_nonzero(names == name)) for name in MARKER_CLASSES}
    densities = {name: _per_mm2(n, tissue_area_mm2) for name, n in counts.items()}
    immune_count = sum(counts[name] for name in IMMUNE_CLASSES)

    inside = _centroids_in_mask(cells, epithelium, mpp)
    intra = {name: int(np.count_nonzero(inside & (names == name))) for name in IMMUNE_CLASSES}
    intra_total = sum(intra.values())
    return TileMarkers(
        n_cells=len(table),
        tissue_area_mm2=tissue_area_mm2,
        epithelium_area_mm2=epithelium_area_mm2,
        epithelium_fraction=(
            epithelium_area_mm2 / tissue_area_mm2 if tissue_area_mm2 > 0 else math.nan
        ),
        counts=counts,
        densities_per_mm2=densities,
        immune_count=immune_count,
        immune_density_per_mm2=_per_mm2(immune_count, tissue_area_mm2),
        intraepithelial_counts=intra,
        intraepithelial_immune_count=intra_total,
        intraepithelial_densities_per_mm2={
            name: _per_mm2(n, epithelium_area_mm2) for name, n in intra.items()
        },
        intraepithelial_immune_density_per_mm2=_per_mm2(intra_total, epithelium_area_mm2),
    )


def _centroids_in_mask(cells: TileCells, mask: np.ndarray, mpp: float) -> np.ndarray:
    """Per table row: is the mask pixel holding the cell's level-0 centroid set? (Mask pixel
    (r, c) covers level-0 [x0 + c s, x0 + (c + 1) s) x [y0 + r s, y0 + (r + 1) s).)"""
    if len(cells.table) == 0:
        return np.zeros(0, dtype=bool)
    level0_per_mask_px = float(cells.level0_per_px) * mpp / float(cells.mpp)
    x0, y0 = (float(v) for v in cells.level0_xy)
    cols = np.floor((cells.table["centroid_x"].to_numpy(np.float64) - x0) / level0_per_mask_px)
    rows = np.floor((cells.table["centroid_y"].to_numpy(np.float64) - y0) / level0_per_mask_px)
    valid = (rows >= 0) & (rows < mask.shape[0]) & (cols >= 0) & (cols < mask.shape[1])
    inside = np.zeros(len(rows), dtype=bool)
    inside[valid] = mask[rows[valid].astype(np.int64), cols[valid].astype(np.int64)]
    return inside


def markers_table(tiles: Sequence[tuple[str, TileMarkers]]) -> pd.DataFrame:
    """One row per tile with ``marker_columns()`` columns, in the order given."""
    rows = [{"tile_id": str(tile_id), **markers.as_row()} for tile_id, markers in tiles]
    return pd.DataFrame(rows, columns=marker_columns())


def summary_columns(markers_df: pd.DataFrame) -> list[str]:
    """Marker columns correlated with scores: densities and the epithelium fraction."""
    return [
        c
        for c in markers_df.columns
        if c.startswith(("density_per_mm2_", "intraepithelial_density_per_mm2_"))
        or c == "epithelium_fraction"
    ]


def _aligned_scores(markers_df: pd.DataFrame, scores: Any) -> np.ndarray:
    if isinstance(scores, pd.Series) and "tile_id" in markers_df.columns:
        index = scores.index.astype(str)
        missing = set(markers_df["tile_id"].astype(str)) - set(index)
        if missing:
            raise DataError(f"no score for tile(s) {sorted(missing)[:5]} of the markers table")
        scores = pd.Series(scores.to_numpy(), index=index).loc[markers_df["tile_id"].astype(str)]
    values = np.asarray(scores, dtype=np.float64).ravel()
    if values.shape[0] != len(markers_df):
        raise DataError(
            f"{values.shape[0]} scores for {len(markers_df)} tiles in the markers table"
        )
    return values


def marker_score_summary(
    markers_df: pd.DataFrame, scores: Any, *, extreme_fraction: float = 0.25
) -> dict[str, Any]:
    """Spearman correlation of each density (and epithelium fraction) with the tile scores.

    ``scores`` holds one value per row of ``markers_df`` (a Series indexed by tile id is
    aligned on ``tile_id``). Per marker: ``spearman_rho`` and ``p_value`` over the tiles where
    both are finite (NaN with fewer than 3 tiles or a constant column), ``n_tiles`` used, and
    the marker's mean over the top and bottom ``extreme_fraction`` of tiles by score
    (``mean_high_score``, ``mean_low_score``), IMILIA's max/min tile comparison.
    """
    from scipy.stats import spearmanr

    values = _aligned_scores(markers_df, scores)
    out: dict[str, Any] = {"n_tiles": len(values), "extreme_fraction": extreme_fraction}
    markers: dict[str, dict[str, float | int]] = {}
    for column in summary_columns(markers_df):
        marker = markers_df[column].to_numpy(np.float64)
        keep = np.isfinite(marker) & np.isfinite(values)
        x, y = marker[keep], values[keep]
        rho = p_value = math.nan
        if x.size >= 3 and np.ptp(x) > 0 and np.ptp(y) > 0:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = spearmanr(x, y)
            rho, p_value = float(result.statistic), float(result.pvalue)
        n_extreme = max(1, round(extreme_fraction * x.size)) if x.size else 0
        order = np.argsort(y, kind="stable")
        markers[column] = {
            "spearman_rho": rho,
            "p_value": p_value,
            "n_tiles": int(x.size),
            "mean_high_score": float(x[order[-n_extreme:]].mean()) if n_extreme else math.nan,
            "mean_low_score": float(x[order[:n_extreme]].mean()) if n_extreme else math.nan,
        }
    out["markers"] = markers
    return out


def scatter_title(column: str, rho: float) -> str:
    """``"<class> (rho +0.85)"``, or ``"(rho n/a)"`` when rho is undefined (a constant column)."""
    rho_text = f"{rho:+.2f}" if math.isfinite(rho) else "n/a"
    return f"{column.replace('density_per_mm2_', '')} (rho {rho_text})"


def density_axis_limits(densities_per_mm2: np.ndarray) -> tuple[float, float]:
    """y limits of a density scatter: from 0 (densities are never negative) to 5 % above the
    largest finite value, at least 0 to 1 so that an all-zero column sits on the axis."""
    finite = densities_per_mm2[np.isfinite(densities_per_mm2)]
    top = float(finite.max()) * 1.05 if finite.size else 0.0
    return 0.0, max(top, 1.0)


def plot_marker_summary(
    summary: dict[str, Any], markers_df: pd.DataFrame, scores: Any, path: str | Path
) -> Path:
    """PNG: Spearman rho per marker (bars, * for p < 0.05) and immune densities vs score.

    Uses matplotlib's Agg canvas directly (no pyplot, no GUI backend); written atomically.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    values = _aligned_scores(markers_df, scores)
    names = list(summary["markers"])
    rhos = np.array([summary["markers"][n]["spearman_rho"] for n in names], dtype=np.float64)
    p_values = np.array([summary["markers"][n]["p_value"] for n in names], dtype=np.float64)
    scatter = [f"density_per_mm2_{column_key(k)}" for k in IMMUNE_CLASSES]
    scatter = [c for c in [*scatter, "density_per_mm2_immune"] if c in markers_df.columns]

    figure = Figure(figsize=(14, 7), dpi=100)
    FigureCanvasAgg(figure)
    grid = figure.add_gridspec(2, 4, width_ratios=[2.2, 1, 1, 1])
    bars = figure.add_subplot(grid[:, 0])
    positions = np.arange(len(names))
    colors = ["#b2182b" if r > 0 else "#2166ac" for r in np.nan_to_num(rhos)]
    bars.barh(positions, np.nan_to_num(rhos), color=colors)
    labels = [
        n.replace("intraepithelial_density_per_mm2_", "intraepithelial ").replace(
            "density_per_mm2_", ""
        )
        for n in names
    ]
    bars.set_yticks(positions, labels, fontsize=7)
    for y, (rho, p) in enumerate(zip(rhos, p_values, strict=True)):
        label = "n/a" if not np.isfinite(rho) else ("*" if p < 0.05 else "")
        bars.text(np.nan_to_num(rho), y, f" {label}", va="center", fontsize=7)
    bars.axvline(0, color="black", linewidth=0.8)
    bars.set_xlim(-1, 1)
    bars.invert_yaxis()
    bars.set_xlabel("Spearman rho with tile score (* p < 0.05)")
    bars.set_title(f"Markers vs score ({summary['n_tiles']} tiles)")
    for index, column in enumerate(scatter[:6]):
        axis = figure.add_subplot(grid[index // 3, 1 + index % 3])
        densities = markers_df[column].to_numpy(np.float64)
        axis.scatter(values, densities, s=6, alpha=0.6, clip_on=False)  # zeros sit on the axis
        axis.set_ylim(*density_axis_limits(densities))
        rho = summary["markers"].get(column, {}).get("spearman_rho", math.nan)
        axis.set_title(scatter_title(column, rho), fontsize=8)
        axis.set_xlabel("tile score", fontsize=7)
        axis.set_ylabel("cells / mm²", fontsize=7)
        axis.tick_params(labelsize=6)
    figure.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    return path
