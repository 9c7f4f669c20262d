"""Scoring many slides: in this process, or on dask.distributed (a LocalCluster by default,
or an existing scheduler when its address is given). Each slide is one task; a slide that
fails is reported in the summary table and does not stop the others.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from napari_imilia._utils import write_text_atomic
from napari_imilia.errors import ImiliaError

SUMMARY_COLUMNS: tuple[str, ...] = ("slide", "slide_id", "status", "score", "n_tiles", "error")


def _predict_task(slide: str, out_dir: str, options: dict[str, Any]) -> dict[str, Any]:
    """Run ``predict_slide`` for one slide and turn the outcome into one summary row."""
    from napari_imilia.predict import predict_slide

    try:
        result = predict_slide(slide, out_dir, **options)
    except ImiliaError as error:
        return {"slide": slide, "status": "error", "error": str(error)}
    except Exception as error:  # a bug or an unexpected file: keep the cohort going
        detail = traceback.format_exception_only(type(error), error)[-1].strip()
        return {"slide": slide, "status": "error", "error": detail}
    return {
        "slide": slide,
        "slide_id": result.slide_id,
        "status": "ok",
        "score": result.score,
        "n_tiles": result.info["n_tiles"],
    }


def predict_cohort(
    slides: Sequence[str | Path],
    out_dir: str | Path,
    *,
    scheduler: str | None = None,
    n_workers: int | None = None,
    on_result: Callable[[dict[str, Any]], None] | None = None,
    **options: Any,
) -> pd.DataFrame:
    """Score ``slides``; writes and returns ``out_dir/cohort.csv`` (one row per slide).

    With neither ``scheduler`` nor ``n_workers`` (or ``n_workers == 1``) slides run here one
    after the other, sharing one loaded model. Otherwise each slide is a dask.distributed task
    on the scheduler at ``scheduler`` or on a ``LocalCluster(n_workers)`` of single-threaded
    worker processes; ``options`` go to ``predict_slide`` and must be picklable (paths, not
    loaded models).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    slides = [str(Path(s)) for s in slides]
    rows: list[dict[str, Any]] = []
    if scheduler is None and (n_workers is None or n_workers <= 1):
        options = _preload(options)
        for slide in slides:
            row = _predict_task(slide, str(out_dir), options)
            rows.append(row)
            if on_result:
                on_result(row)
    else:
        rows = _run_distributed(slides, str(out_dir), options, scheduler, n_workers, on_result)
    order = {slide: i for i, slide in enumerate(slides)}
    table = pd.DataFrame(rows).reindex(columns=list(SUMMARY_COLUMNS))
    table = table.sort_values("slide", key=lambda col: col.map(order)).reset_index(drop=True)
    write_text_atomic(out_dir / "cohort.csv", table.to_csv(index=False))
    return table


def _preload(options: dict[str, Any]) -> dict[str, Any]:
    """Load the model and extractor once for an in-process run over many slides."""
    from napari_imilia.extractors import create_extractor
    from napari_imilia.mil import load_model
    from napari_imilia.predict import default_model_path

    options = dict(options)
    device = options.get("device", "auto")
    model = load_model(options.pop("model_path", None) or default_model_path(), device=device)
    name = options.pop("extractor_name", None) or model.expected_extractor
    weights = options.pop("extractor_weights", None)
    options["model"] = model
    if name:
        options["extractor"] = create_extractor(name, weights_path=weights, device=device)
    return options


def _run_distributed(
    slides: list[str],
    out_dir: str,
    options: dict[str, Any],
    scheduler: str | None,
    n_workers: int | None,
    on_result: Callable[[dict[str, Any]], None] | None,
) -> list[dict[str, Any]]:
    from distributed import Client, LocalCluster, as_completed

    options = {**options, "progress": False}
    cluster = None
    if scheduler:
        client = Client(scheduler)
    else:
        cluster = LocalCluster(
            n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None
        )
        client = Client(cluster)
    rows = []
    try:
        futures = [
            client.submit(_predict_task, slide, out_dir, options, key=f"imilia-predict-{i}")
            for i, slide in enumerate(slides)
        ]
        for future in as_completed(futures):
            row = future.result()
            rows.append(row)
            if on_result:
                on_result(row)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return rows
