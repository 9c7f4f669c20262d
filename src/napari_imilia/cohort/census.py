"""The cell census of many slides: here one after the other, or on dask.distributed.

As ``run.predict_cohort``: slides found by the one slide finder, checked for clashing slide
ids, then each slide is one ``census_slide`` call, here (its tiles on worker processes) or a
task on a ``LocalCluster`` / an existing scheduler through ``cluster.run_tasks`` (faults,
cancel and Ctrl-C handled there; each worker inspects its slide in one process). A slide that
fails gets an error row and does not stop the others; ``OUT/cells_cohort.csv`` lists them.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from napari_imilia.cohort.inputs import check_scheduler_address, check_unique_slide_ids
from napari_imilia.cohort.task import error_row
from napari_imilia.files import write_text_atomic
from napari_imilia.interpret.census import CensusSettings, census_slide
from napari_imilia.trust.paths import absolute_path, check_writable_folder

CENSUS_TABLE = "cells_cohort.csv"
COLUMNS: tuple[str, ...] = ("slide", "slide_id", "status", "n_tiles", "n_cells", "reused", "error")
RowCallback = Callable[[dict[str, Any]], None]


def census_cohort(
    slides: Sequence[str | Path],
    out_dir: str | Path,
    settings: CensusSettings | None = None,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    cluster_workers: int | None = None,
    force: bool = False,
    on_row: RowCallback | None = None,
    slide_progress: Callable[[Any], None] | None = None,
    cancel: threading.Event | None = None,
    timeout_s: float = 30.0,
) -> pd.DataFrame:
    """Census of every slide ``slides`` names (files, folders, globs, CSVs) into
    ``out_dir``; returns the table also written to ``out_dir/cells_cohort.csv``.

    Without ``scheduler`` or ``cluster_workers`` > 1, slides run here in turn with
    ``workers`` processes each (``slide_progress`` gets each slide's ``RunProgress``);
    otherwise each slide is a task on the cluster (one process per slide).
    """
    from napari_imilia.slide.discover import discover_slides

    paths = [found.path for found in discover_slides(slides, strict=False)]
    check_unique_slide_ids(paths)
    out = absolute_path(out_dir)
    check_writable_folder(out)
    settings = settings or CensusSettings()
    rows: list[dict[str, Any]] = []

    def finished(row: dict[str, Any]) -> None:
        rows.append(row)
        if on_row is not None:
            on_row(row)

    address = check_scheduler_address(scheduler) if scheduler else None
    if address is None and not (cluster_workers and cluster_workers > 1):
        for path in paths:
            if cancel is not None and cancel.is_set():
                break
            finished(_census_row(path, str(out), settings, workers, force, slide_progress))
    else:
        from napari_imilia.cohort.cluster import connect, run_tasks

        client, cluster = connect(address, cluster_workers, True, timeout_s)
        try:
            run_tasks(
                client,
                _census_task,
                paths,
                (str(out), settings, force),
                uuid.uuid4().hex[:12],
                on_row=finished,
                on_tick=lambda: None,
                error_row=error_row,
                cancel=cancel,
                workerless_s=timeout_s,
            )
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    order = {p: i for i, p in enumerate(paths)}
    table = pd.DataFrame(sorted(rows, key=lambda r: order.get(r["slide"], 0)), columns=COLUMNS)
    write_text_atomic(out / CENSUS_TABLE, table.to_csv(index=False))
    return table


def _census_row(
    slide: str,
    out: str,
    settings: CensusSettings,
    workers: int | None,
    force: bool,
    progress: Callable[[Any], None] | None,
    cancel: threading.Event | None = None,
) -> dict[str, Any]:
    try:
        result = census_slide(
            slide, out, settings, workers=workers, force=force, progress=progress, cancel=cancel
        )
    except Exception as error:
        return error_row(slide, error)
    return {
        "slide": slide,
        "slide_id": result.slide_id,
        "status": "ok",
        "n_tiles": result.n_tiles,
        "n_cells": result.n_cells,
        "reused": result.reused,
        "error": "",
    }


def _census_task(
    slide: str, out: str, settings: CensusSettings, force: bool, run_id: str
) -> dict[str, Any]:
    """One slide on a dask worker (its tiles in that worker's process); stops when the client
    cancels ``run_id`` or nobody waits for it any more (:mod:`~napari_imilia.cohort.guard`)."""
    from napari_imilia.cohort.guard import slide_guard

    with slide_guard(run_id, None) as stop:
        return _census_row(slide, out, settings, 1, force, None, stop)
