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
import multiprocessing
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from shapely.geometry import Polygon

from napari_imilia import __version__
from napari_imilia._utils import write_text_atomic
from napari_imilia.errors import ImiliaError
from napari_imilia.inspect.tile import TileInspection
from napari_imilia.inspect.tools import InspectConfig, InspectTools

#: The files ``inspect_slide`` writes per slide, in the order they are moved into place.
INSPECT_FILES: tuple[str, ...] = (
    "markers.csv",
    "cells.geojson",
    "epithelium.geojson",
    "markers_vs_score.png",
    "markers_summary.json",
)
#: QuPath class and colour of the epithelium regions.
EPITHELIUM_CLASS = "Epithelium"
EPITHELIUM_COLOR: tuple[int, int, int] = (0, 255, 127)

ProgressCallback = Callable[[int, int], None]


# ----------------------------------------------------------------------------- tile choice
def select_tiles(tiles: pd.DataFrame, spec: str) -> pd.DataFrame:
    """Rows of a scored tile table chosen by ``spec``, in a fixed order, without repeats.

    ``spec`` is a comma-separated list of ``top:K`` (highest scores first), ``bottom:K``
    (lowest first), ``all`` (table order) and tile ids (``"448_224"``). ``ImiliaError``
    for an empty or malformed spec, K < 1, or ids the table lacks.
    """
    items = [item.strip() for item in str(spec).split(",") if item.strip()]
    if not items:
        raise ImiliaError("--tiles is empty; use top:50, bottom:50, all or tile ids (x_y)")
    ids = tiles["tile_id"].astype(str)
    order = tiles.assign(_pos=np.arange(len(tiles)))
    chosen: list[int] = []
    unknown: list[str] = []
    for item in items:
        head, sep, tail = item.partition(":")
        if item.lower() == "all":
            chosen.extend(range(len(tiles)))
        elif sep:
            chosen.extend(_ranked(order, head.strip().lower(), tail.strip(), item))
        else:
            hits = np.flatnonzero(ids.to_numpy() == item)
            if hits.size == 0:
                unknown.append(item)
            chosen.extend(hits[:1].tolist())
    if unknown:
        shown = ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise ImiliaError(
            f"--tiles names {len(unknown)} tile id(s) not in the prediction: {shown}; ids are "
            "level-0 x_y as in tiles.csv"
        )
    unique = list(dict.fromkeys(chosen))
    return tiles.iloc[unique].reset_index(drop=True)


def _ranked(order: pd.DataFrame, kind: str, count: str, item: str) -> list[int]:
    if kind not in ("top", "bottom"):
        raise ImiliaError(
            f"--tiles item {item!r} is not understood; use top:K, bottom:K, all or tile ids"
        )
    try:
        k = int(count)
    except ValueError:
        raise ImiliaError(f"--tiles item {item!r}: K must be a whole number") from None
    if k < 1:
        raise ImiliaError(f"--tiles item {item!r}: K must be at least 1")
    if "score" not in order.columns:
        raise ImiliaError("the prediction's tile table has no score column")
    ranked = order.sort_values("score", ascending=kind == "bottom", kind="mergesort")
    return ranked["_pos"].head(k).astype(int).tolist()


# ----------------------------------------------------------------------------- per-tile records
@dataclass
class TileRecord:
    """What the batch keeps of one inspection (no images): markers row, cells, polygons."""

    tile_id: str
    markers: dict[str, Any]
    cell_table: pd.DataFrame
    contours: list[np.ndarray]
    epithelium_polygons: list[Polygon]
    mpp: float
    flags: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @classmethod
    def from_inspection(cls, inspection: TileInspection) -> TileRecord:
        return cls(
            tile_id=inspection.tile_id,
            markers=inspection.markers.as_row(),
            cell_table=inspection.cells.table,
            contours=inspection.cells.contours,
            epithelium_polygons=inspection.epithelium_polygons,
            mpp=inspection.mpp,
            flags=list(inspection.flags),
            seconds=inspection.seconds,
        )


_WORKER: dict[str, Any] = {}


def _worker_init(slide_path: str, mpp: float | None, config: InspectConfig, threads: int) -> None:
    """Process-pool initializer: open the slide and create the tools once per process."""
    from napari_imilia.slide import open_slide

    if config.uses_deep_model:  # share the cores between the processes' torch threads
        import torch

        torch.set_num_threads(max(1, threads))
    slide = open_slide(slide_path, mpp=mpp)
    _WORKER.update(slide=slide, tools=InspectTools.load(config, slide))


def _worker_run(rows: list[dict[str, Any]]) -> list[TileRecord]:
    slide, tools = _WORKER["slide"], _WORKER["tools"]
    return [TileRecord.from_inspection(tools.inspect(slide, row)) for row in rows]


def _chunks(rows: list[dict[str, Any]], n_chunks: int) -> list[list[dict[str, Any]]]:
    size = max(1, math.ceil(len(rows) / max(1, n_chunks)))
    return [rows[i : i + size] for i in range(0, len(rows), size)]


#: Below this many tiles per extra process, starting processes costs more than it saves.
MIN_TILES_PER_WORKER = 16


def default_workers(config: InspectConfig, n_tiles: int) -> int:
    """All cores for the weight-free backends (a process costs ~1-2 s to start, so at least
    ``MIN_TILES_PER_WORKER`` tiles each); one process when a deep model runs (torch uses
    the cores or the GPU itself)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    wanted = 1 if config.uses_deep_model else int(cores or 1)
    return max(1, min(wanted, n_tiles // MIN_TILES_PER_WORKER))


def inspect_tiles(
    slide: Any,
    rows: pd.DataFrame,
    config: InspectConfig,
    *,
    workers: int | None = None,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> list[TileRecord]:
    """Inspect every row of a tile table; records in row order.

    ``workers`` > 1 runs a process pool (spawned, so safe from threaded hosts such as
    napari); 1 runs here with ``slide``. ``cancel`` stops between tiles (or chunks) with
    ``ImiliaError``.
    """
    records_in = rows.to_dict("records")
    n = len(records_in)
    workers = default_workers(config, n) if workers is None else max(1, min(int(workers), n))
    done: list[TileRecord] = []
    if workers <= 1:
        tools = InspectTools.load(config, slide)
        for row in records_in:
            _check_cancel(cancel)
            done.append(TileRecord.from_inspection(tools.inspect(slide, row)))
            if progress:
                progress(len(done), n)
        return done
    cores = os.cpu_count() or 1
    context = multiprocessing.get_context("spawn")
    chunks = _chunks(records_in, workers * 4)
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=context,
        initializer=_worker_init,
        initargs=(str(slide.path), _override_mpp(slide), config, max(1, cores // workers)),
    ) as pool:
        futures = [pool.submit(_worker_run, chunk) for chunk in chunks]
        try:
            for future in futures:  # in submission order: deterministic output
                _check_cancel(cancel)
                done.extend(future.result())
                if progress:
                    progress(len(done), n)
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    return done


def _override_mpp(slide: Any) -> float | None:
    return float(slide.mpp) if getattr(slide, "mpp_source", "") == "override" else None


def _check_cancel(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise ImiliaError("inspection cancelled; no file was written")


# ----------------------------------------------------------------------------- the slide
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
    from napari_imilia.predict import load_prediction

    folder = results_dir / slide.slide_id
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
    workers: int | None = None,
    progress: bool | ProgressCallback = False,
    cancel: threading.Event | None = None,
) -> SlideInspection:
    """Inspect the chosen tiles of a scored slide and write ``INSPECT_FILES``.

    ``results_dir`` (default ``out_dir``) holds ``imilia predict``'s ``<slide_id>/``
    folder; ``tiles`` is a ``select_tiles`` spec; the backend options are those of
    ``InspectConfig``; ``mpp`` overrides the slide's level-0 µm/px (default: the one the
    prediction used when it was overridden). ``workers``: processes (default: all cores
    for weight-free backends). ``progress``: True for a tqdm bar, or ``progress(done,
    total)``. Raises ``ImiliaError`` for anything the user can fix.
    """
    from napari_imilia.slide import open_slide

    started = time.perf_counter()
    config = InspectConfig(
        cell_backend=cell_backend,
        cell_checkpoint=None if cell_checkpoint is None else os.fspath(cell_checkpoint),
        histoplus_json=None if histoplus_json is None else os.fspath(histoplus_json),
        epithelium_method=epithelium_method,
        episeg_probe=None if episeg_probe is None else os.fspath(episeg_probe),
        episeg_extractor_weights=(
            None if episeg_extractor_weights is None else os.fspath(episeg_extractor_weights)
        ),
        device=device,
    )
    out_root = Path(out_dir)
    results_root = Path(results_dir) if results_dir is not None else out_root
    with open_slide(slide_path, mpp=mpp) as probe_slide:
        prediction = _prediction_for(probe_slide, results_root)
    info = prediction.info
    if mpp is None and info.get("mpp_source") == "override":
        mpp = float(info["mpp"])
    chosen = select_tiles(prediction.tiles, tiles)
    with open_slide(slide_path, mpp=mpp) as slide:
        slide.require_mpp()
        callback, bar = _progress(progress, len(chosen), slide.slide_id)
        try:
            records = inspect_tiles(
                slide, chosen, config, workers=workers, progress=callback, cancel=cancel
            )
        finally:
            if bar is not None:
                bar.close()
        _check_cancel(cancel)
        markers = markers_frame(chosen, records)
        scores = pd.Series(chosen["score"].to_numpy(np.float64), index=chosen["tile_id"])
        context = _export_context(slide, info)
        summary = _summary(markers, scores, records, config, info, tiles, started)
        slide_dir = out_root / slide.slide_id
        _write_outputs(slide_dir, markers, records, scores, summary, context)
    return SlideInspection(
        slide_id=slide.slide_id,
        out_dir=slide_dir,
        markers=markers,
        summary=summary,
        n_cells=sum(len(r.cell_table) for r in records),
        seconds=time.perf_counter() - started,
    )


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
    from napari_imilia.markers import marker_columns

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


def _export_context(slide: Any, info: dict[str, Any]) -> Any:
    from napari_imilia.export import ExportContext

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
    from napari_imilia.markers import marker_score_summary

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
    return _json_ready(summary)


def _epithelium_features(
    records: Sequence[TileRecord], slide_id: str, level0_mpp: float
) -> list[dict[str, Any]]:
    """Epithelium polygons of every tile as QuPath annotations (area in µm²)."""
    from napari_imilia.export import polygons_to_features

    features: list[dict[str, Any]] = []
    for record in records:
        if not record.epithelium_polygons:
            continue
        properties = [
            {
                "name": f"{EPITHELIUM_CLASS} {record.tile_id}",
                "measurements": {"Area µm^2": float(p.area * level0_mpp**2)},
                "metadata": {"tile_id": record.tile_id},
            }
            for p in record.epithelium_polygons
        ]
        features.extend(
            polygons_to_features(
                record.epithelium_polygons,
                object_type="annotation",
                class_name=EPITHELIUM_CLASS,
                color=EPITHELIUM_COLOR,
                properties=properties,
                id_seed=f"{slide_id}:{record.tile_id}",
            )
        )
    return features


def _write_outputs(
    slide_dir: Path,
    markers: pd.DataFrame,
    records: Sequence[TileRecord],
    scores: pd.Series,
    summary: dict[str, Any],
    context: Any,
) -> None:
    """Write ``INSPECT_FILES`` into a staging folder, then move them into ``slide_dir``."""
    from napari_imilia.export import cells_to_features, write_geojson
    from napari_imilia.markers import plot_marker_summary

    slide_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".inspect-", dir=slide_dir))
    try:
        write_text_atomic(staging / "markers.csv", markers.to_csv(index=False, float_format="%.6g"))
        tables = [r.cell_table for r in records if len(r.cell_table)]
        table = pd.concat(tables, ignore_index=True) if tables else None
        contours = [c for r in records for c in r.contours]
        cells = [] if table is None else cells_to_features(table, context, contours=contours)
        write_geojson(staging / "cells.geojson", cells, context)
        epithelium = _epithelium_features(records, context.slide_id, context.mpp)
        write_geojson(staging / "epithelium.geojson", epithelium, context)
        plot_marker_summary(
            summary,
            markers.drop(columns=["score", "rank", "flags"]),
            scores,
            staging / "markers_vs_score.png",
        )
        text = json.dumps(summary, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
        write_text_atomic(staging / "markers_summary.json", text)
        (slide_dir / "markers_summary.json").unlink(missing_ok=True)
        for name in INSPECT_FILES:
            (staging / name).replace(slide_dir / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
