"""Score a cohort's unscored slides, with k of N progress, ETA and cancel (no Qt).

:func:`score_unscored` hands the slides to :func:`napari_imilia.cohort.run.predict_cohort` (in
this process, or on dask.distributed with ``cluster_workers`` / ``scheduler``) and records each
slide in the cohort as it finishes, so a table showing the cohort fills in as it goes. Cancel
takes effect between feature batches, in this process and on a cluster (running slides
stop too); a slide stopped by cancel stays 'not scored' (its earlier result, if any, is kept).
At the end ``results_root/cohort.csv`` lists every slide of the cohort
(:func:`~napari_imilia.cohort.summary.write_cohort_csv`, rows rebuilt from the slide folders).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from napari_imilia.cohort.review import Cohort
from napari_imilia.cohort.summary import cohort_rows, summary_table, write_cohort_csv
from napari_imilia.predict.settings import PredictSettings, keyword_alias
from napari_imilia.progress import RunProgress

ProgressCallback = Callable[[RunProgress], None]


def score_unscored(
    cohort: Cohort,
    *,
    settings: PredictSettings | None = None,
    cancel: threading.Event | None = None,
    on_progress: ProgressCallback | None = None,
    cluster_workers: int | None = None,
    scheduler: str | None = None,
    n_workers: int | None = None,
    **options: Any,
) -> RunProgress:
    """Score every slide of ``cohort`` without a result (see the module docstring).

    ``settings`` (or ``predict_slide``'s setting keywords among ``options``: ``model_path``,
    ``extractor_name``...) decide the results; the other ``options`` go to ``predict_slide``
    (``device``...). ``cluster_workers`` (old name ``n_workers``) > 1 scores on a dask
    LocalCluster. ``on_progress(progress)`` is called after each slide (from this thread, or
    the thread running the dask client). Returns the final progress.
    """
    from napari_imilia.cohort.run import predict_cohort

    cluster_workers = keyword_alias(cluster_workers, n_workers, "n_workers", "cluster_workers")
    slides = [cohort[i].path for i in cohort.unscored()]
    if not slides:
        return RunProgress(0)
    tally = _Scored(len(slides), cohort, cancel, on_progress)
    options = {"progress": False, **options}
    if settings is not None:
        options["settings"] = settings
    try:
        if scheduler is None and (cluster_workers is None or cluster_workers <= 1):
            predict_cohort(
                slides, cohort.results_root, on_result=tally.record, cancel=cancel, **options
            )
        else:
            batch = max(2 * (cluster_workers or 1), 2)
            for start in range(0, len(slides), batch):
                if cancel is not None and cancel.is_set():
                    break
                predict_cohort(
                    slides[start : start + batch],
                    cohort.results_root,
                    on_result=tally.record,
                    scheduler=scheduler,
                    cluster_workers=cluster_workers,
                    cancel=cancel,
                    **options,
                )
    finally:
        write_cohort_csv(cohort.results_root, summary_table(cohort_rows(cohort)))
    return tally.progress()


class _Scored:
    """Records each finished slide in the cohort and reports the run's progress."""

    def __init__(
        self,
        total: int,
        cohort: Cohort,
        cancel: threading.Event | None,
        on_progress: ProgressCallback | None,
    ) -> None:
        self.total, self.cohort, self.cancel, self.on_progress = total, cohort, cancel, on_progress
        self.done = self.failed = self.reused = 0
        self.started = time.perf_counter()

    def cancelled(self) -> bool:
        return self.cancel is not None and self.cancel.is_set()

    def progress(self) -> RunProgress:
        elapsed_s = time.perf_counter() - self.started
        return RunProgress(
            self.total, self.done, self.failed, self.reused, elapsed_s, self.cancelled()
        )

    def record(self, row: dict[str, Any]) -> None:
        """One row of ``predict_cohort``: recorded, unless cancel stopped that slide."""
        if not (self.cancelled() and row.get("status") != "ok"):
            self.cohort.record_scoring(row)
            self.done += 1
            self.failed += row.get("status") != "ok"
            self.reused += bool(row.get("reused"))
        if self.on_progress is not None:
            self.on_progress(self.progress())
