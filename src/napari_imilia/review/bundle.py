"""Everything one reviewed slide has, exported at once for QuPath and spreadsheets (no Qt).

It lives in ``review`` (above ``interpret`` and ``export``) because it gathers what a
``ReviewSession`` holds: scored tiles, inspected cells and epithelium, review entries, grade.

``export_review_bundle(session, out_dir)`` writes, all named ``<slide_id>.<part>`` and each
carrying the ``ExportContext`` (model name and hash, extractor, µm/px, software version):

- ``tiles.geojson``: the scored tiles (``objectType`` tile; score, rank, attention, tissue
  fraction and the markers of inspected tiles as measurements) and ``tiles.csv``;
- ``cells.geojson``: the cells of every inspected tile (``objectType`` cell with
  ``nucleusGeometry``) and their epithelium (annotations classed "Epithelium"), and
  ``markers.csv`` (one row per inspected tile) - only when tiles were inspected;
- ``review.geojson``: the review entries as annotations, and ``reviews.csv``;
- ``slide_grade.csv``: the slide-level grade (Nancy index, activity, agreement with the
  model, note, reviewer), when the slide was graded (``review.grade``).

Coordinates are level-0 pixels, (x, y), top-left origin. Inspections are read defensively:
an inspection is a ``TileCells`` or has ``.cells``; epithelium comes from
``.epithelium_polygons`` (level-0 polygons) or an ``.epithelium`` mask; markers from
``.markers`` (``TileMarkers`` or a dict).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from shapely.geometry import MultiPolygon, Polygon

from napari_imilia.errors import DataError
from napari_imilia.export.context import ExportContext
from napari_imilia.export.geojson_objects import tiles_to_features
from napari_imilia.export.geojson_write import write_geojson
from napari_imilia.export.tables import write_table_csv
from napari_imilia.interpret.cells.geojson import cells_to_features
from napari_imilia.interpret.cells.types import TileCells
from napari_imilia.interpret.epithelium.geojson import epithelium_to_features
from napari_imilia.interpret.epithelium.polygons import epithelium_polygons
from napari_imilia.review.exports import reviews_table, reviews_to_features
from napari_imilia.review.grading import shown_grade
from napari_imilia.review.indices import INDEX_COLUMNS, ITEM_COLUMNS, index_values, item_columns
from napari_imilia.review.reviewer import load_reviewer
from napari_imilia.trust.paths import path_inside

#: Compression choices of :func:`export_review_bundle` -> file name ending.
COMPRESSION_SUFFIXES: dict[str, str] = {
    "none": ".geojson",
    "gzip": ".geojson.gz",
    "zip": ".geojson.zip",
}


def export_context(session: Any) -> ExportContext:
    """The ``ExportContext`` of a ``ReviewSession``: from its prediction, or placeholders
    (model 'none', µm/px 0 when the slide has none) before the slide was scored."""
    slide = session.slide
    info: Mapping[str, Any] = {} if session.prediction is None else session.prediction.info
    mpp = info.get("mpp", slide.mpp)
    return ExportContext(
        slide_id=session.slide_id,
        slide_path=str(info.get("slide", slide.path)),
        model_name=str(info.get("model", "none")),
        model_sha256=str(info.get("model_sha256", "")),
        extractor=str(info.get("extractor", "none")),
        mpp=float(mpp) if mpp else 0.0,
        tile_px=int(info.get("tile_px", 0)),
    )


def inspection_cells(inspection: Any) -> TileCells | None:
    """The ``TileCells`` of an inspection (itself, or its ``.cells``), or None."""
    if isinstance(inspection, TileCells):
        return inspection
    cells = getattr(inspection, "cells", None)
    return cells if isinstance(cells, TileCells) else None


def inspection_epithelium(inspection: Any) -> list[Polygon | MultiPolygon]:
    """Level-0 epithelium polygons of an inspection (``.epithelium_polygons``, or its
    ``.epithelium`` mask placed like its cells); empty when it has none."""
    polygons = getattr(inspection, "epithelium_polygons", None)
    if polygons is not None:
        return [p for p in polygons if isinstance(p, Polygon | MultiPolygon) and not p.is_empty]
    epithelium = getattr(inspection, "epithelium", None)
    mask = getattr(epithelium, "mask", epithelium)
    cells = inspection_cells(inspection)
    if mask is None or cells is None or getattr(mask, "shape", None) != cells.labels.shape:
        return []
    return list(
        epithelium_polygons(
            mask, mpp=cells.mpp, level0_xy=cells.level0_xy, level0_per_px=cells.level0_per_px
        )
    )


def inspection_markers(inspection: Any) -> dict[str, Any] | None:
    """The marker row of an inspection (``TileMarkers.as_row()`` or a dict), or None."""
    markers = getattr(inspection, "markers", None)
    if markers is None:
        return None
    if hasattr(markers, "as_row"):
        return dict(markers.as_row())
    return dict(markers) if isinstance(markers, Mapping) else None


def _inspections(session: Any) -> list[tuple[str, Any]]:
    pairs = [
        (tile_id, session.cached_inspection(tile_id)) for tile_id in session.inspected_tile_ids
    ]
    return [(tile_id, insp) for tile_id, insp in pairs if insp is not None]


def session_markers_frame(session: Any) -> pd.DataFrame:
    """One row per inspected tile with markers (``tile_id`` first), sorted by tile id."""
    rows = []
    for tile_id, inspection in _inspections(session):
        row = inspection_markers(inspection)
        if row is not None:
            rows.append(
                {"tile_id": str(tile_id), **{k: v for k, v in row.items() if k != "tile_id"}}
            )
    if not rows:
        return pd.DataFrame({"tile_id": pd.Series(dtype=str)})
    return pd.DataFrame(rows).sort_values("tile_id", kind="mergesort").reset_index(drop=True)


def _tiles_with_markers(tiles: pd.DataFrame, markers: pd.DataFrame) -> pd.DataFrame:
    if markers.empty:
        return tiles
    extra = markers[[c for c in markers.columns if c == "tile_id" or c not in tiles.columns]]
    merged = tiles.assign(tile_id=tiles["tile_id"].astype(str)).merge(
        extra, on="tile_id", how="left"
    )
    return merged


def inspected_objects(session: Any, ctx: ExportContext) -> list[dict[str, Any]]:
    """QuPath cells and epithelium annotations of every inspected tile, by tile id."""
    objects: list[dict[str, Any]] = []
    for tile_id, inspection in sorted(_inspections(session), key=lambda pair: str(pair[0])):
        cells = inspection_cells(inspection)
        if cells is not None and cells.n_cells:
            objects += cells_to_features(cells, ctx)
        polygons = inspection_epithelium(inspection)
        if polygons:
            objects += epithelium_to_features(
                polygons, slide_id=ctx.slide_id, tile_id=str(tile_id), mpp=ctx.mpp
            )
    return objects


def _target(out_dir: Path, slide_id: str, part: str, compression: str) -> Path:
    return path_inside(out_dir, f"{slide_id}.{part}{COMPRESSION_SUFFIXES[compression]}")


def export_review_bundle(
    session: Any, out_dir: str | os.PathLike[str], *, compression: str = "none"
) -> list[Path]:
    """Write the slide's tiles, inspected cells, markers and review (see the module
    docstring) into ``out_dir``; ``compression``: 'none', 'gzip' (``.geojson.gz``, not
    importable by QuPath as is) or 'zip' (``.geojson.zip``, QuPath imports it). Returns the
    files written, GeoJSON first."""
    if compression not in COMPRESSION_SUFFIXES:
        raise DataError(
            f"compression must be one of {', '.join(COMPRESSION_SUFFIXES)}; got {compression!r}"
        )
    out = Path(out_dir)
    ctx = export_context(session)
    slide_id = session.slide_id
    tiles = None if session.prediction is None else session.tiles
    markers = session_markers_frame(session) if tiles is not None else pd.DataFrame()
    geojson: list[Path] = []
    tables: list[Path] = []
    if tiles is not None:
        tiles_out = _tiles_with_markers(tiles, markers)
        tile_objects = tiles_to_features(tiles_out, ctx)
        target = _target(out, slide_id, "tiles", compression)
        geojson.append(write_geojson(target, tile_objects, ctx))
        tables.append(write_table_csv(path_inside(out, f"{slide_id}.tiles.csv"), tiles_out, ctx))
        cells = inspected_objects(session, ctx)
        if cells:
            geojson.append(write_geojson(_target(out, slide_id, "cells", compression), cells, ctx))
        if not markers.empty:
            tables.append(
                write_table_csv(path_inside(out, f"{slide_id}.markers.csv"), markers, ctx)
            )
    store = session.review
    review = reviews_to_features(store, ctx, tiles=tiles)
    geojson.append(write_geojson(_target(out, slide_id, "review", compression), review, ctx))
    tables.append(
        write_table_csv(path_inside(out, f"{slide_id}.reviews.csv"), reviews_table(store), ctx)
    )
    grade = slide_grade_frame(session)
    if grade is not None:
        tables.append(write_table_csv(path_inside(out, f"{slide_id}.slide_grade.csv"), grade, ctx))
    return geojson + tables


def slide_grade_frame(session: Any) -> pd.DataFrame | None:
    """The slide's grade shown to the reviewer (:func:`~napari_imilia.review.grading.shown_grade`:
    their own in a reader study, else the newest by anyone) as a one-row table, or None."""
    grade = shown_grade(session.results_root, session.slide_id, load_reviewer())
    if grade is None:
        return None
    row = {k: v for k, v in grade.to_dict().items() if k != "items"}
    row |= index_values(grade.items) | item_columns(grade.items)  # review/indices.py
    types = dict.fromkeys(("nancy", *INDEX_COLUMNS, *ITEM_COLUMNS), "Int64")
    return pd.DataFrame([{"slide_id": session.slide_id, **row}]).astype(types)
