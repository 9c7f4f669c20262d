"""Slide and model dock: open a slide, show its metadata, choose the model, Run / Cancel.

Opening a slide (the *Open slide…* button, the recent list, drag and drop or *File → Open*)
goes through our npe2 reader; the viewer link (``link``) then creates the slide's
``ReviewSession``, which loads an earlier result at once. *Run* scores the slide in a
napari ``thread_worker`` (``inference.run_inference``, with the models the viewer state has
loaded: the same model, extractor, MPP and tile size reuse the earlier result instantly),
reporting tiles done / total, tiles/s and ETA in the panel and in napari's activity bar;
*Cancel* stops it between batches, and nothing is written (features and results are written
atomically, only once complete). Every problem becomes a notification. Choices are
remembered in ``settings``'s JSON file.
"""

from __future__ import annotations

import contextlib
import threading
from functools import partial
from pathlib import Path
from typing import Any

from qtpy.QtCore import QObject, Qt, Signal
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_imilia._napari.docks.links import DockLinks, dock_viewer_link
from napari_imilia._napari.docks.model_form import ModelForm
from napari_imilia._napari.docks.scroll import scroll_content
from napari_imilia._napari.docks.slide_info import (
    SlideMppRow,
    describe_slide,
    missing_mpp_text,
    reopen_with_mpp,
    rgb_pixmap,
    slide_thumbnail,
)
from napari_imilia._napari.docks.text import plain_label
from napari_imilia._napari.inference import (
    InferenceOutcome,
    InferenceRequest,
    ProgressRate,
    run_inference,
)
from napari_imilia._napari.notify import notify
from napari_imilia._napari.settings import PanelSettings, load_settings, save_settings
from napari_imilia.review.session import ReviewSession

#: Slide files the dialog offers (a DICOM WSI opens from any one of its .dcm files).
SLIDE_FILTER = (
    "Whole-slide images (*.svs *.tif *.tiff *.ndpi *.scn *.bif *.dcm *.mrxs *.vms *.vmu "
    "*.svslide *.czi);;All files (*)"
)
RECENT_PROMPT = "Recent slides…"


def stop_when_closed(cancel: threading.Event, slide_name: str, *_: Any) -> None:
    """The dock was destroyed during a run (its viewer closed): stop the run between batches
    (nothing is written) and say so in a notification. Holds no reference to the dock."""
    if cancel.is_set():
        return
    cancel.set()
    notify(
        "warning",
        f"napari-imilia: the viewer was closed while scoring {slide_name}; the run stops "
        "and no feature or result file is written",
    )


class _ProgressRelay(QObject):
    """Carries ``progress(done, total)`` from the worker thread to the Qt main thread."""

    changed = Signal(int, int)


class SlidePanel(QWidget):
    """The Slide and model dock widget (npe2 ``napari-imilia.slide_panel``)."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.settings: PanelSettings = load_settings()
        self.worker: Any = None
        self._cancel: threading.Event | None = None
        self._stop_on_close: Any = None
        self._rate = ProgressRate()
        self._pbar: Any = None
        self._thumb_worker: Any = None
        self.last_outcome: InferenceOutcome | None = None
        self._relay = _ProgressRelay()
        self._relay.changed.connect(self._on_progress)
        self._build_ui()
        self.link = dock_viewer_link(napari_viewer)
        #: The viewer's loaded MIL model and extractor (its state's), reused between runs.
        self.cache = self.link.state.models
        self.links = DockLinks(self)
        self.links.connect(self.link.state.session_changed, self._on_session_changed)
        root = self.settings.results_root
        self._on_session_changed(self.link.ensure_session(Path(root) if root else None))

    # ------------------------------------------------------------------------- UI
    def _build_ui(self) -> None:
        self.open_button = QPushButton("Open slide…")
        self.recent_combo = QComboBox()
        self._fill_recent()
        self.slide_label = QLabel("no slide: open one, or drop it on the canvas")
        self.slide_label.setWordWrap(True)
        self.slide_label.setTextFormat(Qt.TextFormat.RichText)
        self.thumbnail_label = QLabel()
        self.thumbnail_label.setMinimumHeight(60)
        self.mpp_row = SlideMppRow()
        self.form = ModelForm(self.settings)
        self.run_button = QPushButton("Run")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.progress_label = plain_label("")
        self.status_label = plain_label("")
        self.status_label.setWordWrap(True)

        slide_box = QGroupBox("Slide")
        slide_layout = QVBoxLayout(slide_box)
        row = QHBoxLayout()
        row.addWidget(self.open_button)
        row.addWidget(self.recent_combo, 1)
        slide_layout.addLayout(row)
        info = QHBoxLayout()
        info.addWidget(self.thumbnail_label)
        info.addWidget(self.slide_label, 1)
        slide_layout.addLayout(info)
        slide_layout.addWidget(self.mpp_row)
        model_box = QGroupBox("Model")
        QVBoxLayout(model_box).addWidget(self.form)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(scroll_content(self))
        for widget in (slide_box, model_box):
            layout.addWidget(widget)
        layout.addLayout(buttons)
        for widget in (self.progress_bar, self.progress_label, self.status_label):
            layout.addWidget(widget)
        layout.addStretch(1)

        self.open_button.clicked.connect(self._choose_slide)
        self.mpp_row.requested.connect(self.set_slide_mpp)
        self.recent_combo.activated.connect(self._on_recent_chosen)
        self.form.changed.connect(self.save)
        self.form.results_root_changed.connect(self._on_results_root_changed)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)

    def _fill_recent(self) -> None:
        self.recent_combo.blockSignals(True)
        self.recent_combo.clear()
        self.recent_combo.addItem(RECENT_PROMPT, "")
        for path in self.settings.recent_slides:
            self.recent_combo.addItem(Path(path).name, path)
            self.recent_combo.setItemData(
                self.recent_combo.count() - 1, path, Qt.ItemDataRole.ToolTipRole
            )
        self.recent_combo.blockSignals(False)

    def save(self) -> None:
        """Remember the panel's choices (atomic JSON write)."""
        self.form.store(self.settings)
        try:
            save_settings(self.settings)
        except OSError as error:
            notify("warning", f"napari-imilia could not save its settings: {error}")

    # ------------------------------------------------------------------------- slide
    @property
    def session(self) -> ReviewSession | None:
        return self.link.state.session

    def open_slide(self, path: str | Path) -> None:
        """Open ``path`` in the viewer through our reader (the link then makes the session)."""
        path = Path(path)
        if not path.is_file():
            notify("error", f"slide not found: {path}")
            return
        try:
            self.viewer.open(str(path), plugin="napari-imilia")
        except Exception as error:  # napari raises its own errors for unreadable files
            notify("error", f"napari-imilia cannot open {path.name}: {error}")

    def set_slide_mpp(self, um_per_px: float) -> None:
        """Reopen the session's slide with ``um_per_px`` (µm per level-0 px) as its MPP; the
        viewer link then starts the new slide's session."""
        reopen_with_mpp(self.viewer, self.session, um_per_px)

    def _choose_slide(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a whole-slide image", "", SLIDE_FILTER)
        if path:
            self.open_slide(path)

    def _on_recent_chosen(self, index: int) -> None:
        path = self.recent_combo.itemData(index)
        self.recent_combo.setCurrentIndex(0)
        if path:
            self.open_slide(path)

    def _on_results_root_changed(self, text: str) -> None:
        """A new results folder: reopen the session there (its earlier result loads)."""
        session = self.session
        if session is None:
            return
        root = Path(text).expanduser() if text else None
        new = ReviewSession.for_slide(session.slide, root)
        if new.results_root != session.results_root:
            self.link.state.set_session(new)

    def _on_session_changed(self, session: ReviewSession | None) -> None:
        if session is None:
            self.slide_label.setText("no slide: open one, or drop it on the canvas")
            self.thumbnail_label.clear()
            return
        self.slide_label.setText(describe_slide(session.slide.summary()))
        self.mpp_row.show_for(session.slide)
        self.form.results_edit.setText(str(session.results_root))  # what Run will use
        self.settings.add_recent(session.slide.path)
        self._fill_recent()
        self.save()
        self._load_thumbnail(session.slide)
        scored = session.prediction is not None
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(1 if scored else 0)
        if scored:
            self.status_label.setText(
                f"earlier result loaded from {session.results_dir} "
                f"(score {session.prediction.score:.4f})"
            )
        else:
            self.status_label.setText(session.withheld_reason or "not scored yet: press Run")

    def _load_thumbnail(self, slide: Any) -> None:
        """Read the thumbnail in a worker thread (a slide without a pyramid is slow)."""
        from napari.qt.threading import thread_worker

        worker = thread_worker(slide_thumbnail, start_thread=False)(slide)
        worker.returned.connect(self._show_thumbnail)
        self._thumb_worker = worker
        worker.start()

    def _show_thumbnail(self, image: Any) -> None:
        self.thumbnail_label.setPixmap(rgb_pixmap(image))

    # ------------------------------------------------------------------------- run
    @property
    def running(self) -> bool:
        return self.worker is not None

    def make_request(self) -> InferenceRequest | None:
        """The Run request for the current session (None, with a notification, if no slide)."""
        session = self.session
        if session is None:
            notify("warning", "open a slide first (Open slide…, or drop it on the canvas)")
            return None
        slide = session.slide
        if slide.mpp is None:
            reason = missing_mpp_text(slide)
            notify("error", f"napari-imilia cannot score {slide.slide_id}: {reason}")
            return None
        override = slide.mpp if slide.mpp_source == "override" else None
        return InferenceRequest(
            slide_path=Path(slide.path),
            results_root=session.results_root,
            mpp=override,
            **self.form.request_values(),
        )

    def run(self) -> None:
        """Score the session's slide in a background thread (or reuse its earlier result)."""
        from napari.qt.threading import thread_worker

        if self.running:
            return
        request = self.make_request()
        if request is None:
            return
        self.save()
        self._cancel = threading.Event()
        self._rate = ProgressRate()
        # closing the viewer (which destroys this dock) stops the run and says so
        self._stop_on_close = partial(stop_when_closed, self._cancel, request.slide_path.name)
        self.destroyed.connect(self._stop_on_close)
        relay = self._relay
        worker = thread_worker(run_inference, start_thread=False)(
            request,
            self.cache,
            progress=lambda done, total: relay.changed.emit(done, total),
            cancel=self._cancel,
        )
        worker.returned.connect(self._on_outcome)
        worker.errored.connect(self._on_worker_error)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress_bar.setRange(0, 0)
        self.status_label.setText(f"scoring {request.slide_path.name}…")
        worker.start()

    def cancel(self) -> None:
        """Stop the run between batches; nothing of it is written."""
        if self._cancel is not None:
            self._cancel.set()
            self.status_label.setText("cancelling…")
            self.cancel_button.setEnabled(False)

    def _on_progress(self, done: int, total: int) -> None:
        from napari.utils import progress

        self._rate.update(done, total)
        self.progress_bar.setRange(0, max(total, 1))
        self.progress_bar.setValue(done)
        self.progress_label.setText(self._rate.describe())
        if self._pbar is None and total > 0 and self.running:
            self._pbar = progress(total=total, desc="napari-imilia: tile features")
        pbar = self._pbar  # updating it may run Qt events that end the run and drop it
        if pbar is not None:
            pbar.update(done - pbar.n)
            pbar.set_description(f"napari-imilia: {self._rate.describe()}")

    def _on_outcome(self, outcome: InferenceOutcome) -> None:
        self.last_outcome = outcome
        if outcome.cancelled:
            self.status_label.setText("cancelled: nothing was written")
            notify(
                "info", "napari-imilia: inference cancelled; no feature or result file was written"
            )
            return
        if outcome.error is not None:
            self.status_label.setText(f"failed: {outcome.error}")
            notify("error", f"napari-imilia: {outcome.error}")
            return
        result = outcome.result
        session = self.session
        if session is None or session.slide_id != str(result.slide_id):
            self.status_label.setText(f"{result.slide_id} scored, but it is no longer open")
            return
        how = (
            "earlier result reused (same model and settings)"
            if outcome.cached
            else (f"scored {len(result.tiles)} tiles in {result.info.get('seconds', 0):.1f} s")
        )
        session.set_prediction(result)  # withheld in a blinded study: say only what it shows
        shown = session.prediction
        score = "the model is hidden" if shown is None else f"slide score {shown.score:.4f}"
        self.status_label.setText(f"{score}: {how}")

    def _on_worker_error(self, error: BaseException) -> None:
        self.status_label.setText(f"failed: {error}")

    def _on_finished(self) -> None:
        if self._stop_on_close is not None:
            with contextlib.suppress(TypeError, RuntimeError):
                self.destroyed.disconnect(self._stop_on_close)
            self._stop_on_close = None
        self.worker = None
        self._cancel = None
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        done = self.last_outcome is not None and self.last_outcome.result is not None
        self.progress_bar.setRange(0, max(self._rate.total, 1))
        self.progress_bar.setValue(self.progress_bar.maximum() if done else 0)
