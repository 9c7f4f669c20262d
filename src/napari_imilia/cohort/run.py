"""Scoring many slides: in this process, or on dask.distributed (a LocalCluster by default,
or an existing scheduler when its address is given). Each slide is one task; a slide that
fails is reported in the summary table and does not stop the others.

Paths are made absolute here before any task is sent (workers run in other folders); a bad
scheduler address, an unreachable scheduler or one without workers fail before anything is
written. Slides whose complete result was made with the same model, extractor and settings
are reused (``force=True`` recomputes them). ``OUT/cohort.csv`` is merged with the one a
previous run wrote (one row per slide, the newest result wins), also when the run is
interrupted: then it holds the slides that finished.
"""

from __future__ import annotations

import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from napari_imilia.cohort.inputs import (
    absolute,
    absolute_options,
    check_scheduler_address,
    collect_slides,
)
from napari_imilia.errors import ImiliaError
from napari_imilia.predict.results import (
    SUMMARY_COLUMNS,
    completed_row,
    expected_settings,
    remove_stray_files,
    summary_table,
    write_summary,
)
from napari_imilia.trust.paths import check_writable_folder

__all__ = [
    "SUMMARY_COLUMNS",
    "CohortInterrupted",
    "CohortProgress",
    "check_unique_slide_ids",
    "collect_slides",
    "predict_cohort",
]

ResultCallback = Callable[[dict[str, Any]], None]
#: Seconds a run waits for the scheduler to answer and for a first worker (and, while slides
#: run, for a worker to come back when none is left).
SCHEDULER_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class CohortProgress:
    """Where a cohort run stands: slides ``done`` of ``total`` (``failed`` and ``reused``
    included), ``elapsed_s`` seconds since slides started."""

    total: int
    done: int = 0
    failed: int = 0
    reused: int = 0
    elapsed_s: float = 0.0

    @property
    def slides_per_min(self) -> float:
        """Slides computed (not reused) per minute so far; 0 before the first."""
        computed = self.done - self.reused
        return 60.0 * computed / self.elapsed_s if computed and self.elapsed_s > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the rate so far; None before the first computed slide."""
        rate = self.slides_per_min
        return 60.0 * (self.total - self.done) / rate if rate else None


ProgressCallback = Callable[[CohortProgress], None]


class CohortInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a cohort run; ``table`` holds the slides that finished (also written
    to ``cohort.csv``)."""

    def __init__(self, table: pd.DataFrame) -> None:
        super().__init__(f"interrupted after {len(table)} slide(s)")
        self.table = table


def _error_row(slide: str, error: BaseException) -> dict[str, Any]:
    from napari_imilia.slide import slide_id_for

    if isinstance(error, ImiliaError):
        detail = str(error)
    else:  # a bug or an unexpected file: keep the cohort going, say what it was
        detail = traceback.format_exception_only(type(error), error)[-1].strip()
    return {"slide": slide, "slide_id": slide_id_for(slide), "status": "error", "error": detail}


def _predict_row(
    slide: str, out_dir: str, options: dict[str, Any], cancel: threading.Event | None
) -> dict[str, Any]:
    """Run ``predict_slide`` for one slide and turn the outcome into one summary row
    (status ``cancelled`` when ``cancel`` stopped it)."""
    from napari_imilia.predict.slide import predict_slide

    try:
        result = predict_slide(slide, out_dir, cancel=cancel, **options)
    except Exception as error:
        if cancel is not None and cancel.is_set():
            return {**_error_row(slide, error), "status": "cancelled"}
        return _error_row(slide, error)
    return {
        "slide": slide,
        "slide_id": result.slide_id,
        "status": "ok",
        "score": result.score,
        "n_tiles": int(result.info["n_tiles"]),
    }


def _predict_task(slide: str, out_dir: str, options: dict[str, Any], run_id: str) -> dict:
    """One slide on a dask worker; stops when the client cancels ``run_id``."""
    from napari_imilia.cohort.cluster import run_cancel_event

    with run_cancel_event(run_id) as cancel:
        return _predict_row(slide, out_dir, options, cancel)


def check_unique_slide_ids(slides: Sequence[str | Path]) -> None:
    """Raise ``ImiliaError`` when two slides would write the same ``OUT/<slide_id>``."""
    from napari_imilia.slide import slide_id_for

    counts = Counter(slide_id_for(s) for s in slides)
    clashes = sorted(name for name, n in counts.items() if n > 1)
    if clashes:
        paths = [str(s) for s in slides if slide_id_for(s) in clashes]
        raise ImiliaError(
            f"slides share the slide id(s) {', '.join(clashes)} (file name without extension), "
            f"so their results and feature caches would overwrite each other: {paths[:6]}; "
            "rename them or score them into different --out folders"
        )


def predict_cohort(
    slides: Sequence[str | Path],
    out_dir: str | Path,
    *,
    scheduler: str | None = None,
    n_workers: int | None = None,
    processes: bool = True,
    on_result: ResultCallback | None = None,
    on_progress: ProgressCallback | None = None,
    force: bool = False,
    scheduler_timeout_s: float = SCHEDULER_TIMEOUT_S,
    cancel: threading.Event | None = None,
    **options: Any,
) -> pd.DataFrame:
    """Score ``slides`` (files, folders searched recursively, glob patterns); returns this
    run's table (columns :data:`SUMMARY_COLUMNS`, in the order given; ``status`` is ``ok`` or
    ``error``) after merging it into ``out_dir/cohort.csv``.

    With neither ``scheduler`` nor ``n_workers`` (or ``n_workers == 1``) slides run here one
    after the other, sharing one loaded model. Otherwise each slide is a dask.distributed task
    on the scheduler at ``scheduler`` (``tcp://host:port``) or on a ``LocalCluster(n_workers)``
    of single-threaded workers (processes, or threads of this process with
    ``processes=False``); ``options`` go to ``predict_slide`` and must be picklable (paths,
    not loaded models). The model is loaded here first either way, so a bad checkpoint fails
    at once with ``ImiliaError``; so do a malformed address, and a scheduler that does not
    answer or has no worker within ``scheduler_timeout_s`` seconds.

    A slide whose result in ``out_dir`` is complete and was made with the same model,
    extractor and settings is not computed again unless ``force``. ``on_result(row)`` is
    called as each slide ends (reused ones with ``row["reused"] = True``), ``on_progress``
    with a :class:`CohortProgress` at the start, after each slide and, on a cluster, every
    half second. Setting ``cancel`` stops the run (running slides stop between tile batches)
    and returns the slides that finished; Ctrl-C does the same and raises
    :class:`CohortInterrupted`.
    """
    paths = [str(p) for p in collect_slides(slides)]
    check_unique_slide_ids(paths)
    out = absolute(out_dir)
    check_writable_folder(out)
    options = absolute_options(options)
    address = check_scheduler_address(scheduler) if scheduler else None
    distributed = address is not None or (n_workers is not None and n_workers > 1)
    asked = options
    if distributed:
        model = _check_model(options, local=address is None)
    else:
        options = _preload(options)
        model = options["model"]

    reused: list[dict[str, Any]] = []
    todo = list(paths)
    expected = None
    if getattr(model, "sha256", None):  # a model built in memory: no reuse
        expected = expected_settings(model, asked, extractor=options.get("extractor"))
    if expected is not None and not force:
        found = [completed_row(Path(s), out, expected) for s in paths]
        reused = [{**row, "reused": True} for row in found if row is not None]
        todo = [s for s, row in zip(paths, found, strict=True) if row is None]

    state = {"done": 0, "failed": 0, "reused": 0}
    started = time.monotonic()

    def progress() -> None:
        if on_progress:
            elapsed = time.monotonic() - started
            on_progress(CohortProgress(len(paths), elapsed_s=elapsed, **state))

    def finished(row: dict[str, Any]) -> None:
        state["done"] += 1
        state["failed"] += row["status"] != "ok"
        state["reused"] += bool(row.get("reused"))
        rows.append(row)
        if on_result:
            on_result(row)
        progress()

    client = cluster = None
    if distributed and todo:
        from napari_imilia.cohort.cluster import connect

        client, cluster = connect(address, n_workers, processes, scheduler_timeout_s)
    from napari_imilia.slide import slide_id_for

    cache_dir = Path(options["cache_dir"]) if options.get("cache_dir") else out / "features"
    slide_ids = [slide_id_for(s) for s in paths]
    rows: list[dict[str, Any]] = []
    interrupted = False
    run_start_s = time.time()
    try:
        out.mkdir(parents=True, exist_ok=True)
        remove_stray_files(out, cache_dir, slide_ids)  # left by an interrupted earlier run
        progress()
        for row in reused:
            finished(row)
        started = time.monotonic()
        if client is not None:
            from napari_imilia.cohort.cluster import run_tasks

            run_tasks(
                client,
                _predict_task,
                todo,
                (str(out), {**options, "progress": False}),
                uuid.uuid4().hex[:12],  # task keys unique per run, even on a shared scheduler
                on_row=finished,
                on_tick=progress,
                error_row=_error_row,
                cancel=cancel,
                worker_timeout_s=scheduler_timeout_s,
            )
        else:
            for slide in todo:
                if cancel is not None and cancel.is_set():
                    break
                row = _predict_row(slide, str(out), options, cancel)
                if row["status"] != "cancelled":
                    finished(row)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
        if out.is_dir():
            remove_stray_files(out, cache_dir, slide_ids)  # of slides stopped or lost
    if expected is not None and len(rows) < len(paths):
        rows += _finished_unseen(todo, rows, out, expected, run_start_s)
    table = summary_table([_summary(row) for row in rows], paths)
    write_summary(out, table)
    if interrupted:
        raise CohortInterrupted(table)
    return table


def _finished_unseen(
    todo: list[str], rows: list[dict], out: Path, expected: dict[str, Any], since_s: float
) -> list[dict[str, Any]]:
    """Rows of slides whose complete result was written during this run (since ``since_s``,
    epoch seconds) though their answer never came back (the run was stopped meanwhile)."""
    seen = {row["slide"] for row in rows}
    found = [completed_row(Path(s), out, expected, since_s=since_s) for s in todo if s not in seen]
    return [row for row in found if row is not None]


def _summary(row: dict[str, Any]) -> dict[str, Any]:
    return {name: row.get(name) for name in SUMMARY_COLUMNS}


def _preload(options: dict[str, Any]) -> dict[str, Any]:
    """Load the model and extractor once for an in-process run over many slides."""
    from napari_imilia.features.extractors import create_extractor
    from napari_imilia.mil import load_model
    from napari_imilia.predict.slide import check_model_fits_extractor, default_model_path

    options = dict(options)
    device = options.get("device", "auto")
    model = options.pop("model", None)
    if model is None:
        model = load_model(options.pop("model_path", None) or default_model_path(), device=device)
    options.pop("model_path", None)
    name = options.pop("extractor_name", None) or model.expected_extractor
    weights = options.pop("extractor_weights", None)
    options["model"] = model
    if options.get("extractor") is None and name:
        options["extractor"] = create_extractor(
            name, weights_path=weights, device=device, batch_size=options.get("batch_size", 32)
        )
    if options.get("extractor") is not None:
        check_model_fits_extractor(model, options["extractor"])
    return options


def _check_model(options: dict[str, Any], *, local: bool) -> Any:
    """Load the model once on the CPU so a missing or bad checkpoint fails before any task
    (returned, for its sha256); with ``local`` workers (a LocalCluster) check the device too."""
    from napari_imilia.device import resolve_device
    from napari_imilia.mil import load_model
    from napari_imilia.predict.slide import default_model_path

    if options.get("model") is not None or options.get("extractor") is not None:
        raise ImiliaError(
            "loaded models and extractors cannot be sent to dask workers; pass model_path "
            "and extractor_name instead"
        )
    if local:  # remote workers may have the GPU this machine lacks
        resolve_device(options.get("device", "auto"))
    return load_model(options.get("model_path") or default_model_path(), device="cpu")
