"""The files of a finished census, made from its parts one part at a time.

Into ``OUT/<slide_id>/census/`` (:data:`CENSUS_FILES`, each atomic, ``census.json`` last, so
a folder with ``census.json`` is complete):

- ``cells.parquet``: one row per cell (``record.CELL_COLUMNS`` + ``outline``), one row group
  per part;
- ``tiles.csv``: per tile its box (level-0 px), region, tissue / epithelium / lamina propria
  areas (mm²), ``n_cells``, flags and ``count_<class>_<compartment>`` for every class and
  compartment (:func:`count_column`);
- ``regions.csv``: the same counts and areas summed per tissue piece and over the slide
  (region ``slide``), with ``density_per_mm2_<class>`` (cells per mm² of tissue);
- ``cells.geojson``: every cell as a QuPath cell (outline = nucleus; classification with the
  class colour; measurements: nucleus area µm², classification probability; metadata:
  compartment and tile), written by the streaming writer;
- ``census.json``: settings, slide, counts per class and compartment, timings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from napari_imilia import __version__
from napari_imilia.export.context import ExportContext
from napari_imilia.export.geojson_stream import GeoJSONStreamWriter, ObjectBatch
from napari_imilia.files import atomic_path, write_text_atomic
from napari_imilia.interpret.cells.types import CELL_CLASS_COLORS, CELL_CLASSES
from napari_imilia.interpret.census.parts import CensusParts
from napari_imilia.interpret.census.record import COMPARTMENTS
from napari_imilia.interpret.markers import column_key

CENSUS_FILES: tuple[str, ...] = (
    "cells.parquet",
    "tiles.csv",
    "regions.csv",
    "cells.geojson",
    "census.json",
)
#: Classes counted per tile (every HistoPLUS class but background).
COUNTED_CLASSES: tuple[str, ...] = CELL_CLASSES[1:]


def compartment_key(compartment: str) -> str:
    return compartment.replace(" ", "_")


def count_column(class_name: str, compartment: str) -> str:
    """``count_Lymphocytes_lamina_propria``: the column of one class in one compartment."""
    return f"count_{column_key(class_name)}_{compartment_key(compartment)}"


COUNT_COLUMNS: tuple[str, ...] = tuple(
    count_column(c, k) for c in COUNTED_CLASSES for k in COMPARTMENTS
)


def part_counts(table: Any, n_tiles: int) -> np.ndarray:
    """(n_tiles, classes, compartments) cell counts of one part's cell table (tile order:
    the part's dictionary of tile ids)."""
    tiles = table.column("tile_id").combine_chunks()
    classes = table.column("class_name").combine_chunks()
    places = table.column("compartment").combine_chunks()
    counts = np.zeros((n_tiles, len(CELL_CLASSES), len(COMPARTMENTS)), dtype=np.int64)
    np.add.at(
        counts,
        (
            tiles.indices.to_numpy(zero_copy_only=False),
            classes.indices.to_numpy(zero_copy_only=False),
            places.indices.to_numpy(zero_copy_only=False),
        ),
        1,
    )
    return counts


def _object_batch(table: Any) -> ObjectBatch:
    """A part's cells as GeoJSON objects (names ``<tile_id>:<label>``)."""
    tile_ids = table.column("tile_id").to_pylist()
    labels = table.column("label").to_numpy()
    classes = table.column("class_name").combine_chunks()
    outline = table.column("outline").combine_chunks()
    offsets = outline.offsets.to_numpy() // 2
    xy = outline.values.to_numpy().astype(np.float64).reshape(-1, 2)
    return ObjectBatch(
        names=[f"{t}:{label}" for t, label in zip(tile_ids, labels.tolist(), strict=True)],
        class_index=classes.indices.to_numpy(zero_copy_only=False).astype(np.int32),
        classes=[(name, CELL_CLASS_COLORS.get(name)) for name in CELL_CLASSES],
        x=table.column("centroid_x").to_numpy(),
        y=table.column("centroid_y").to_numpy(),
        ring_offsets=offsets,
        ring_xy=xy,
        measurements={
            "Nucleus: Area µm^2": table.column("area_um2").to_numpy().astype(np.float64),
            "Classification probability": table.column("probability").to_numpy().astype(np.float64),
        },
        metadata={"compartment": table.column("compartment").to_pylist(), "tile": tile_ids},
    )


def finish_census(
    folder: Path, parts: CensusParts, ctx: ExportContext, record: dict[str, Any]
) -> dict[str, Any]:
    """Write :data:`CENSUS_FILES` into ``folder`` from ``parts``; returns ``census.json``."""
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "census.json").unlink(missing_ok=True)  # the folder is incomplete until the end
    rows: list[dict[str, Any]] = []
    counts: list[np.ndarray] = []
    with atomic_path(folder / "cells.parquet") as tmp_parquet:
        writer = None
        with GeoJSONStreamWriter(folder / "cells.geojson", ctx) as geojson:
            for table, tile_rows in parts.iter_all():
                if writer is None:
                    writer = pq.ParquetWriter(tmp_parquet, table.schema, compression="zstd")
                writer.write_table(table)
                geojson.write(_object_batch(table))
                rows += tile_rows
                counts.append(part_counts(table, len(tile_rows)))
        if writer is not None:
            writer.close()
    tiles = tile_table(rows, np.concatenate(counts) if counts else np.zeros((0, 15, 3)))
    tiles = tiles.merge(parts.tiles[["tile_id", "region"]], on="tile_id", how="left")
    tiles.insert(5, "region", tiles.pop("region"))
    write_text_atomic(folder / "tiles.csv", tiles.to_csv(index=False, float_format="%.9g"))
    regions = region_table(tiles)
    write_text_atomic(folder / "regions.csv", regions.to_csv(index=False, float_format="%.9g"))
    slide_row = regions[regions["region"] == "slide"].iloc[0]
    info = {
        **record,
        "n_tiles": len(tiles),
        "n_cells": int(tiles["n_cells"].sum()),
        "tissue_area_mm2": float(slide_row["tissue_area_mm2"]),
        "counts": {c: int(slide_row[c]) for c in COUNT_COLUMNS if slide_row[c]},
        "seconds_inspecting": round(float(tiles["seconds"].sum()), 3),
        "software": f"napari-imilia {__version__}",
        "coordinates": "level-0 pixels, (x, y), top-left origin",
        "files": list(CENSUS_FILES),
    }
    text = json.dumps(info, indent=1, ensure_ascii=False, default=str)
    write_text_atomic(folder / "census.json", text + "\n")
    return info


def tile_table(rows: list[dict[str, Any]], counts: np.ndarray) -> pd.DataFrame:
    """``tiles.csv`` without the region: tile rows with areas and counts."""
    tiles = pd.DataFrame(rows)
    tiles["lamina_propria_area_mm2"] = (
        tiles["tissue_area_mm2"] - tiles["epithelium_area_mm2"]
    ).clip(lower=0.0)
    flat = counts[:, 1:, :].reshape(len(tiles), -1)
    frame = pd.DataFrame(flat, columns=list(COUNT_COLUMNS), index=tiles.index)
    return pd.concat([tiles, frame], axis=1)


def region_table(tiles: pd.DataFrame) -> pd.DataFrame:
    """``regions.csv``: areas and counts summed per region and over the slide, with each
    class's density per mm² of tissue."""
    summed = ["tissue_area_mm2", "epithelium_area_mm2", "lamina_propria_area_mm2", "n_cells"]
    summed += list(COUNT_COLUMNS)
    groups = [("slide", tiles)] + [(str(name), part) for name, part in tiles.groupby("region")]
    rows = []
    for name, part in groups:
        row = {"region": name, "n_tiles": len(part), **part[summed].sum().to_dict()}
        area = float(row["tissue_area_mm2"])
        for cls in COUNTED_CLASSES:
            total = sum(row[count_column(cls, k)] for k in COMPARTMENTS)
            row[f"density_per_mm2_{column_key(cls)}"] = total / area if area > 0 else np.nan
        rows.append(row)
    return pd.DataFrame(rows)
