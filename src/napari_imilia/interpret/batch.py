"""Inspect many tiles of a scored slide and write markers, cells and epithelium files.

``inspect_slide`` is the one call behind ``imilia inspect``. It reads ``imilia predict``'s
result for the slide (``results_dir/<slide_id>``), chooses tiles (``select_tiles``: top-k,
bottom-k, all, or ids), inspects them on all cores (a process pool: each worker opens the
slide and creates the backends once; results come back in the order of the selection) and
writes into ``out_dir/<slide_id>/`` (files listed in ``INSPECT_FILES``):

- ``markers.csv``: tile_id, score, rank, the ``markers.marker_columns()``, then flags;
- ``cells.geojson``: every cell as a QuPath ``cell`` object (``nucleusGeometry``,
  ``classification``, ``measurements``);
- ``epithelium.geojson``: epithelium regions as QuPath annotations classified "Epithelium";
- ``markers_vs_score.png``: ``markers.plot_marker_summary``;
- ``markers_summary.json``: Spearman correlation of every marker with the tile score
  (``markers.marker_score_summary``), plus what made the files.

All are first written into a hidden staging folder and moved into place together, the
summary last, so a failed or cancelled run leaves no partial file.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from napari_imilia import __version__
from napari_imilia.errors import ImiliaError
from napari_imilia.export.context import ExportContext
from napari_imilia.export.geojson_write import write_geojson
from napari_imilia.files import write_text_atomic
from napari_imilia.interpret.cells.geojson import cells_to_features
from napari_imilia.interpret.epithelium.geojson import epithelium_to_features
from napari_imilia.interpret.pool import ProgressCallback, TileRecord, check_cancel, inspect_tiles
from napari_imilia.interpret.select import select_tiles
from napari_imilia.interpret.tools import InspectConfig
from napari_imilia.trust.paths import check_writable_folder, path_inside

#: The files ``inspect_slide`` writes per slide, in the order they are moved into place.
INSPECT_FILES: tuple[str, ...] = (
    "markers.csv",
    "cells.geojson",
    "epithelium.geojson",
    "markers_vs_score.png",
    "markers_summary.json",
)


@dataclass
class SlideInspection:
    """What ``inspect_slide`` computed and where it wrote it (``out_dir/<slide_id>``)."""

    slide_id: str
    out_dir: Path
    markers: pd.DataFrame
    summary: dict[str, Any]
    n_cells: int
    seconds: float

    @property
    def files(self) -> dict[str, Path]:
        return {name: self.out_dir / name for name in INSPECT_FILES}


def _prediction_for(slide: Any, results_dir: Path) -> Any:
    from napari_imilia.predict.slide import load_prediction

    folder = path_inside(results_dir, slide.slide_id)
    if not (folder / "slide.json").is_file() or not (folder / "tiles.csv").is_file():
        raise ImiliaError(
            f"no prediction for slide {slide.slide_id} in {results_dir} (expected "
            f"{folder / 'tiles.csv'} and slide.json); run `imilia predict {slide.path} --out "
            f"{results_dir}` first, or pass --results DIR where it wrote them"
        )
    try:
        prediction = load_prediction(folder)
    except (ValueError, KeyError) as error:
        raise ImiliaError(
            f"{folder} holds an unreadable prediction ({error}); run `imilia predict` again"
        ) from error
    if str(prediction.slide_id) != slide.slide_id:
        raise ImiliaError(
            f"{folder} is the prediction of slide {prediction.slide_id}, not {slide.slide_id}"
        )
    width, height = slide.dimensions
    tiles = prediction.tiles
    if len(tiles) and ((tiles["x"] >= width).any() or (tiles["y"] >= height).any()):
        raise ImiliaError(
            f"{folder}: tiles lie outside the {width} x {height} px slide {slide.path.name}; "
            "the prediction was made on another slide of the same name"
        )
    return prediction


def inspect_slide(
    slide_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    tiles: str = "top:50",
    results_dir: str | os.PathLike[str] | None = None,
    cell_backend: str = "classical",
    cell_checkpoint: str | os.PathLike[str] | None = None,
    histoplus_json: str | os.PathLike[str] | None = None,
    epithelium_method: str = "stain-heuristic",
    episeg_probe: str | os.PathLike[str] | None = None,
    episeg_extractor_weights: str | os.PathLike[str] | None = None,
    device: str = "auto",
    mpp: float | None = None,
    analysis_mpp: float | None = None,
    workers: int | None = None,
    progress: bool | ProgressCallback = False,
    cancel: threading.Event | None = None,
    cell_protocol: str = "histoplus",
) -> SlideInspection:
    """Inspect the chosen tiles of a scored slide and write ``INSPECT_FILES``.

    ``results_dir`` (default ``out_dir``) holds ``imilia predict``'s ``<slide_id>/``
    folder; ``tiles`` is a ``select_tiles`` spec; the backend options are those of
    ``InspectConfig`` (``analysis_mpp``: the µm/px tiles are analysed at, default the
    backend's); ``mpp`` overrides the slide's level-0 µm/px (default: the one the
    prediction used when it was overridden). ``workers``: processes (default: all cores
    for weight-free backends). ``progress``: True for a tqdm bar, or ``progress(done,
    total)``. Raises ``ImiliaError`` for anything the user can fix.
    """
    from napari_imilia.slide import open_slide

    started = time.perf_counter()
    config = InspectConfig(
        cell_backend=cell_backend,
        cell_checkpoint=_path_text(cell_checkpoint),
        histoplus_json=_path_text(histoplus_json),
        epithelium_method=epithelium_method,
        episeg_probe=_path_text(episeg_probe),
        episeg_extractor_weights=_path_text(episeg_extractor_weights),
        device=device,
        cell_protocol=cell_protocol,
        analysis_mpp=analysis_mpp,
    )
    out_root = Path(out_dir)
    check_writable_folder(out_root)
    results_root = Path(results_dir) if results_dir is not None else out_root
    prediction, mpp = _scored_prediction(slide_path, results_root, mpp)
    info = prediction.info
    chosen = select_tiles(prediction.tiles, tiles)
    backend = info.get("slide_backend") or "auto"  # read the pixels the prediction read
    with open_slide(slide_path, mpp=mpp, backend=backend) as slide:
        slide.require_mpp()
        records = _inspect_chosen(slide, chosen, config, workers, progress, cancel)
        markers = markers_frame(chosen, records)
        scores = pd.Series(chosen["score"].to_numpy(np.float64), index=chosen["tile_id"])
        context = _export_context(slide, info)
        summary = _summary(markers, scores, records, config, info, tiles, started)
        slide_dir = path_inside(out_root, slide.slide_id)
        _write_outputs(slide_dir, markers, records, scores, summary, context)
        summary = _json_ready(summary)
    return SlideInspection(
        slide_id=slide.slide_id,
        out_dir=slide_dir,
        markers=markers,
        summary=summary,
        n_cells=sum(len(r.cell_table) for r in records),
        seconds=time.perf_counter() - started,
    )


def _path_text(path: str | os.PathLike[str] | None) -> str | None:
    """A user's path, absolute (it is recorded in markers_summary.json)."""
    from napari_imilia.trust.paths import absolute_path

    return None if path is None or not os.fspath(path) else str(absolute_path(path))


def _scored_prediction(
    slide_path: str | os.PathLike[str], results_root: Path, mpp: float | None
) -> tuple[Any, float | None]:
    """The slide's prediction in ``results_root`` and the level-0 µm/px to inspect at:
    ``mpp``, else the one the prediction used when it was overridden (None: the slide's)."""
    from napari_imilia.slide import open_slide

    with open_slide(slide_path, mpp=mpp) as probe_slide:
        prediction = _prediction_for(probe_slide, results_root)
    info = prediction.info
    if mpp is None and info.get("mpp_source") == "override":
        mpp = float(info["mpp"])
    return prediction, mpp


def _inspect_chosen(
    slide: Any,
    chosen: pd.DataFrame,
    config: InspectConfig,
    workers: int | None,
    progress: bool | ProgressCallback,
    cancel: threading.Event | None,
) -> list[TileRecord]:
    """``inspect_tiles`` over the chosen tiles with ``progress`` (a tqdm bar when True)."""
    callback, bar = _progress(progress, len(chosen), slide.slide_id)
    try:
        records = inspect_tiles(
            slide, chosen, config, workers=workers, progress=callback, cancel=cancel
        )
    finally:
        if bar is not None:
            bar.close()
    check_cancel(cancel)
    return records


def _progress(
    progress: bool | ProgressCallback, total: int, slide_id: str
) -> tuple[ProgressCallback | None, Any]:
    if callable(progress):
        return progress, None
    if not progress:
        return None, None
    from tqdm.auto import tqdm

    bar = tqdm(total=total, unit="tile", desc=f"inspect {slide_id}", dynamic_ncols=True)

    def update(done: int, _total: int) -> None:
        bar.update(done - bar.n)

    return update, bar


def markers_frame(chosen: pd.DataFrame, records: Sequence[TileRecord]) -> pd.DataFrame:
    """``markers.csv``'s table: tile_id, score, rank, ``marker_columns()``, flags."""
    from napari_imilia.interpret.markers import marker_columns

    columns = marker_columns()
    rows = []
    for (_, tile), record in zip(chosen.iterrows(), records, strict=True):
        if str(tile["tile_id"]) != record.tile_id:
            raise ImiliaError(f"internal: tile {tile['tile_id']} came back as {record.tile_id}")
        row = {"tile_id": record.tile_id, "score": float(tile["score"])}
        row["rank"] = int(tile["rank"]) if "rank" in tile and pd.notna(tile["rank"]) else -1
        row.update(record.markers)
        row["flags"] = ";".join(record.flags)
        rows.append(row)
    return pd.DataFrame(rows, columns=["tile_id", "score", "rank", *columns[1:], "flags"])


def _export_context(slide: Any, info: dict[str, Any]) -> ExportContext:
    return ExportContext(
        slide_id=slide.slide_id,
        slide_path=str(slide.path),
        model_name=str(info.get("model", "")),
        model_sha256=str(info.get("model_sha256", "")),
        extractor=str(info.get("extractor", "")),
        mpp=float(slide.require_mpp()),
        tile_px=int(info.get("tile_px", 0) or 0),
    )


def _json_ready(value: Any) -> Any:
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    return value


def _summary(
    markers: pd.DataFrame,
    scores: pd.Series,
    records: Sequence[TileRecord],
    config: InspectConfig,
    info: dict[str, Any],
    spec: str,
    started: float,
) -> dict[str, Any]:
    from napari_imilia.interpret.markers import marker_score_summary

    summary = marker_score_summary(markers.drop(columns=["score", "rank", "flags"]), scores)
    flags: dict[str, int] = {}
    for record in records:
        for flag in record.flags:
            flags[flag] = flags.get(flag, 0) + 1
    summary.update(
        {
            "slide_id": info.get("slide_id"),
            "tiles": spec,
            "n_cells": int(sum(len(r.cell_table) for r in records)),
            "flags": flags,
            "model": info.get("model"),
            "model_sha256": info.get("model_sha256"),
            "slide_score": info.get("score"),
            **config.describe(),
            "seconds": round(time.perf_counter() - started, 3),
            "software": f"napari-imilia {__version__}",
            "coordinates": "level-0 pixels, (x, y), top-left origin",
        }
    )
    return summary


def _epithelium_objects(
    records: Sequence[TileRecord], slide_id: str, level0_mpp: float
) -> list[dict[str, Any]]:
    """Epithelium polygons of every tile as QuPath annotations (area in µm²)."""
    objects: list[dict[str, Any]] = []
    for record in records:
        if record.epithelium_polygons:
            objects += epithelium_to_features(
                record.epithelium_polygons,
                slide_id=slide_id,
                tile_id=record.tile_id,
                mpp=level0_mpp,
            )
    return objects


def _write_outputs(
    slide_dir: Path,
    markers: pd.DataFrame,
    records: Sequence[TileRecord],
    scores: pd.Series,
    summary: dict[str, Any],
    context: ExportContext,
) -> None:
    """Write ``INSPECT_FILES`` into a staging folder, then move them into ``slide_dir``."""
    from napari_imilia.interpret.markers import plot_marker_summary

    slide_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".inspect-", dir=slide_dir))
    try:
        write_text_atomic(staging / "markers.csv", markers.to_csv(index=False, float_format="%.6g"))
        tables = [r.cell_table for r in records if len(r.cell_table)]
        table = pd.concat(tables, ignore_index=True) if tables else None
        contours = [c for r in records for c in r.contours]
        cells = [] if table is None else cells_to_features(table, context, contours=contours)
        write_geojson(staging / "cells.geojson", cells, context)
        epithelium = _epithelium_objects(records, context.slide_id, context.mpp)
        write_geojson(staging / "epithelium.geojson", epithelium, context)
        plot_marker_summary(
            summary,
            markers.drop(columns=["score", "rank", "flags"]),
            scores,
            staging / "markers_vs_score.png",
        )
        ready = _json_ready(summary)  # NaN (e.g. rho of a constant marker) -> null
        text = json.dumps(ready, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
        write_text_atomic(staging / "markers_summary.json", text)
        (slide_dir / "markers_summary.json").unlink(missing_ok=True)
        for name in INSPECT_FILES:
            (staging / name).replace(slide_dir / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
