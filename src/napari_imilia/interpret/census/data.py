"""Reading a census: counts, densities and their worst window, cheaply, from its tile table.

:class:`CensusData` opens a finished census folder (``census.json`` + ``tiles.csv``; the cell
table is read only when cells themselves are asked for). Every value is a sum of the tiles'
``count_<class>_<compartment>`` columns over a :class:`CellSelection` (classes x
compartments), divided by a summed area (mm² of tissue, epithelium or lamina propria):

- over the slide or a region (:meth:`CensusData.total`, :meth:`CensusData.region_values`);
- per tile (:meth:`CensusData.densities`) and as an image on the tile grid at several scales
  (:meth:`CensusData.density_pyramid`: counts and areas summed over 2 x 2 blocks, not
  densities averaged);
- in the worst window of a given size (:meth:`CensusData.worst_window`: the highest density
  over every square of whole tiles about ``window_um`` wide with at least half its area
  tissue, through summed-area tables), and the tiles that show it most
  (:meth:`CensusData.top_tiles`).

Index items read this way (examples in docs/cells.md): chronic infiltrate = lymphocytes +
plasmocytes in the lamina propria; lamina propria neutrophils; neutrophils in the
epithelium (per mm² of epithelium); eosinophils anywhere.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from napari_imilia.errors import ImiliaError
from napari_imilia.interpret.census.finish import COUNTED_CLASSES, count_column
from napari_imilia.interpret.census.record import COMPARTMENTS

#: Denominators of a density: the tile table's area column for each.
AREAS: dict[str, str] = {
    "tissue": "tissue_area_mm2",
    "epithelium": "epithelium_area_mm2",
    "lamina propria": "lamina_propria_area_mm2",
}


@dataclass(frozen=True)
class CellSelection:
    """Cells of ``classes`` (names of ``CELL_CLASSES``; empty: all) in ``compartments``
    (of ``COMPARTMENTS``; empty: all), counted per mm² of ``per`` (a key of ``AREAS``)."""

    classes: tuple[str, ...] = ()
    compartments: tuple[str, ...] = ()
    per: str = "tissue"
    label: str = ""

    def __post_init__(self) -> None:
        unknown = [c for c in self.classes if c not in COUNTED_CLASSES]
        unknown += [k for k in self.compartments if k not in COMPARTMENTS]
        if unknown or self.per not in AREAS:
            raise ImiliaError(
                f"unknown cell class, compartment or area {unknown or [self.per]}; classes: "
                f"{', '.join(COUNTED_CLASSES)}; compartments: {', '.join(COMPARTMENTS)}"
            )

    @property
    def name(self) -> str:
        if self.label:
            return self.label
        classes = " + ".join(self.classes) if self.classes else "all cells"
        where = " + ".join(self.compartments) if self.compartments else "anywhere"
        return f"{classes} ({where})"

    def columns(self) -> list[str]:
        classes = self.classes or COUNTED_CLASSES
        compartments = self.compartments or COMPARTMENTS
        return [count_column(c, k) for c in classes for k in compartments]


#: Selections offered first (the Tile inspector's census section lists them).
PRESETS: tuple[CellSelection, ...] = (
    CellSelection(
        ("Lymphocytes", "Plasmocytes", "Neutrophils", "Eosinophils"), label="immune cells"
    ),
    CellSelection(
        ("Lymphocytes", "Plasmocytes"),
        ("lamina propria",),
        "lamina propria",
        "chronic infiltrate",
    ),
    CellSelection(
        ("Neutrophils",), ("lamina propria",), "lamina propria", "lamina propria neutrophils"
    ),
    CellSelection(("Neutrophils",), ("epithelium",), "epithelium", "neutrophils in epithelium"),
    CellSelection(("Eosinophils",), label="eosinophils"),
    CellSelection(label="all cells"),
)


@dataclass(frozen=True)
class WindowValue:
    """A density in a window: cells, area (mm²), cells/mm², the window's level-0 box
    (x, y, width, height) and the ids of its tiles."""

    count: int
    area_mm2: float
    density_per_mm2: float
    box: tuple[int, int, int, int]
    tile_ids: tuple[str, ...]


class CensusData:
    """A finished census (see the module docstring)."""

    def __init__(self, folder: Path, info: dict[str, Any], tiles: pd.DataFrame) -> None:
        self.folder = folder
        self.info = info
        self.tiles = tiles.reset_index(drop=True)
        self.mpp = float(info["mpp"])
        self.stride_px = int(self.tiles["width"].max()) if len(self.tiles) else 1
        self.col = (self.tiles["x"].to_numpy(np.int64) // self.stride_px).astype(np.int64)
        self.row = (self.tiles["y"].to_numpy(np.int64) // self.stride_px).astype(np.int64)
        self.grid_shape = (int(self.row.max(initial=-1)) + 1, int(self.col.max(initial=-1)) + 1)

    @classmethod
    def load(cls, folder: str | Path) -> CensusData:
        """Open ``folder`` (``OUT/<slide_id>/census``); ``ImiliaError`` when it is not a
        finished census."""
        folder = Path(folder)
        try:
            info = json.loads((folder / "census.json").read_text(encoding="utf-8"))
            tiles = pd.read_csv(folder / "tiles.csv", dtype={"tile_id": str, "region": str})
        except (OSError, ValueError) as error:
            raise ImiliaError(
                f"{folder} holds no finished census ({error}); run `imilia cells` first"
            ) from error
        return cls(folder, info, tiles)

    @property
    def slide_id(self) -> str:
        return str(self.info.get("slide_id", ""))

    # ------------------------------------------------------------------ values per tile
    def counts(self, selection: CellSelection) -> np.ndarray:
        """(n_tiles,) cells of ``selection`` per tile."""
        return self.tiles[selection.columns()].to_numpy(np.int64).sum(axis=1)

    def areas_mm2(self, selection: CellSelection) -> np.ndarray:
        """(n_tiles,) the denominator's area per tile (mm²)."""
        return self.tiles[AREAS[selection.per]].to_numpy(np.float64)

    def densities(self, selection: CellSelection) -> np.ndarray:
        """(n_tiles,) cells per mm² (NaN where the tile has none of that area)."""
        area = self.areas_mm2(selection)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(area > 0, self.counts(selection) / area, np.nan)

    def total(self, selection: CellSelection, tile_mask: np.ndarray | None = None) -> WindowValue:
        """The selection over the whole slide (or the tiles where ``tile_mask`` is true)."""
        keep = np.ones(len(self.tiles), bool) if tile_mask is None else np.asarray(tile_mask)
        count = int(self.counts(selection)[keep].sum())
        area = float(self.areas_mm2(selection)[keep].sum())
        x, y = self.tiles["x"][keep], self.tiles["y"][keep]
        box = (0, 0, 0, 0)
        if keep.any():
            box = (
                int(x.min()),
                int(y.min()),
                int(x.max() - x.min()) + self.stride_px,
                int(y.max() - y.min()) + self.stride_px,
            )
        ids = tuple(self.tiles["tile_id"][keep].astype(str))
        return WindowValue(count, area, count / area if area > 0 else math.nan, box, ids)

    def region_values(self, selection: CellSelection) -> pd.DataFrame:
        """One row per region (``slide`` and each tissue piece): count, area, density."""
        rows = []
        regions = ["slide", *sorted(self.tiles["region"].astype(str).unique())]
        for name in regions:
            mask = (
                None if name == "slide" else (self.tiles["region"].astype(str) == name).to_numpy()
            )
            value = self.total(selection, mask)
            rows.append(
                {
                    "region": name,
                    "count": value.count,
                    "area_mm2": value.area_mm2,
                    "density_per_mm2": value.density_per_mm2,
                }
            )
        return pd.DataFrame(rows)

    def tiles_in_box(self, box: tuple[float, float, float, float]) -> np.ndarray:
        """(n_tiles,) bool: tiles whose centre lies in the level-0 box (x, y, width, height)."""
        x, y, w, h = box
        cx = self.tiles["x"].to_numpy(np.float64) + self.tiles["width"].to_numpy(np.float64) / 2
        cy = self.tiles["y"].to_numpy(np.float64) + self.tiles["height"].to_numpy(np.float64) / 2
        return (cx >= x) & (cx < x + w) & (cy >= y) & (cy < y + h)

    # ------------------------------------------------------------------ grids
    def grid(self, values: np.ndarray, fill: float = 0.0) -> np.ndarray:
        """Per-tile ``values`` on the tile grid ((rows, cols); ``fill`` where no tile).
        Grid cell (r, c) is the tile whose level-0 top-left is (c, r) x ``stride_px``."""
        image = np.full(self.grid_shape, fill, dtype=np.float64)
        image[self.row, self.col] = values
        return image

    def density_pyramid(self, selection: CellSelection, levels: int = 4) -> list[np.ndarray]:
        """cells/mm² on the tile grid, then on 2 x 2, 4 x 4... blocks of tiles (float32, NaN
        where there is no area): each level sums counts and areas, then divides."""
        counts = self.grid(self.counts(selection))
        areas = self.grid(self.areas_mm2(selection))
        out = []
        for _ in range(max(1, levels)):
            with np.errstate(invalid="ignore", divide="ignore"):
                out.append(np.where(areas > 0, counts / areas, np.nan).astype(np.float32))
            if min(counts.shape) <= 1:
                break
            counts, areas = _block_sum(counts), _block_sum(areas)
        return out

    def window_tiles(self, window_um: float) -> int:
        """Tiles per side of the square window closest to ``window_um`` µm (at least 1)."""
        tile_um = self.stride_px * self.mpp
        return max(1, round(float(window_um) / tile_um))

    def worst_window(
        self, selection: CellSelection, window_um: float, *, min_area_fraction: float = 0.5
    ) -> WindowValue:
        """The square of ``window_tiles(window_um)`` tiles per side with the highest density,
        among those whose denominator area is at least ``min_area_fraction`` of the largest
        such area found in any window (so a sliver of tissue cannot win)."""
        k = self.window_tiles(window_um)
        counts = _window_sums(self.grid(self.counts(selection)), k)
        areas = _window_sums(self.grid(self.areas_mm2(selection)), k)
        if not areas.size or areas.max() <= 0:
            return WindowValue(0, 0.0, math.nan, (0, 0, 0, 0), ())
        eligible = areas >= min_area_fraction * areas.max()
        with np.errstate(invalid="ignore", divide="ignore"):
            density = np.where(eligible, counts / np.where(areas > 0, areas, 1), -np.inf)
        r, c = np.unravel_index(int(np.argmax(density)), density.shape)
        inside = (self.row >= r) & (self.row < r + k) & (self.col >= c) & (self.col < c + k)
        box = (
            int(c * self.stride_px),
            int(r * self.stride_px),
            k * self.stride_px,
            k * self.stride_px,
        )
        ids = tuple(self.tiles["tile_id"][inside].astype(str))
        return WindowValue(int(counts[r, c]), float(areas[r, c]), float(density[r, c]), box, ids)

    def top_tiles(
        self, selection: CellSelection, k: int = 3, *, min_area_fraction: float = 0.25
    ) -> list[str]:
        """Ids of the ``k`` tiles with the highest density, among tiles with at least
        ``min_area_fraction`` of the largest tile area of the denominator."""
        area = self.areas_mm2(selection)
        density = np.where(
            area >= min_area_fraction * area.max(initial=0), self.densities(selection), -np.inf
        )
        density = np.nan_to_num(density, nan=-np.inf)
        order = np.argsort(-density, kind="stable")[:k]
        return [str(self.tiles["tile_id"].iloc[i]) for i in order if np.isfinite(density[i])]

    # ------------------------------------------------------------------ cells
    def cells(
        self, columns: list[str] | None = None, tile_ids: list[str] | None = None
    ) -> pd.DataFrame:
        """Rows of ``cells.parquet`` (all, or those of ``tile_ids``), ``columns`` only."""
        import pyarrow.parquet as pq

        filters = [("tile_id", "in", list(tile_ids))] if tile_ids is not None else None
        table = pq.read_table(self.folder / "cells.parquet", columns=columns, filters=filters)
        return table.to_pandas()


def _block_sum(image: np.ndarray) -> np.ndarray:
    """Sums over 2 x 2 blocks (odd edges padded with zeros)."""
    rows, cols = image.shape
    padded = np.zeros((rows + rows % 2, cols + cols % 2))
    padded[:rows, :cols] = image
    return padded.reshape(padded.shape[0] // 2, 2, padded.shape[1] // 2, 2).sum(axis=(1, 3))


def _window_sums(image: np.ndarray, k: int) -> np.ndarray:
    """Sums over every k x k window inside ``image`` (a summed-area table); a grid smaller
    than k gives its one total."""
    k_r, k_c = min(k, image.shape[0]), min(k, image.shape[1])
    table = np.zeros((image.shape[0] + 1, image.shape[1] + 1))
    table[1:, 1:] = image.cumsum(0).cumsum(1)
    return table[k_r:, k_c:] - table[:-k_r, k_c:] - table[k_r:, :-k_c] + table[:-k_r, :-k_c]
