"""A census in progress: its plan and its finished parts, so a killed run goes on.

While a census runs, ``<slide>/census/.parts/`` holds ``plan.json`` (the plan's key, its
settings and tile table) and one Parquet file per :data:`PART_TILES` tiles of the plan, in
plan order (``part-000012.parquet``: tiles 768-831). Each part is written atomically (a
temporary file, then a rename), its cells as rows and its tiles' rows in the file's
key-value metadata; a part on disk is therefore complete. A run started again with the same
plan keeps the parts it finds and inspects only the tiles of the missing ones; another plan
(other settings, another slide file, other tiles) starts from an empty folder.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from napari_imilia.files import atomic_path, write_text_atomic
from napari_imilia.interpret.census.record import CensusTile, cells_table

#: Tiles per part file (the most a killed run loses, besides what runs in the workers).
PART_TILES = 64
PARTS_DIR = ".parts"
_TILES_KEY = b"imilia_census_tiles"


class CensusParts:
    """The parts folder of one census plan (see the module docstring)."""

    def __init__(self, census_dir: Path, key: str, plan: dict[str, Any], tiles: pd.DataFrame):
        self.folder = census_dir / PARTS_DIR
        self.key = key
        self.tiles = tiles
        self.n_parts = -(-len(tiles) // PART_TILES)
        plan_path = self.folder / "plan.json"
        same = False
        if plan_path.is_file():
            try:
                same = json.loads(plan_path.read_text(encoding="utf-8")).get("key") == key
            except (OSError, ValueError):
                same = False
        if not same:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder.mkdir(parents=True, exist_ok=True)
            text = json.dumps({"key": key, **plan}, indent=1, default=str)
            write_text_atomic(plan_path, text + "\n")

    def path(self, index: int) -> Path:
        return self.folder / f"part-{index:06d}.parquet"

    def done(self) -> list[int]:
        """Indices of the parts on disk that can be read."""
        import pyarrow.parquet as pq

        found = []
        for index in range(self.n_parts):
            path = self.path(index)
            if path.is_file():
                try:
                    pq.read_metadata(path)
                except (OSError, ValueError):
                    path.unlink(missing_ok=True)  # not ours: an atomic part always reads
                    continue
                found.append(index)
        return found

    def rows(self, index: int) -> pd.DataFrame:
        """The planned tiles of part ``index``."""
        return self.tiles.iloc[index * PART_TILES : (index + 1) * PART_TILES]

    def write(self, index: int, tiles: list[CensusTile]) -> Path:
        """Write part ``index`` (its tiles and their cells) atomically."""
        import pyarrow.parquet as pq

        table = cells_table(tiles)
        rows = [{**t.row(), "seconds": round(t.seconds, 4)} for t in tiles]
        meta = {**(table.schema.metadata or {}), _TILES_KEY: json.dumps(rows).encode()}
        table = table.replace_schema_metadata(meta)
        path = self.path(index)
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp, compression="zstd")
        return path

    def read(self, index: int) -> tuple[Any, list[dict[str, Any]]]:
        """(cells as a pyarrow Table, tile rows) of part ``index``."""
        import pyarrow.parquet as pq

        table = pq.read_table(self.path(index))
        rows = json.loads((table.schema.metadata or {})[_TILES_KEY])
        return table.replace_schema_metadata(None), rows

    def iter_all(self) -> Iterator[tuple[Any, list[dict[str, Any]]]]:
        for index in range(self.n_parts):
            yield self.read(index)

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
