"""A finished census written as its tables alone (counts, no cells), for tests of what
reads them."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd


def write_table_census(results: Path, slide_id: str, lymphocytes_per_tile: int) -> Path:
    """``results/<slide_id>/census`` with a ``census.json`` and a ``tiles.csv`` of 4 tiles
    (224 px at 0.5 µm/px in a row), each holding ``lymphocytes_per_tile`` lymphocytes in the
    lamina propria; returns the folder."""
    import pyarrow.parquet as pq

    from napari_imilia.interpret.census import COUNT_COLUMNS, count_column
    from napari_imilia.interpret.census.record import cells_table

    folder = Path(results) / slide_id / "census"
    folder.mkdir(parents=True)
    rows = []
    for i in range(4):
        row = dict.fromkeys(COUNT_COLUMNS, 0)
        row[count_column("Lymphocytes", "lamina propria")] = lymphocytes_per_tile
        row.update(
            tile_id=f"{224 * i}_0", x=224 * i, y=0, width=224, height=224, region="piece 1",
            tissue_area_mm2=0.0125, epithelium_area_mm2=0.005, lamina_propria_area_mm2=0.0075,
        )  # fmt: skip
        rows.append(row)
    pd.DataFrame(rows).to_csv(folder / "tiles.csv", index=False)
    (folder / "census.json").write_text(json.dumps({"mpp": 0.5, "slide_id": slide_id}))
    pq.write_table(cells_table([]), folder / "cells.parquet")  # counts only: no cell rows
    return folder
