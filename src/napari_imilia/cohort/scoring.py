"""Score a cohort's unscored slides, with k of N progress, ETA and cancel (no Qt).

:func:`score_unscored` hands the slides to :func:`napari_imilia.cohort.run.predict_cohort` (in
this process, or on dask.distributed with ``n_workers`` / ``scheduler``) and records each
slide in the cohort as it finishes, so a table showing the cohort fills in as it goes. Cancel
takes effect between feature batches in this process, and between batches of slides on a
cluster; a slide stopped by cancel stays 'not scored' (its earlier result, if any, is kept).
At the end ``results_root/cohort.csv`` lists every slide of the cohort.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from napari_imilia.cohort.review import Cohort
from napari_imilia.files import write_text_atomic


@dataclass(frozen=True)
class ScoringProgress:
    """Where a cohort scoring run stands: ``done`` of ``total`` slides after ``elapsed_s``
    seconds; ``slide_id`` and ``status`` ('ok', 'error', 'cancelled') of the last one."""

    done: int
    total: int
    elapsed_s: float
    slide_id: str = ""
    status: str = ""
    cancelled: bool = False

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the mean pace so far (None before the first slide)."""
        if self.done <= 0:
            return None
        return self.elapsed_s / self.done * (self.total - self.done)

    def text(self) -> str:
        """'3 of 12 slides scored, about 1 min 20 s left'."""
        text = f"{self.done} of {self.total} slides scored"
        if self.cancelled:
            return text + " (cancelled)"
        eta = self.eta_s
        if eta is not None and self.done < self.total:
            minutes, seconds = divmod(round(eta), 60)
            text += (
                f", about {minutes} min {seconds} s left"
                if minutes
                else f", about {seconds} s left"
            )
        return text


ProgressCallback = Callable[[ScoringProgress], None]


def score_unscored(
    cohort: Cohort,
    *,
    cancel: threading.Event | None = None,
    on_progress: ProgressCallback | None = None,
    n_workers: int | None = None,
    scheduler: str | None = None,
    **options: Any,
) -> ScoringProgress:
    """Score every slide of ``cohort`` without a result (see the module docstring).

    ``options`` go to ``predict_slide`` (``model_path``, ``extractor_name``, ``device``...).
    ``on_progress(progress)`` is called after each slide (from this thread, or the thread
    running the dask client). Returns the final progress.
    """
    from napari_imilia.cohort.run import predict_cohort

    indices = cohort.unscored()
    slides = [cohort[i].path for i in indices]
    started = time.perf_counter()
    state = {"done": 0}
    total = len(slides)
    if not slides:
        return ScoringProgress(0, 0, 0.0)

    def on_result(row: dict[str, Any]) -> None:
        stopped = cancel is not None and cancel.is_set() and row.get("status") != "ok"
        if not stopped:
            cohort.record_scoring(row)
            state["done"] += 1
        if on_progress is not None:
            on_progress(
                ScoringProgress(
                    state["done"],
                    total,
                    time.perf_counter() - started,
                    str(row.get("slide_id", "")),
                    "cancelled" if stopped else str(row.get("status", "")),
                    cancelled=bool(cancel is not None and cancel.is_set()),
                )
            )

    options = {"progress": False, **options}
    distributed = scheduler is not None or (n_workers is not None and n_workers > 1)
    try:
        if not distributed:
            predict_cohort(
                slides, cohort.results_root, on_result=on_result, cancel=cancel, **options
            )
        else:
            batch = max(2 * (n_workers or 1), 2)
            for start in range(0, total, batch):
                if cancel is not None and cancel.is_set():
                    break
                predict_cohort(
                    slides[start : start + batch],
                    cohort.results_root,
                    on_result=on_result,
                    scheduler=scheduler,
                    n_workers=n_workers,
                    **options,
                )
    finally:
        write_cohort_csv(cohort)
    cancelled = bool(cancel is not None and cancel.is_set())
    return ScoringProgress(state["done"], total, time.perf_counter() - started, cancelled=cancelled)


def write_cohort_csv(cohort: Cohort) -> Path:
    """``results_root/cohort.csv`` with every slide of the cohort (the columns
    ``predict_cohort`` writes; status 'ok', 'error' or 'not scored')."""
    from napari_imilia.cohort.run import SUMMARY_COLUMNS

    rows = []
    for item in cohort.items:
        status = "ok" if item.scored else ("error" if item.error else "not scored")
        rows.append(
            {
                "slide": item.path,
                "slide_id": item.slide_id,
                "status": status,
                "score": item.score,
                "n_tiles": item.n_tiles,
                "error": item.error or None,
            }
        )
    table = pd.DataFrame(rows).reindex(columns=list(SUMMARY_COLUMNS))
    return write_text_atomic(cohort.results_root / "cohort.csv", table.to_csv(index=False))
