"""Review entries as a table and as QuPath annotations (level-0 pixels, top-left origin),
and the project's classes for objects written from napari layers.

``LAYER_CLASS_COLORS`` and ``LAYER_ROLE_CLASSES`` are what the napari writer passes to
``export.layer_geojson`` (which knows no classes): the cell classes' and the reviewer's
colours, and the class of the tile inspector's epithelium mask.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pandas as pd
import shapely

from napari_imilia.errors import DataError
from napari_imilia.export.context import ExportContext, classification, stable_id
from napari_imilia.export.geojson_objects import geometry_json, prepare_polygon
from napari_imilia.interpret.cells.types import CELL_CLASS_COLORS
from napari_imilia.interpret.epithelium.geojson import EPITHELIUM_CLASS
from napari_imilia.review.entry import ReviewEntry
from napari_imilia.review.store import ReviewStore

#: QuPath colours (RGB 0-255) of the suggested classes; others get a stable colour per name.
REVIEW_CLASS_COLORS: dict[str, tuple[int, int, int]] = {
    "active inflammation": (220, 40, 40),
    "chronic inflammation": (240, 150, 30),
    "normal": (40, 170, 80),
    "artefact": (128, 128, 128),
}
#: Verdict as a number in QuPath measurements (1 agree, 0.5 uncertain, 0 disagree).
VERDICT_SCORES: dict[str, float] = {"agree": 1.0, "uncertain": 0.5, "disagree": 0.0}
#: Class colours of objects written from napari layers: cell classes, then reviewer classes.
LAYER_CLASS_COLORS: dict[str, tuple[int, int, int]] = {**CELL_CLASS_COLORS, **REVIEW_CLASS_COLORS}
#: ``imilia_role`` of the tile inspector's epithelium mask layer (``_napari.layers.inspection``).
EPITHELIUM_LAYER_ROLE = "inspection_epithelium"
#: Layer role -> class of the objects of a Labels layer with that role.
LAYER_ROLE_CLASSES: dict[str, str] = {EPITHELIUM_LAYER_ROLE: EPITHELIUM_CLASS}


def reviews_table(store: ReviewStore) -> pd.DataFrame:
    """One row per entry; ``region`` as JSON text of level-0 [x, y] vertices ('' if none)."""
    columns = [f.name for f in dataclasses.fields(ReviewEntry)]
    rows = []
    for entry in store.entries():
        row = entry.to_dict()
        row["region"] = "" if entry.region is None else json.dumps(row["region"])
        row["tile_id"] = entry.tile_id or ""
        rows.append(row)
    return pd.DataFrame(rows, columns=columns).astype(dict.fromkeys(columns, str))


def reviews_to_features(
    store: ReviewStore, ctx: ExportContext, *, tiles: pd.DataFrame | None = None
) -> list[dict[str, Any]]:
    """Entries as QuPath annotations: classification = reviewer class, the verdict as the
    measurement 'Review agreement' (1 agree, 0.5 uncertain, 0 disagree) and verdict, note,
    reviewer and times as ``metadata``. Tile entries take their rectangle from ``tiles``
    (tile_id, x, y, width, height in level-0 px), needed when there are tile entries."""
    boxes: dict[str, tuple[float, float, float, float]] = {}
    if tiles is not None:
        for row in tiles[["tile_id", "x", "y", "width", "height"]].itertuples(index=False):
            boxes[str(row.tile_id)] = (row.x, row.y, row.x + row.width, row.y + row.height)
    objects = []
    for entry in store.entries():
        if entry.target_kind == "region":
            polygon = shapely.Polygon(entry.region)
        elif entry.tile_id in boxes:
            polygon = shapely.box(*boxes[entry.tile_id])
        else:
            where = "no tile table was given" if tiles is None else "it is not in the tile table"
            raise DataError(
                f"review {entry.entry_id} is about tile {entry.tile_id!r} but {where}; pass "
                "tiles= (the slide's tiles.csv)"
            )
        properties: dict[str, Any] = {"objectType": "annotation"}
        name = f"Review: {entry.verdict}" + (f" - {entry.note}" if entry.note else "")
        properties["name"] = name if len(name) <= 100 else name[:99] + "…"
        if entry.reviewer_class:
            properties["classification"] = classification(
                entry.reviewer_class, REVIEW_CLASS_COLORS.get(entry.reviewer_class)
            )
        properties["measurements"] = {"Review agreement": VERDICT_SCORES[entry.verdict]}
        metadata = {k: v for k, v in entry.to_dict().items() if k != "region" and v is not None}
        properties["metadata"] = {k: str(v) for k, v in metadata.items()}
        geometry = prepare_polygon(polygon, f"review {entry.entry_id}")
        objects.append(
            {
                "type": "Feature",
                "id": stable_id("review", ctx.slide_id, entry.entry_id),
                "geometry": geometry_json(geometry),
                "properties": properties,
            }
        )
    return objects
