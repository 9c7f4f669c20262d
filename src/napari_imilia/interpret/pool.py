"""Inspecting many tiles: in this process, or on a pool of spawned worker processes.

Each worker opens the slide and creates the backends once (``_worker_init``), then inspects
chunks of tile rows; results come back as ``TileRecord`` (no images) in submission order.
Workers are started by :func:`napari_imilia.processes.process_context` (never running the
user's script) and end with the process that started them
(:func:`~napari_imilia.processes.watch_parent`).
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from shapely.geometry import Polygon

from napari_imilia.errors import ImiliaError
from napari_imilia.interpret.tile import TileInspection
from napari_imilia.interpret.tools import InspectConfig, InspectTools
from napari_imilia.processes import process_context, watch_parent

ProgressCallback = Callable[[int, int], None]
#: What a worker sends back of each ``TileInspection`` (a picklable module-level function).
RecordMaker = Callable[[TileInspection], Any]


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


def _worker_init(
    slide_path: str, mpp: float | None, config: InspectConfig, threads: int, backend: str
) -> None:
    """Process-pool initializer: open the slide (with the backend the caller used) and create
    the tools once per process."""
    from napari_imilia.slide import open_slide

    watch_parent()
    if config.uses_deep_model:  # share the cores between the processes' torch threads
        import torch

        torch.set_num_threads(max(1, threads))
    slide = open_slide(slide_path, mpp=mpp, backend=backend)
    _WORKER.update(slide=slide, tools=InspectTools.load(config, slide))


def _worker_run(
    rows: list[dict[str, Any]], record: RecordMaker = TileRecord.from_inspection
) -> list[Any]:
    slide, tools = _WORKER["slide"], _WORKER["tools"]
    return [record(r) for r in tools.inspect_many(slide, rows)]


def _chunks(rows: list[dict[str, Any]], n_chunks: int) -> list[list[dict[str, Any]]]:
    size = max(1, math.ceil(len(rows) / max(1, n_chunks)))
    return [rows[i : i + size] for i in range(0, len(rows), size)]


#: Tiles per batched cell-backend call (a deep backend shares its device batches).
BATCH_TILES = 8
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
    done: list[TileRecord] = []
    for batch in iter_tile_records(slide, rows, config, workers=workers, cancel=cancel):
        done.extend(batch)
        if progress:
            progress(len(done), len(rows))
    return done


def iter_tile_records(
    slide: Any,
    rows: pd.DataFrame | list[dict[str, Any]],
    config: InspectConfig,
    *,
    workers: int | None = None,
    cancel: threading.Event | None = None,
    record: RecordMaker = TileRecord.from_inspection,
) -> Iterator[list[Any]]:
    """``record(inspection)`` of every row, a batch (up to ``BATCH_TILES`` tiles) at a time,
    in row order, as the batches end: the streaming form of :func:`inspect_tiles` (same
    ``workers`` and ``cancel``), so a caller can write each batch before the next arrives."""
    records_in = rows.to_dict("records") if isinstance(rows, pd.DataFrame) else list(rows)
    n = len(records_in)
    if n == 0:
        return
    workers = default_workers(config, n) if workers is None else max(1, min(int(workers), n))
    if workers <= 1:
        tools = InspectTools.load(config, slide)
        for start in range(0, n, BATCH_TILES):
            check_cancel(cancel)
            yield [
                record(r)
                for r in tools.inspect_many(slide, records_in[start : start + BATCH_TILES])
            ]
        return
    cores = os.cpu_count() or 1
    context = process_context("spawn")
    chunks = [
        chunk[i : i + BATCH_TILES]
        for chunk in _chunks(records_in, workers * 4)
        for i in range(0, len(chunk), BATCH_TILES)
    ]
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=context,
        initializer=_worker_init,
        initargs=(
            str(slide.path),
            _override_mpp(slide),
            config,
            max(1, cores // workers),
            _backend_of(slide),
        ),
    ) as pool:
        futures: list[Any] = [pool.submit(_worker_run, chunk, record) for chunk in chunks]
        try:
            for i in range(len(futures)):  # in submission order: deterministic output
                check_cancel(cancel)
                batch = futures[i].result()
                futures[i] = None  # the caller has it: memory holds only batches ahead
                yield batch
        finally:  # an error, or a consumer that stops early (GeneratorExit): drop the queue
            for future in futures:
                if future is not None:
                    future.cancel()


def _backend_of(slide: Any) -> str:
    """The backend ``slide`` was opened with, for the workers to open it the same way."""
    from napari_imilia.slide import BACKEND_CHOICES

    backend = getattr(slide, "backend", "auto")
    return backend if backend in BACKEND_CHOICES else "auto"


def _override_mpp(slide: Any) -> float | None:
    return float(slide.mpp) if getattr(slide, "mpp_source", "") == "override" else None


def check_cancel(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise ImiliaError("inspection cancelled; no file was written")
