"""Scoring many slides: in this process, or on dask.distributed (a LocalCluster by default,
or an existing scheduler when its address is given). Each slide is one task; a slide that
fails is reported in the summary table and does not stop the others.
"""

from __future__ import annotations

import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from napari_imilia._utils import write_text_atomic
from napari_imilia.errors import ImiliaError
from napari_imilia.safe_paths import check_writable_folder

SUMMARY_COLUMNS: tuple[str, ...] = ("slide", "slide_id", "status", "score", "n_tiles", "error")
ResultCallback = Callable[[dict[str, Any]], None]


def _error_row(slide: str, error: BaseException) -> dict[str, Any]:
    from napari_imilia.slide import slide_id_for

    if isinstance(error, ImiliaError):
        detail = str(error)
    else:  # a bug or an unexpected file: keep the cohort going, say what it was
        detail = traceback.format_exception_only(type(error), error)[-1].strip()
    return {"slide": slide, "slide_id": slide_id_for(slide), "status": "error", "error": detail}


def _predict_task(slide: str, out_dir: str, options: dict[str, Any]) -> dict[str, Any]:
    """Run ``predict_slide`` for one slide and turn the outcome into one summary row."""
    from napari_imilia.predict import predict_slide

    try:
        result = predict_slide(slide, out_dir, **options)
    except Exception as error:
        return _error_row(slide, error)
    return {
        "slide": slide,
        "slide_id": result.slide_id,
        "status": "ok",
        "score": result.score,
        "n_tiles": result.info["n_tiles"],
    }


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
    **options: Any,
) -> pd.DataFrame:
    """Score ``slides``; writes and returns ``out_dir/cohort.csv`` (one row per slide, in
    the order given, columns :data:`SUMMARY_COLUMNS`; ``status`` is ``ok`` or ``error``).

    With neither ``scheduler`` nor ``n_workers`` (or ``n_workers == 1``) slides run here one
    after the other, sharing one loaded model. Otherwise each slide is a dask.distributed task
    on the scheduler at ``scheduler`` or on a ``LocalCluster(n_workers)`` of single-threaded
    workers (processes, or threads of this process with ``processes=False``); ``options`` go
    to ``predict_slide`` and must be picklable (paths, not loaded models). The model is
    loaded here first either way, so a bad checkpoint fails at once with ``ImiliaError``.
    ``on_result(row)`` is called as each slide finishes.
    """
    if not slides:
        raise ImiliaError("no slides to score")
    slides = [str(Path(s)) for s in slides]
    check_unique_slide_ids(slides)
    out_dir = Path(out_dir)
    check_writable_folder(out_dir)
    if scheduler is None and (n_workers is None or n_workers <= 1):
        options = _preload(options)
        out_dir.mkdir(parents=True, exist_ok=True)
        rows = []
        for slide in slides:
            row = _predict_task(slide, str(out_dir), options)
            rows.append(row)
            if on_result:
                on_result(row)
    else:
        _check_model(options, local=scheduler is None)
        out_dir.mkdir(parents=True, exist_ok=True)
        rows = _run_distributed(
            slides, str(out_dir), options, scheduler, n_workers, processes, on_result
        )
    order = {slide: i for i, slide in enumerate(slides)}
    table = pd.DataFrame(rows).reindex(columns=list(SUMMARY_COLUMNS))
    table = table.sort_values("slide", key=lambda col: col.map(order)).reset_index(drop=True)
    write_text_atomic(out_dir / "cohort.csv", table.to_csv(index=False))
    return table


def _preload(options: dict[str, Any]) -> dict[str, Any]:
    """Load the model and extractor once for an in-process run over many slides."""
    from napari_imilia.extractors import create_extractor
    from napari_imilia.mil import load_model
    from napari_imilia.predict import check_model_fits_extractor, default_model_path

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


def _check_model(options: dict[str, Any], *, local: bool) -> None:
    """Load the model once on the CPU so a missing or bad checkpoint fails before any task;
    with ``local`` workers (a LocalCluster) check the device too."""
    from napari_imilia.device import resolve_device
    from napari_imilia.mil import load_model
    from napari_imilia.predict import default_model_path

    if options.get("model") is not None or options.get("extractor") is not None:
        raise ImiliaError(
            "loaded models and extractors cannot be sent to dask workers; pass model_path "
            "and extractor_name instead"
        )
    if local:  # remote workers may have the GPU this machine lacks
        resolve_device(options.get("device", "auto"))
    load_model(options.get("model_path") or default_model_path(), device="cpu")


def _run_distributed(
    slides: list[str],
    out_dir: str,
    options: dict[str, Any],
    scheduler: str | None,
    n_workers: int | None,
    processes: bool,
    on_result: ResultCallback | None,
) -> list[dict[str, Any]]:
    from distributed import Client, LocalCluster, as_completed

    options = {**options, "progress": False}
    cluster = None
    if scheduler:
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as error:
            raise ImiliaError(
                f"cannot reach the dask scheduler at {scheduler} ({error}); check the address "
                "(e.g. tcp://host:8786) and that the scheduler is running"
            ) from error
    else:
        cluster = LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=processes,
            dashboard_address=None,
        )
        client = Client(cluster)
    run_id = uuid.uuid4().hex[:12]  # task keys unique per run, even on a shared scheduler
    rows = []
    try:
        futures = {
            client.submit(_predict_task, slide, out_dir, options, key=f"imilia-{run_id}-{i}"): (
                slide
            )
            for i, slide in enumerate(slides)
        }
        for future in as_completed(futures):
            try:
                row = future.result()
            except Exception as error:  # the worker died (memory?) or the task was lost
                row = _error_row(futures[future], error)
            rows.append(row)
            if on_result:
                on_result(row)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return rows
