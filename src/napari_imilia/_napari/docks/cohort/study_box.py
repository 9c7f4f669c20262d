"""The Cohort dock's reader-study box: set a study up on the cohort's results folder, and see
the reader's progress ("12 of 40 read, 3 drafts") and everyone's.

The study itself is the core's (:mod:`napari_imilia.review.study`, kept in ``study.json``);
the blinding it implies is applied by the viewer's state, not here.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from napari_imilia._napari.docks.fold import FoldSection
from napari_imilia._napari.notify import notify
from napari_imilia.errors import ImiliaError
from napari_imilia.review.reviewer import load_reviewer
from napari_imilia.review.study import create_study, reader_progress, study_progress


def study_text(cohort: Any, reader: str) -> str:
    """What the box says about the cohort's study and the reader's progress (plain text)."""
    study = None if cohort is None else cohort.study
    if cohort is not None and cohort.study_error:
        return f"The reader study cannot be read: {cohort.study_error}"
    if study is None:
        return ""  # said by the folded set-up section's title
    lines = [f"Study {study.name or study.study_id}: {study.design_text()}."]
    root = cohort.results_root
    if reader:
        mine = reader_progress(study, root, reader)
        listed = "" if reader in study.readers else " (not listed as a reader)"
        lines.append(f"You, {reader}{listed}: {mine.text()}.")
    else:
        lines.append("Set your reviewer name (Review dock) to read.")
    others = [p for p in study_progress(study, root) if p.reader != reader]
    if others and not study.blinded:
        lines.append("Others: " + "; ".join(f"{p.reader} {p.read}/{p.total}" for p in others))
    elif others:
        lines.append(f"{len(others)} other reader(s); their grades stay hidden.")
    return "\n".join(lines)


#: Title of the folded set-up fields while the cohort has no study (one line on a laptop).
NO_STUDY_TITLE = "Reader study: none on this cohort (set one up)"


class StudyBox(QWidget):
    """The study's progress lines, or (until a study exists) its set-up fields, folded."""

    def __init__(self, panel: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.panel = panel
        self.progress_label = QLabel("")
        self.progress_label.setWordWrap(True)
        self.progress_label.setTextFormat(Qt.TextFormat.PlainText)
        self.readers_edit = QLineEdit()
        self.readers_edit.setPlaceholderText("readers, comma-separated (reviewer names)")
        self.blinded_check = QCheckBox("blinded")
        self.blinded_check.setChecked(True)
        self.blinded_check.setToolTip(
            "hide the model's score, heatmap and tiles and the other readers' grades from a "
            "reader until they commit their grade of the slide"
        )
        self.second_read_check = QCheckBox("second read after the model")
        self.second_read_check.setChecked(True)
        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(0, 2**31 - 1)
        self.seed_spin.setToolTip("seed of each reader's random slide order (recorded)")
        self.setup_button = QPushButton("Set up study")
        self.setup_widget = QWidget()
        setup = QVBoxLayout(self.setup_widget)
        setup.setContentsMargins(0, 0, 0, 0)
        setup.addWidget(self.readers_edit)
        row = QHBoxLayout()
        for widget in (self.blinded_check, self.second_read_check, QLabel("seed"), self.seed_spin):
            row.addWidget(widget)
        setup.addLayout(row)
        setup.addWidget(self.setup_button)
        # the set-up goes with the cohort's sources (the panel lays it out there, folded once a
        # cohort is open); the box itself is the study's progress, nothing without a study
        self.setup_section = FoldSection(NO_STUDY_TITLE, self.setup_widget)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.progress_label)
        self.blinded_check.toggled.connect(self.second_read_check.setEnabled)
        self.setup_button.clicked.connect(self.set_up)
        self.refresh()

    def refresh(self) -> None:
        """Show the study of the panel's cohort and the reader's progress."""
        cohort = self.panel.cohort
        self.setVisible(cohort is not None)
        self.setup_section.setVisible(cohort is not None)
        if cohort is None:
            return
        text = study_text(cohort, load_reviewer())
        self.progress_label.setText(text)
        self.setVisible(bool(text))
        self.setup_section.setVisible(cohort.study is None and not cohort.study_error)
        if not self.readers_edit.text() and load_reviewer():
            self.readers_edit.setText(load_reviewer())

    def set_up(self) -> Any:
        """Set up a study on the cohort's scored slides with the fields' readers and design."""
        cohort = self.panel.cohort
        if cohort is None:
            return None
        readers = [r.strip() for r in self.readers_edit.text().split(",") if r.strip()]
        slides = [item.slide_id for item in cohort.items if not item.error]
        try:
            study = create_study(
                cohort.results_root,
                slides,
                readers,
                blinded=self.blinded_check.isChecked(),
                second_read=self.second_read_check.isChecked(),
                seed=self.seed_spin.value(),
                created_by=load_reviewer(),
            )
        except ImiliaError as error:
            notify("error", f"no study set up: {error}")
            return None
        cohort.refresh()
        self.panel.state.refresh_blinding()
        self.panel.study_changed()
        notify("info", f"reader study set up: {len(study.readers)} reader(s), {len(slides)} slides")
        return study
