"""The cells of a census by place, for drawing only those in view (no Qt).

:class:`CellPoints` reads the centroids, classes, compartments and tiles of every cell of
``cells.parquet`` once (about 20 bytes a cell: 20 MB for 10^6 cells) and groups them by
tile, so the cells of a level-0 window are gathered tile by tile
(:meth:`CellPoints.in_window`) without looking at the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from napari_imilia.interpret.cells.types import CELL_CLASS_COLORS, CELL_CLASSES
from napari_imilia.interpret.census.data import CellSelection, CensusData
from napari_imilia.interpret.census.record import COMPARTMENTS


@dataclass
class WindowCells:
    """Cells in a window: level-0 (x, y), class and compartment codes, tile ids."""

    xy: np.ndarray
    class_id: np.ndarray
    compartment: np.ndarray
    tile_id: np.ndarray

    def __len__(self) -> int:
        return len(self.xy)

    def rgba(self) -> np.ndarray:
        """(n, 4) float colours of the cells' classes (``CELL_CLASS_COLORS``)."""
        lut = np.array([(*CELL_CLASS_COLORS[c], 255) for c in CELL_CLASSES], np.float32) / 255
        return lut[self.class_id]

    def features(self) -> pd.DataFrame:
        """``class_name``, ``compartment``, ``tile_id`` (napari ``layer.features``)."""
        return pd.DataFrame(
            {
                "class_name": pd.Categorical.from_codes(self.class_id, CELL_CLASSES),
                "compartment": pd.Categorical.from_codes(self.compartment, COMPARTMENTS),
                "tile_id": self.tile_id,
            }
        )


class CellPoints:
    """Every cell of a census, grouped by tile (see the module docstring)."""

    def __init__(self, data: CensusData) -> None:
        import pyarrow.parquet as pq

        columns = ["tile_id", "centroid_x", "centroid_y", "class_name", "compartment"]
        table = pq.read_table(data.folder / "cells.parquet", columns=columns)
        index = {t: i for i, t in enumerate(data.tiles["tile_id"].astype(str))}
        tile = _dictionary_codes(table.column("tile_id"), index)
        class_id = _dictionary_codes(table.column("class_name"), _positions(CELL_CLASSES))
        compartment = _dictionary_codes(table.column("compartment"), _positions(COMPARTMENTS))
        order = np.argsort(tile, kind="stable")
        self.data = data
        xy = np.stack(
            [table.column("centroid_x").to_numpy(), table.column("centroid_y").to_numpy()], axis=1
        )
        self.xy = xy[order]
        self.class_id = class_id[order].clip(min=0).astype(np.uint8)
        self.compartment = compartment[order].clip(min=0).astype(np.uint8)
        self.tile = tile[order]
        self.starts = np.searchsorted(self.tile, np.arange(len(data.tiles) + 1))
        self.tile_ids = data.tiles["tile_id"].astype(str).to_numpy()

    def __len__(self) -> int:
        return len(self.xy)

    def count_in_window(self, x0: float, y0: float, x1: float, y1: float) -> int:
        """Cells of the tiles overlapping the level-0 window [x0, x1) x [y0, y1)."""
        tiles = self._tiles(x0, y0, x1, y1)
        return int((self.starts[tiles + 1] - self.starts[tiles]).sum())

    def in_window(
        self, x0: float, y0: float, x1: float, y1: float, selection: CellSelection | None = None
    ) -> WindowCells:
        """The cells (of ``selection``'s classes and compartments) of the tiles overlapping
        the level-0 window [x0, x1) x [y0, y1)."""
        tiles = self._tiles(x0, y0, x1, y1)
        picks = [np.arange(self.starts[t], self.starts[t + 1]) for t in tiles]
        rows = np.concatenate(picks) if picks else np.zeros(0, np.int64)
        if selection is not None:
            keep = np.ones(len(rows), bool)
            if selection.classes:
                wanted = [CELL_CLASSES.index(c) for c in selection.classes]
                keep &= np.isin(self.class_id[rows], wanted)
            if selection.compartments:
                wanted = [COMPARTMENTS.index(c) for c in selection.compartments]
                keep &= np.isin(self.compartment[rows], wanted)
            rows = rows[keep]
        ids = self.tile_ids[self.tile[rows]]
        return WindowCells(self.xy[rows], self.class_id[rows], self.compartment[rows], ids)

    def _tiles(self, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
        t = self.data.tiles
        x, y = t["x"].to_numpy(), t["y"].to_numpy()
        w, h = t["width"].to_numpy(), t["height"].to_numpy()
        return np.flatnonzero((x < x1) & (x + w > x0) & (y < y1) & (y + h > y0))


def _positions(names: tuple[str, ...]) -> dict[str, int]:
    return {name: i for i, name in enumerate(names)}


def _dictionary_codes(column: Any, codes: dict[str, int]) -> np.ndarray:
    """(n,) int64 codes of a dictionary-encoded (or plain text) Arrow column, each chunk's
    dictionary mapped through ``codes`` (names it lacks: -1)."""
    parts = []
    for chunk in column.chunks:
        if hasattr(chunk, "dictionary"):
            names = chunk.dictionary.to_pylist()
            lut = np.array([codes.get(str(v), -1) for v in names] or [-1], np.int64)
            parts.append(lut[chunk.indices.to_numpy(zero_copy_only=False).astype(np.int64)])
        else:
            parts.append(np.array([codes.get(str(v), -1) for v in chunk.to_pylist()], np.int64))
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)
