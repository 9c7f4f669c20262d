"""The Cohort dock: a study's slides in a sortable, filterable table, reviewed one after the
other, scored in the background, graded, and reported.

Open a cohort from a folder (slides found recursively), a glob, a CSV (slide path column,
optional label columns) or a results folder holding ``cohort.csv``; its Qt-free
:class:`~napari_imilia.cohort.review.Cohort` is the viewer state's cohort under review
(``ViewerState.cohort``: new sessions go to its results folder, grades reach its file).
Double-click a row (or Next / Previous, Alt-N / Alt-P on the canvas, Page Down / Page Up
here) to open a slide in place of the previous one. "Score all" scores every unscored slide
in a ``thread_worker`` (k of N, ETA, cancel); "Reports" writes the HTML reports.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtGui import QKeySequence
from qtpy.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QShortcut,
    QSpinBox,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from napari_imilia._napari.docks.cohort.grade_form import GRADES, SlideGradeForm
from napari_imilia._napari.docks.cohort.scoring import CohortScoringMixin, ProgressRelay
from napari_imilia._napari.docks.cohort.sources import CohortSourcesMixin
from napari_imilia._napari.docks.cohort.study_box import StudyBox
from napari_imilia._napari.docks.cohort.table import CohortFilter, CohortTableModel
from napari_imilia._napari.docks.fold import FoldSection
from napari_imilia._napari.docks.links import DockLinks, dock_viewer_link
from napari_imilia._napari.docks.scroll import scroll_content
from napari_imilia._napari.docks.text import StatusLabel, plain_label
from napari_imilia._napari.notify import notify
from napari_imilia.cohort.review import STATUSES, Cohort
from napari_imilia.errors import SlideError
from napari_imilia.review.reviewer import load_reviewer
from napari_imilia.slide import open_slide

#: (canvas key, dock key) to step to the next / previous slide.
STEP_KEYS: dict[int, tuple[str, str]] = {+1: ("Alt-N", "PgDown"), -1: ("Alt-P", "PgUp")}
#: Table rows that always show (the dock's minimum height keeps them).
MIN_TABLE_ROWS = 8
#: Rows measured to size the table's columns.
SIZE_ROWS = 50
NO_COHORT_TITLE = "Open a cohort: slides, results folder, model"


def _row(*widgets: QWidget) -> QHBoxLayout:
    row = QHBoxLayout()
    for widget in widgets:
        row.addWidget(widget)
    return row


class CohortPanel(CohortSourcesMixin, CohortScoringMixin, QWidget):
    """The Cohort dock widget (npe2 ``napari-imilia.cohort_panel``)."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.worker: Any = None
        self.report_worker: Any = None
        self._cancel: threading.Event | None = None
        self._relay = ProgressRelay()
        self._relay.progress.connect(self._on_progress)
        self.link = dock_viewer_link(napari_viewer)
        self.state = self.link.state
        self._build_ui()
        self._bind_keys()
        self.links = DockLinks(self)
        self.links.connect(self.state.session_changed, self._on_session_changed)
        self.links.connect(self.state.cohort_changed, self._show_cohort)
        self.links.connect(self.state.blinding_changed, self._on_blinding_changed)
        GRADES.saved.connect(self._on_grade_saved)
        self.grade_form.show_session(self.state.session)
        if self.state.cohort is not None:  # a dock opened again shows the cohort under review
            self._show_cohort()

    @property
    def cohort(self) -> Cohort | None:
        """The cohort under review in this viewer (its state's)."""
        return self.state.cohort

    # ------------------------------------------------------------------ UI
    def _build_ui(self) -> None:
        self._make_widgets()
        self._lay_out()
        self._connect_widgets()
        self._update_buttons()

    def _make_widgets(self) -> None:
        self.source_edit = QLineEdit()
        self.source_edit.setPlaceholderText("slide folder, glob, cohort CSV or results folder")
        self.browse_button = QPushButton("Folder…")
        self.csv_button = QPushButton("CSV…")
        self.results_edit = QLineEdit()
        self.results_edit.setPlaceholderText("results folder (default: the usual one)")
        self.open_button = QPushButton("Open cohort")
        self.labels_button = QPushButton("Labels…")
        self.labels_button.setToolTip(
            "label the cohort's slides from a CSV (slide column + label columns such as "
            "active, nancy); rows find slides by path, then by slide id, and add none"
        )
        self.summary_label = plain_label("no cohort open")
        self.filter_edit = QLineEdit()
        self.filter_edit.setPlaceholderText("filter (any column)")
        self.status_combo = QComboBox()
        self.status_combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.status_combo.setMinimumContentsLength(9)
        self.status_combo.addItem("all statuses", "")
        for status in STATUSES:
            self.status_combo.addItem(status, status)
        self.model = CohortTableModel(self)
        self.proxy = CohortFilter(self)
        self.proxy.setSourceModel(self.model)
        self.table = self._make_table()
        self.previous_button = QPushButton("◀ Prev")
        self.previous_button.setToolTip("Previous slide (Alt+P on the canvas, Page Up here)")
        self.next_button = QPushButton("Next ▶")
        self.next_button.setToolTip("Next slide (Alt+N on the canvas, Page Down here)")
        self.model_edit = QLineEdit()
        self.model_edit.setPlaceholderText("MIL model checkpoint (empty: the demo model)")
        self.workers_spin = QSpinBox()
        self.workers_spin.setRange(1, 64)
        self.workers_spin.setToolTip(
            "1: score here, one slide after another; more: a dask LocalCluster"
        )
        self.score_button = QPushButton("Score all")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.setVisible(False)
        self.progress_bar = QProgressBar()
        self.progress_bar.setVisible(False)
        self.progress_label = StatusLabel()
        self.report_button = QPushButton("Reports")
        self.report_button.setToolTip("Write the slide reports and the cohort report (HTML)")
        self.grade_form = SlideGradeForm(self.viewer)
        self.study_box = StudyBox(self)

    def _make_table(self) -> QTableView:
        table = QTableView()
        table.setModel(self.proxy)
        table.horizontalHeader().setSortIndicator(-1, Qt.SortOrder.AscendingOrder)
        table.setSortingEnabled(True)  # cohort order until a header is clicked
        table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        table.verticalHeader().setResizeContentsPrecision(SIZE_ROWS)  # rows measured
        table.verticalHeader().setVisible(False)
        # compact rows: MIN_TABLE_ROWS rows show together with the slide and its grade form
        row_px = table.fontMetrics().height() + 6
        table.verticalHeader().setDefaultSectionSize(row_px)
        table.verticalHeader().setMinimumSectionSize(row_px)
        header_px = table.horizontalHeader().sizeHint().height()
        scroll_px = table.horizontalScrollBar().sizeHint().height()
        table.setMinimumHeight(
            header_px + MIN_TABLE_ROWS * row_px + scroll_px + 2 * table.frameWidth() + 4
        )
        return table

    def _lay_out(self) -> None:
        source = QWidget()
        source_layout = QVBoxLayout(source)
        source_layout.setContentsMargins(0, 0, 0, 0)
        source_layout.addWidget(self.summary_label)
        rows: list[tuple[QWidget, ...]] = [
            (self.source_edit, self.browse_button, self.csv_button),
            (self.results_edit, self.open_button, self.labels_button),
            (self.model_edit, QLabel("workers"), self.workers_spin),
        ]
        for widgets in rows:
            source_layout.addLayout(_row(*widgets))
        source_layout.addWidget(self.study_box.setup_section)
        # folded once a cohort is open (its title says how far the review is): the table,
        # its buttons and the grade form come first
        self.source_section = FoldSection(NO_COHORT_TITLE, source, unfolded=True)
        self.source_section.button.setToolTip("the cohort's slides, results folder and model")
        layout = QVBoxLayout(scroll_content(self))
        layout.setContentsMargins(6, 2, 6, 2)
        layout.setSpacing(3)
        layout.addWidget(self.source_section)
        layout.addLayout(_row(self.filter_edit, self.status_combo))
        layout.addWidget(self.table, 1)
        layout.addLayout(
            _row(
                self.previous_button,
                self.next_button,
                self.score_button,
                self.cancel_button,
                self.report_button,
            )
        )
        layout.addLayout(_row(self.progress_bar, self.progress_label))
        layout.addWidget(self.study_box)
        layout.addWidget(self.grade_form)

    def _connect_widgets(self) -> None:
        self.browse_button.clicked.connect(self._choose_folder)
        self.csv_button.clicked.connect(self._choose_csv)
        self.open_button.clicked.connect(self._open_from_fields)
        self.labels_button.clicked.connect(self._choose_labels)
        self.source_edit.returnPressed.connect(self._open_from_fields)
        self.filter_edit.textChanged.connect(lambda text: self.proxy.set_filter(text=text))
        self.status_combo.currentIndexChanged.connect(
            lambda _i: self.proxy.set_filter(status=self.status_combo.currentData())
        )
        self.table.doubleClicked.connect(lambda index: self.open_index(self._source_row(index)))
        self.previous_button.clicked.connect(lambda: self.step(-1))
        self.next_button.clicked.connect(lambda: self.step(+1))
        self.score_button.clicked.connect(self.score_all)
        self.cancel_button.clicked.connect(self.cancel_scoring)
        self.report_button.clicked.connect(self.write_reports)

    def _bind_keys(self) -> None:
        self._canvas_keys: list[str] = []
        for delta, (canvas_key, dock_key) in STEP_KEYS.items():
            shortcut = QShortcut(QKeySequence(dock_key), self)
            shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            shortcut.activated.connect(lambda d=delta: self.step(d))

            def on_key(_viewer: Any, d: int = delta) -> None:
                self.step(d)

            self.viewer.bind_key(canvas_key, on_key, overwrite=True)
            self._canvas_keys.append(canvas_key)

    def closeEvent(self, event: Any) -> None:
        for key in self._canvas_keys:
            self.viewer.bind_key(key, None, overwrite=True)
        self.cancel_scoring()
        self.state.set_cohort(None)  # new sessions use the saved results folder again
        super().closeEvent(event)

    def set_cohort(self, cohort: Cohort | None) -> None:
        """Review ``cohort`` in this viewer (None: no cohort) and show it."""
        self.cancel_scoring()
        self.state.set_cohort(cohort)  # shown through cohort_changed
        for message in [] if cohort is None else cohort.warnings:
            notify("warning", message)

    def _show_cohort(self, *_: Any) -> None:
        """Show the viewer's cohort under review (its state's)."""
        cohort = self.cohort
        self.model.set_cohort(cohort)
        self._size_columns()
        if cohort is not None:
            self.results_edit.setText(str(cohort.results_root))
        self.source_section.set_unfolded(cohort is None)
        self._refresh()

    def _size_columns(self) -> None:
        """Columns as wide as their header and first rows (``SIZE_ROWS``: measuring every
        row of a large cohort takes seconds), the slide column with room for the bold row."""
        self.table.resizeColumnsToContents()
        self.table.setColumnWidth(0, self.table.columnWidth(0) + 24)

    def _refresh(self, rows: list[int | None] | None = None) -> None:
        """Show the cohort's state again: its summary, the table (only ``rows`` when given:
        a step changes the previous and the new current slide), the current row."""
        cohort = self.cohort
        if cohort is not None and cohort.reader != load_reviewer():  # the reviewer changed
            cohort.reader = load_reviewer()
            cohort.refresh()
            rows = None
        self.study_box.refresh()
        summary = "no cohort open" if cohort is None else cohort.summary_text()
        self.summary_label.setText(summary)
        self.source_section.button.setText(
            NO_COHORT_TITLE if cohort is None else f"Cohort: {summary}"
        )
        if rows is None:
            self.model.refresh_all()
        else:
            for row in rows:
                if row is not None:
                    self.model.refresh_row(row)
        self._select_current()
        self._update_buttons()

    def _update_buttons(self) -> None:
        has = self.cohort is not None and len(self.cohort) > 0
        running = self.worker is not None
        for button in (
            self.previous_button,
            self.next_button,
            self.report_button,
            self.labels_button,
        ):
            button.setEnabled(has)
        self.score_button.setEnabled(has and not running)
        blinded = has and self.cohort.study is not None and self.cohort.study.blinded
        self.report_button.setEnabled(has and not blinded)  # reports show scores and grades
        self.report_button.setToolTip(
            "a blinded study's reports are written by its coordinator: imilia report" * blinded
        )
        self.cancel_button.setEnabled(running)
        self.cancel_button.setVisible(running)  # in the row only while scoring
        self.progress_bar.setVisible(running)

    def _source_row(self, proxy_index: Any) -> int:
        return self.proxy.mapToSource(proxy_index).row()

    def _select_current(self) -> None:
        if self.cohort is None or self.cohort.current_index is None:
            return
        index = self.proxy.mapFromSource(self.model.index(self.cohort.current_index, 0))
        if index.isValid():
            self.table.selectRow(index.row())
            self.table.scrollTo(index)

    # ------------------------------------------------------------------ slides
    def open_index(self, row: int) -> bool:
        """Open slide ``row`` of the cohort in place of the previous slide; False when it
        cannot be opened (the reason is shown)."""
        cohort = self.cohort
        if cohort is None or not 0 <= row < len(cohort):
            return False
        cohort.refresh([row])
        item = cohort[row]
        if item.file_error:
            notify("error", f"{item.slide_id}: {item.file_error}")
            self.model.refresh_row(row)
            return False
        try:
            slide = open_slide(item.path)
        except SlideError as error:  # changed since the cohort was read
            notify("error", f"{item.slide_id}: {error}")
            return False
        previous = cohort.current_index
        cohort.set_current(row)
        # in place of the previous slide, its layers reused (the link draws them again)
        self.link.open_slide(slide, cohort.results_root)
        self._refresh(rows=[previous, row])
        return True

    def step(self, delta: int) -> bool:
        """Open the next (``delta`` +1) or previous (-1) openable slide; False at either end."""
        if self.cohort is None:
            return False
        target = self.cohort.step(delta)
        if target is None:
            notify("info", "last slide of the cohort" if delta > 0 else "first slide of the cohort")
            return False
        return self.open_index(target)

    def _on_blinding_changed(self, _session: Any) -> None:
        self.grade_form.reload()  # a grade committed, or another reviewer: what they see

    def _on_session_changed(self, session: Any) -> None:
        self.grade_form.show_session(session)
        cohort = self.cohort
        if session is None or cohort is None:
            return
        path = Path(session.slide.path)
        current = cohort.current_index
        if current is not None and Path(cohort.items[current].path) == path:
            return  # opened from this dock: already the current slide
        for index, item in enumerate(cohort.items):
            if Path(item.path) == path:
                cohort.set_current(index)
                self._refresh(rows=[current, index])
                break

    def study_changed(self) -> None:
        """A study was set up on the cohort: show it (blinding, order, progress)."""
        self._refresh()

    def _on_grade_saved(self, slide_id: str, _grade: Any) -> None:
        try:
            if self.cohort is not None:
                self._refresh()
        except RuntimeError:  # this dock was deleted
            GRADES.saved.disconnect(self._on_grade_saved)
