"""One slide of a cohort run: ``predict_slide`` under the slide's guard, as one summary row.

The same function runs the slide in this process and on a dask worker
(:func:`predict_task`); ``out_dir``'s run lock is held by the run's client, not here.
"""

from __future__ import annotations

import traceback
from typing import Any

from napari_imilia.cohort.guard import SlideStop, slide_guard
from napari_imilia.cohort.summary import ok_row
from napari_imilia.errors import ImiliaError
from napari_imilia.predict.settings import PredictSettings


def predict_row(
    slide: str,
    out_dir: str,
    settings: PredictSettings,
    options: dict[str, Any],
    stop: SlideStop,
) -> dict[str, Any]:
    """Run ``predict_slide`` for one slide and turn the outcome into one summary row: an
    error row when it failed or its time limit ran out, status ``cancelled`` when ``stop``
    was set for any other reason (cancelled, or nobody waits for it any more)."""
    from napari_imilia.predict.slide import predict_slide

    try:
        result = predict_slide(
            slide, out_dir, settings=settings, cancel=stop, hold_run_lock=False, **options
        )
    except Exception as error:
        if stop.is_set() and stop.timed_out:
            return error_row(slide, ImiliaError(stop.reason or "stopped"))
        if stop.is_set():
            return {**error_row(slide, error), "status": "cancelled"}
        return error_row(slide, error)
    return ok_row(slide, result.info)


def predict_task(
    slide: str,
    out_dir: str,
    settings: PredictSettings,
    options: dict[str, Any],
    time_limit_s: float | None,
    run_id: str,
) -> dict[str, Any]:
    """One slide on a dask worker: stops when the client cancels ``run_id``, when its time
    limit runs out, and when nobody waits for it any more (:mod:`~napari_imilia.cohort.guard`)."""
    with slide_guard(run_id, time_limit_s) as stop:
        return predict_row(slide, out_dir, settings, options, stop)


def error_row(slide: str, error: BaseException) -> dict[str, Any]:
    """The summary row of a slide that failed with ``error`` (its message, one line)."""
    from napari_imilia.slide import slide_id_for

    if isinstance(error, ImiliaError):
        detail = str(error)
    else:  # a bug or an unexpected file: keep the cohort going, say what it was
        detail = traceback.format_exception_only(type(error), error)[-1].strip()
    return {"slide": slide, "slide_id": slide_id_for(slide), "status": "error", "error": detail}
