"""Score all and Write reports of the Cohort dock, in background threads (``thread_worker``).

Mixed into :class:`~napari_imilia._napari.docks.cohort.panel.CohortPanel`, which provides
``cohort``, ``link``, the progress widgets and ``_refresh``.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from qtpy.QtCore import QObject, Signal

from napari_imilia._napari.notify import notify


class ProgressRelay(QObject):
    """Carries scoring progress from the worker thread to the GUI thread."""

    progress = Signal(object)


class CohortScoringMixin:
    """Score all / Cancel / Write reports of the Cohort dock."""

    cohort: Any
    worker: Any
    report_worker: Any
    _cancel: threading.Event | None

    # ------------------------------------------------------------------ scoring
    def score_all(self) -> None:
        """Score every unscored slide in the background (see the module docstring)."""
        from napari.qt.threading import thread_worker

        from napari_imilia.cohort.scoring import score_unscored

        cohort = self.cohort
        if cohort is None or self.worker is not None:
            return
        todo = len(cohort.unscored())
        if todo == 0:
            self.progress_label.setText("every slide that can be scored is scored")
            return
        options: dict[str, Any] = {"device": "auto"}
        if self.model_edit.text().strip():
            options["model_path"] = self.model_edit.text().strip()
        workers = self.workers_spin.value()
        if workers > 1:
            options["cluster_workers"] = workers
        self._cancel = threading.Event()
        self.progress_bar.setRange(0, todo)
        self.progress_bar.setValue(0)
        self.progress_label.setText(f"0 of {todo} slides scored")
        worker = thread_worker(score_unscored, start_thread=False)(
            cohort, cancel=self._cancel, on_progress=self._relay.progress.emit, **options
        )
        worker.returned.connect(self._on_scored)
        worker.errored.connect(self._on_score_error)
        worker.finished.connect(self._on_score_finished)
        self.worker = worker
        self._update_buttons()
        worker.start()

    def cancel_scoring(self) -> None:
        if self._cancel is not None:
            self._cancel.set()
            self.progress_label.setText("cancelling after the current slide…")

    def _on_progress(self, progress: Any) -> None:
        self.progress_bar.setRange(0, max(progress.total, 1))
        self.progress_bar.setValue(progress.done)
        self.progress_label.setText(progress.text())
        self._refresh()

    def _on_scored(self, progress: Any) -> None:
        self.progress_label.setText(progress.text())

    def _on_score_error(self, error: BaseException) -> None:
        notify("error", f"napari-imilia: scoring the cohort failed: {error}")
        self.progress_label.setText(f"scoring failed: {error}")

    def _on_score_finished(self) -> None:
        self.worker = None
        self._cancel = None
        if self.cohort is not None:
            self.cohort.refresh()
        self._refresh()
        session = self.link.state.session
        if session is not None and session.prediction is None:
            session.load_cached_prediction()  # the open slide was scored meanwhile

    # ------------------------------------------------------------------ reports
    def write_reports(self, top_k: int = 4) -> None:
        """Write the slide and cohort reports in the background; says where when done."""
        from napari.qt.threading import thread_worker

        from napari_imilia.report import write_reports

        if self.cohort is None or self.report_worker is not None:
            return
        self.progress_label.setText("writing reports…")
        worker = thread_worker(write_reports, start_thread=False)(self.cohort, top_k=top_k)
        worker.returned.connect(self._on_reports)
        worker.errored.connect(lambda e: notify("error", f"napari-imilia: reports failed: {e}"))
        worker.finished.connect(lambda: setattr(self, "report_worker", None))
        self.report_worker = worker
        worker.start()

    def _on_reports(self, written: dict[str, Path]) -> None:
        text = f"cohort report: {written['html']}"
        self.progress_label.setText(text)
        notify("info", text)
