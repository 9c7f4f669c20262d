"""Scoring many slides: in this process, or on dask.distributed (a LocalCluster by default,
or an existing scheduler when its address is given). Each slide is one task; a slide that
fails is reported in the summary table and does not stop the others.

``predict_cohort`` reads as its steps: plan the run on the client (slides found, paths made
absolute, settings built, the model loaded so a bad checkpoint, a bad scheduler address, an
unreachable scheduler or one without workers fail before anything is written), take the
slides whose complete result was made with the same settings (the one reuse rule,
``force=True`` recomputes them), run the others, and merge the table into ``OUT/cohort.csv``
(one row per slide, the newest result wins, rebuilt from what the slide folders hold), also
when the run is interrupted or loses its scheduler: then it holds the slides that finished.
The whole run holds ``OUT``'s run lock (:mod:`~napari_imilia.predict.lock`): one run writes
into a results folder at a time. Each slide has a time limit, and on a cluster the client
watches the workers' heartbeats (:mod:`~napari_imilia.cohort.guard`,
:mod:`~napari_imilia.cohort.watch`): no fault leaves the run waiting forever.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from napari_imilia.cohort.cluster import RunClient, SchedulerLost
from napari_imilia.cohort.guard import slide_guard
from napari_imilia.cohort.inputs import (
    absolute_options,
    check_scheduler_address,
    check_unique_slide_ids,
)
from napari_imilia.cohort.summary import (
    SUMMARY_COLUMNS,
    ok_row,
    remove_stray_files,
    rows_from_folders,
    summary_table,
    write_cohort_csv,
)
from napari_imilia.cohort.task import error_row, predict_row, predict_task
from napari_imilia.cohort.watch import WORKER_TIMEOUT_S
from napari_imilia.errors import ImiliaError
from napari_imilia.predict.lock import run_lock
from napari_imilia.predict.results import reusable_result
from napari_imilia.predict.settings import PredictSettings, keyword_alias, settings_from
from napari_imilia.progress import RunProgress
from napari_imilia.trust.paths import absolute_path, check_writable_folder

__all__ = [
    "SUMMARY_COLUMNS",
    "CohortInterrupted",
    "CohortProgress",
    "predict_cohort",
]

ResultCallback = Callable[[dict[str, Any]], None]
ProgressCallback = Callable[[RunProgress], None]
#: The progress ``predict_cohort`` reports: :class:`~napari_imilia.progress.RunProgress`.
CohortProgress = RunProgress
#: Seconds a run waits for the scheduler to answer and for a first worker (and, while slides
#: run, for a worker to come back when none is left).
SCHEDULER_TIMEOUT_S = 30.0
#: Seconds one slide may run by default (``--slide-timeout``): hours of CPU for the largest.
SLIDE_TIMEOUT_S = 6 * 3600.0


@dataclass(frozen=True)
class RunLimits:
    """How long a run waits for what: the scheduler and a worker (``scheduler_timeout_s``),
    one slide (``slide_timeout_s``, None or 0: no limit), a silent worker
    (``worker_timeout_s``) before it is taken for frozen."""

    scheduler_timeout_s: float = SCHEDULER_TIMEOUT_S
    slide_timeout_s: float | None = SLIDE_TIMEOUT_S
    worker_timeout_s: float = WORKER_TIMEOUT_S


class CohortInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a cohort run; ``table`` holds the slides that finished (also written
    to ``cohort.csv``)."""

    def __init__(self, table: pd.DataFrame) -> None:
        super().__init__(f"interrupted after {len(table)} slide(s)")
        self.table = table


def predict_cohort(
    slides: Sequence[str | Path],
    out_dir: str | Path,
    *,
    settings: PredictSettings | None = None,
    scheduler: str | None = None,
    cluster_workers: int | None = None,
    processes: bool = True,
    on_result: ResultCallback | None = None,
    on_progress: ProgressCallback | None = None,
    force: bool = False,
    scheduler_timeout_s: float = SCHEDULER_TIMEOUT_S,
    cancel: threading.Event | None = None,
    n_workers: int | None = None,
    slide_timeout_s: float | None = SLIDE_TIMEOUT_S,
    worker_timeout_s: float = WORKER_TIMEOUT_S,
    lock_wait_s: float = 0.0,
    **options: Any,
) -> pd.DataFrame:
    """Score ``slides`` (anything :func:`~napari_imilia.slide.discover.discover_slides`
    takes: files, folders searched recursively, glob patterns, CSVs); returns this run's table
    (columns :data:`SUMMARY_COLUMNS`, in the order found; ``status`` is ``ok`` or ``error``)
    after merging it into ``out_dir/cohort.csv``.

    ``settings`` (or the setting keywords of ``predict_slide`` among ``options``) decide the
    results; the other ``options`` go to ``predict_slide`` (device, batch_size,
    decode_workers, cache_dir...). With neither ``scheduler`` nor ``cluster_workers`` (old
    name ``n_workers``; 1 is the same) slides run here one after the other, sharing one
    loaded model. Otherwise each slide is a dask.distributed task on the scheduler at
    ``scheduler`` (``tcp://host:port``) or on a ``LocalCluster(cluster_workers)`` of
    single-threaded workers (processes, or threads of this process with
    ``processes=False``); options must then be picklable (paths, not loaded models). The
    model is loaded here first either way, so a bad checkpoint fails at once with
    ``ImiliaError``; so do a malformed address, and a scheduler that does not answer or has no
    worker within ``scheduler_timeout_s`` seconds.

    A slide whose result in ``out_dir`` is reusable
    (:func:`~napari_imilia.predict.results.reusable_result`) is not computed again unless
    ``force``. ``on_result(row)`` is called as each slide ends (reused ones with
    ``row["reused"] = True``), ``on_progress`` with a :class:`~napari_imilia.progress.RunProgress`
    at the start, after each slide and, on a cluster, every half second. Setting ``cancel``
    stops the run (running slides stop between tile batches) and returns the slides that
    finished; Ctrl-C does the same and raises :class:`CohortInterrupted`.

    ``out_dir``'s run lock is held from before reuse is decided until ``cohort.csv`` is
    written: while another run writes there, this one waits ``lock_wait_s`` seconds at most,
    then raises ``FolderBusyError``. A slide running longer than ``slide_timeout_s`` seconds
    (None or 0: no limit) stops and is an error; on a cluster, a worker whose heartbeat stops
    for ``worker_timeout_s`` seconds is removed and its slides run on another. Losing the
    scheduler raises :class:`~napari_imilia.cohort.cluster.SchedulerLost` (an
    ``ImiliaError``) once ``cohort.csv`` lists the slides that finished.
    """
    cluster_workers = keyword_alias(cluster_workers, n_workers, "n_workers", "cluster_workers")
    run = plan_run(slides, out_dir, settings, options, scheduler, cluster_workers)
    limits = RunLimits(scheduler_timeout_s, slide_timeout_s, worker_timeout_s)
    cluster = RunClient(run.address, cluster_workers, processes, limits.scheduler_timeout_s)
    if run.distributed and reusable_rows(run, force)[1]:
        cluster.connect()  # a bad or empty cluster fails before any file is made
    stopped: BaseException | None = None
    try:
        with run_lock(run.out, wait_s=lock_wait_s):
            reused, todo = reusable_rows(run, force)  # again: another run may have ended
            tally = _Tally(len(run.paths), on_result, on_progress)
            run_start_s = time.time()
            try:
                run_slides(run, reused, todo, tally, cluster, limits, cancel)
            except (KeyboardInterrupt, SchedulerLost) as error:
                stopped = error
            table = write_table(run, tally.rows, todo, since_s=run_start_s)
    finally:
        cluster.close()
    if isinstance(stopped, KeyboardInterrupt):
        raise CohortInterrupted(table)
    if stopped is not None:
        n_ok = int((table["status"] == "ok").sum())
        raise SchedulerLost(
            f"{stopped}; cohort.csv lists the {n_ok} of {len(run.paths)} slides that finished "
            "(run again for the others: finished slides are reused)"
        ) from stopped
    return table


@dataclass
class CohortRun:
    """A run planned on the client: the slides (absolute paths), the output folder, the
    settings each slide's task gets (as asked, paths absolute), the same settings resolved
    against the model loaded here (what the reuse rule compares), ``predict_slide``'s other
    options (with the loaded model and extractor when slides run here) and where they run."""

    paths: list[str]
    out: Path
    settings: PredictSettings
    expected: PredictSettings
    options: dict[str, Any]
    address: str | None
    distributed: bool

    @property
    def cache_dir(self) -> Path:
        cache = self.options.get("cache_dir")
        return Path(cache) if cache else self.out / "features"

    @property
    def slide_ids(self) -> list[str]:
        from napari_imilia.slide import slide_id_for

        return [slide_id_for(s) for s in self.paths]


def plan_run(
    slides: Sequence[str | Path],
    out_dir: str | Path,
    settings: PredictSettings | None,
    options: dict[str, Any],
    scheduler: str | None,
    cluster_workers: int | None,
) -> CohortRun:
    """Check everything the run is given and load the model (see :func:`predict_cohort`)."""
    from napari_imilia.predict.slide import load_models
    from napari_imilia.slide.discover import discover_slides

    paths = [found.path for found in discover_slides(slides, strict=False)]
    check_unique_slide_ids(paths)
    out = absolute_path(out_dir)
    check_writable_folder(out)
    options = dict(options)
    settings = settings_from(settings, options).absolute()
    options = absolute_options(options)
    address = check_scheduler_address(scheduler) if scheduler else None
    distributed = address is not None or (cluster_workers is not None and cluster_workers > 1)
    if distributed:
        model, extractor = _check_model(settings, options, local=address is None), None
    else:
        model, extractor = load_models(
            settings,
            model=options.pop("model", None),
            extractor=options.pop("extractor", None),
            device=options.get("device", "auto"),
            batch_size=options.get("batch_size", 32),
        )
        options.update(model=model, extractor=extractor)
    expected = settings.resolve(model, extractor)
    return CohortRun(paths, out, settings, expected, options, address, distributed)


def _check_model(settings: PredictSettings, options: dict[str, Any], *, local: bool) -> Any:
    """Load the model once on the CPU so a missing or bad checkpoint fails before any task
    (returned, for its sha256); with ``local`` workers (a LocalCluster) check the device too."""
    from napari_imilia.device import resolve_device
    from napari_imilia.predict.slide import load_mil_model

    if options.get("model") is not None or options.get("extractor") is not None:
        raise ImiliaError(
            "loaded models and extractors cannot be sent to dask workers; pass model_path "
            "and extractor_name instead"
        )
    if local:  # remote workers may have the GPU this machine lacks
        resolve_device(options.get("device", "auto"))
    return load_mil_model(settings, device="cpu")


def reusable_rows(run: CohortRun, force: bool) -> tuple[list[dict[str, Any]], list[str]]:
    """(rows of the slides whose result is reused, the slides to compute)."""
    if force:
        return [], list(run.paths)
    found = [reusable_result(s, run.out, run.expected) for s in run.paths]
    reused = [
        {**ok_row(s, info), "reused": True}
        for s, info in zip(run.paths, found, strict=True)
        if info
    ]
    todo = [s for s, info in zip(run.paths, found, strict=True) if info is None]
    return reused, todo


class _Tally:
    """The rows of a run as they end, passed on to ``on_result``, and its progress."""

    def __init__(
        self, total: int, on_result: ResultCallback | None, on_progress: ProgressCallback | None
    ) -> None:
        self.total, self.on_result, self.on_progress = total, on_result, on_progress
        self.rows: list[dict[str, Any]] = []
        self.failed = self.reused = 0
        self.started = time.monotonic()

    def restart_clock(self) -> None:
        self.started = time.monotonic()

    def report(self) -> None:
        if self.on_progress:
            elapsed_s = time.monotonic() - self.started
            done = len(self.rows)
            self.on_progress(RunProgress(self.total, done, self.failed, self.reused, elapsed_s))

    def finished(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self.failed += row["status"] != "ok"
        self.reused += bool(row.get("reused"))
        if self.on_result:
            self.on_result(row)
        self.report()


def run_slides(
    run: CohortRun,
    reused: list[dict[str, Any]],
    todo: list[str],
    tally: _Tally,
    cluster: RunClient,
    limits: RunLimits,
    cancel: threading.Event | None,
) -> None:
    """Report the reused slides, then compute the others here or on the cluster; what an
    interrupted run left for these slides is removed before and after."""
    from napari_imilia.cohort.cluster import run_tasks

    client = cluster.connect() if run.distributed and todo else None
    try:
        run.out.mkdir(parents=True, exist_ok=True)
        remove_stray_files(run.out, run.cache_dir, run.slide_ids)  # of an earlier run
        tally.report()
        for row in reused:
            tally.finished(row)
        tally.restart_clock()
        if client is not None:
            options = {**run.options, "progress": False}
            run_tasks(
                client,
                predict_task,
                todo,
                (str(run.out), run.settings, options, limits.slide_timeout_s),
                uuid.uuid4().hex[:12],  # task keys unique per run, even on a shared scheduler
                on_row=tally.finished,
                on_tick=tally.report,
                error_row=error_row,
                cancel=cancel,
                workerless_s=limits.scheduler_timeout_s,
                liveness_s=limits.worker_timeout_s,
                slide_timeout_s=limits.slide_timeout_s,
            )
        else:
            _run_here(run, todo, tally, cancel, limits.slide_timeout_s)
    finally:
        if run.out.is_dir():
            remove_stray_files(run.out, run.cache_dir, run.slide_ids)  # of slides stopped


def _run_here(
    run: CohortRun,
    todo: list[str],
    tally: _Tally,
    cancel: threading.Event | None,
    time_limit_s: float | None,
) -> None:
    for slide in todo:
        if cancel is not None and cancel.is_set():
            break
        with slide_guard(None, time_limit_s, cancel) as stop:
            row = predict_row(slide, str(run.out), run.settings, run.options, stop)
        if row["status"] != "cancelled":
            tally.finished(row)


def write_table(
    run: CohortRun, rows: list[dict[str, Any]], todo: list[str], since_s: float
) -> pd.DataFrame:
    """This run's table (also slides whose result was written during the run, since
    ``since_s`` epoch seconds, though their answer never came back: the run was stopped
    meanwhile), merged into ``cohort.csv``. Scores are those the slide folders hold now."""
    rows = rows_from_folders(run.out, rows)
    if len(rows) < len(run.paths):
        seen = {row["slide"] for row in rows}
        for slide in (s for s in todo if s not in seen):
            info = reusable_result(slide, run.out, run.expected, since_s=since_s)
            if info is not None:
                rows = [*rows, ok_row(slide, info)]
    table = summary_table([{n: row.get(n) for n in SUMMARY_COLUMNS} for row in rows], run.paths)
    write_cohort_csv(run.out, table)
    return table
