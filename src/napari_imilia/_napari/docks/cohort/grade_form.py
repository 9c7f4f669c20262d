"""Slide-level grading form: Nancy index (with each grade's definition), activity, agreement
with the model's call, note. Embedded in the Review and Cohort docks. A grade is signed with
the reviewer's one identity (``_napari.reviewer``; changed in the Review dock's header).

The form grades the viewer's current slide (its ``ReviewSession``): Save writes the grade to
the slide's ``slide_grade.json`` (through the cohort under review in the viewer's state when
the slide is in it, so the cohort file is updated too) and announces it on :data:`GRADES`, so
every other form and the cohort table showing that slide refresh.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from psygnal import Signal
from qtpy.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_imilia._napari.reviewer import reviewer_for_action
from napari_imilia._napari.state import viewer_state
from napari_imilia.review.grade import (
    ACTIVITIES,
    AGREEMENTS,
    NANCY_GRADES,
    SlideGrade,
    activity_for_nancy,
    load_slide_grade,
    save_slide_grade,
)


class _GradeEvents:
    """``saved(slide_id, grade)`` after any form saved a grade."""

    saved = Signal(str, object)


GRADES = _GradeEvents()


def save_grade_for_session(viewer: Any, session: Any, grade: SlideGrade) -> SlideGrade:
    """Save ``grade`` for the session's slide (via the cohort under review in the viewer when
    it holds the slide, else straight into ``slide_grade.json``) and emit ``GRADES.saved``."""
    cohort = viewer_state(viewer).cohort
    index = None
    if cohort is not None and cohort.results_root == session.results_root:
        index = next(
            (i for i, item in enumerate(cohort.items) if item.slide_id == session.slide_id), None
        )
    if index is not None:
        saved = cohort.set_grade(index, grade)
    else:
        saved = save_slide_grade(session.results_dir, session.slide_id, grade)
    GRADES.saved.emit(session.slide_id, saved)
    return saved


def _narrow(combo: QComboBox, characters: int = 10) -> QComboBox:
    """A combo box that may be narrower than its longest item (shown elided)."""
    combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    combo.setMinimumContentsLength(characters)
    return combo


def _row(*widgets: QWidget) -> QHBoxLayout:
    row = QHBoxLayout()
    row.setContentsMargins(0, 0, 0, 0)
    for widget in widgets:
        row.addWidget(widget, 1 if isinstance(widget, QComboBox | QLineEdit) else 0)
    return row


class SlideGradeForm(QWidget):
    """Nancy / activity / agreement / note of the viewer's current slide, and Save."""

    def __init__(self, viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self._session: Any = None
        self.title = QLabel("<b>Slide grade</b>")
        self.nancy_combo = QComboBox()
        self.nancy_combo.addItem("not graded", None)
        for grade, (name, definition) in NANCY_GRADES.items():
            self.nancy_combo.addItem(f"{grade} - {name}", grade)
            self.nancy_combo.setItemData(grade + 1, definition, 3)  # Qt.ToolTipRole
        self.definition_label = QLabel("")
        self.definition_label.setWordWrap(True)
        self.activity_combo = QComboBox()
        self.activity_combo.addItem("from the Nancy grade", "")
        for activity in ACTIVITIES:
            self.activity_combo.addItem(activity, activity)
        self.agreement_combo = QComboBox()
        self.agreement_combo.addItem("not said", "")
        for agreement in AGREEMENTS:
            self.agreement_combo.addItem(f"{agreement} with the model", agreement)
        self.model_label = QLabel("")
        self.note_edit = QLineEdit()
        self.note_edit.setPlaceholderText("note on the slide (optional)")
        self.save_button = QPushButton("Save grade")
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)

        # compact: five rows, so the grade shows beside a cohort table on a laptop screen
        for combo in (self.nancy_combo, self.activity_combo, self.agreement_combo):
            _narrow(combo)
        form = QFormLayout()
        form.setVerticalSpacing(3)
        form.addRow("Nancy index", self.nancy_combo)
        form.addRow(self.definition_label)
        form.addRow("Activity", _row(self.activity_combo, QLabel("Verdict"), self.agreement_combo))
        form.addRow("Note", _row(self.note_edit, self.save_button))
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(3)
        self.model_label.setToolTip("the model's call on this slide")
        title = _row(self.title, self.model_label)
        title.insertStretch(1)
        layout.addLayout(title)
        layout.addLayout(form)
        layout.addWidget(self.status_label)

        self.nancy_combo.currentIndexChanged.connect(self._show_definition)
        self.save_button.clicked.connect(self.save)
        GRADES.saved.connect(self._on_saved_elsewhere)
        self.show_session(None)

    # ------------------------------------------------------------------ showing
    def show_session(self, session: Any) -> None:
        """Show the saved grade of ``session``'s slide (a blank form without a slide)."""
        old = self._session
        if old is not None and old is not session:
            old.prediction_changed.disconnect(self._show_model_call)
        if session is not None and session is not old:
            session.prediction_changed.connect(self._show_model_call)
        self._session = session
        self.setEnabled(session is not None)
        grade = None
        if session is not None:
            try:
                grade = load_slide_grade(session.results_dir, session.slide_id)
            except Exception as error:  # a grade file of another slide: say so, keep going
                self.status_label.setText(str(error))
        self.show_grade(grade)
        self._show_model_call()

    def show_grade(self, grade: SlideGrade | None) -> None:
        grade = grade or SlideGrade()
        self.nancy_combo.setCurrentIndex(0 if grade.nancy is None else grade.nancy + 1)
        self.activity_combo.setCurrentIndex(max(self.activity_combo.findData(grade.activity), 0))
        agreement = self.agreement_combo.findData(grade.model_agreement)
        self.agreement_combo.setCurrentIndex(max(agreement, 0))
        self.note_edit.setText(grade.note)
        by = f" by {grade.reviewer}" if grade.reviewer else ""
        self.status_label.setText(
            f"saved {grade.updated_utc[:19].replace('T', ' ')} UTC{by}" if grade.updated_utc else ""
        )
        self._show_definition()

    def _show_definition(self, *_: Any) -> None:
        nancy = self.nancy_combo.currentData()
        if nancy is None:
            self.definition_label.setText("<i>choose a grade to see its definition</i>")
            return
        implied = activity_for_nancy(nancy)
        self.definition_label.setText(f"{NANCY_GRADES[nancy][1]} <i>({implied})</i>")

    def _show_model_call(self, *_: Any) -> None:
        session = self._session
        prediction = None if session is None else session.prediction
        if prediction is None:
            self.model_label.setText("not scored")
            return
        call = "active" if prediction.score >= 0.5 else "inactive"
        self.model_label.setText(f"{call} (score {prediction.score:.4f})")

    def _on_saved_elsewhere(self, slide_id: str, grade: Any) -> None:
        try:
            if self._session is not None and self._session.slide_id == slide_id:
                self.show_grade(grade)
        except RuntimeError:  # the Qt side of this form was deleted
            GRADES.saved.disconnect(self._on_saved_elsewhere)

    # ------------------------------------------------------------------ saving
    def grade(self) -> SlideGrade:
        """The grade as filled in."""
        return SlideGrade(
            nancy=self.nancy_combo.currentData(),
            activity=self.activity_combo.currentData() or "",
            model_agreement=self.agreement_combo.currentData() or "",
            note=self.note_edit.text(),
        )

    def save(self) -> SlideGrade | None:
        """Save the form's grade for the current slide, signed with the reviewer's name;
        returns it as saved."""
        if self._session is None:
            return None
        grade = replace(self.grade(), reviewer=reviewer_for_action(self.viewer))
        return save_grade_for_session(self.viewer, self._session, grade)
