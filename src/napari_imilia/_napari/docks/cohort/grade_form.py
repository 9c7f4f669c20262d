"""Slide-level grading form: Nancy index (with each grade's definition), activity, agreement
with the model's call, note. Embedded in the Review and Cohort docks. A grade is signed with
the reviewer's one identity (``_napari.reviewer``; changed in the Review dock's header).

The form grades the viewer's current slide (its ``ReviewSession``) as the workspace's
reviewer (``review.reviewer.load_reviewer``; no name field of its own). What it shows comes
from :func:`napari_imilia.review.grading.grading_state`: the reader's committed grade of the
phase their next commit gets, or their draft. Committing appends a read to the reader's own
journal (through the cohort under review when it holds the slide), then asks the viewer's
state to re-check the blinding (a blinded study shows the model once the blind grade is in)
and announces it on :data:`GRADES`, so every other form and the cohort table refresh.

Nothing typed is lost: a change not committed is kept as the slide's draft
(``review.drafts``) shortly after typing, when the slide changes (Alt+N / Alt+P, another
row) and when the form closes; it is shown again with a cue.
"""

from __future__ import annotations

from typing import Any

from psygnal import Signal
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from napari_imilia._napari.docks.cohort.evidence import EvidencePanel
from napari_imilia._napari.docks.cohort.grade_status import (
    button_text,
    draft_text,
    phase_cue,
    saved_text,
)
from napari_imilia._napari.docks.text import plain_label
from napari_imilia._napari.notify import notify
from napari_imilia._napari.reviewer import reviewer_for_action
from napari_imilia._napari.state import viewer_state
from napari_imilia.errors import ImiliaError
from napari_imilia.review.drafts import save_draft
from napari_imilia.review.entry import utc_now
from napari_imilia.review.grade import (
    ACTIVITIES,
    AGREEMENTS,
    NANCY_GRADES,
    SlideGrade,
    activity_for_nancy,
)
from napari_imilia.review.grading import GradingState, commit_grade, grading_state
from napari_imilia.review.reviewer import load_reviewer

#: Milliseconds after the last edit before the draft is written.
DRAFT_DELAY_MS = 400


class _GradeEvents:
    """``saved(slide_id, read)`` after any form committed a grade."""

    saved = Signal(str, object)


GRADES = _GradeEvents()


def reader_name(viewer: Any) -> str:
    """The reader's name: the workspace's reviewer identity ('' when none is set yet).

    Asked once in a dialog when none is saved and the window is shown
    (:func:`~napari_imilia._napari.reviewer.reviewer_for_action`)."""
    return reviewer_for_action(viewer)


def save_grade_for_session(
    viewer: Any, session: Any, grade: SlideGrade, *, started_utc: str = ""
) -> Any:
    """Commit ``grade`` for the session's slide as the reader's read (via the cohort under
    review in the viewer when it holds the slide), re-check the blinding and emit
    ``GRADES.saved``; returns the read."""
    state = viewer_state(viewer)
    cohort, reader = state.cohort, reader_name(viewer)
    index = None
    if cohort is not None and cohort.results_root == session.results_root:
        index = next(
            (i for i, item in enumerate(cohort.items) if item.slide_id == session.slide_id), None
        )
    if index is not None:
        read = cohort.set_grade(index, grade, reader=reader, started_utc=started_utc)
    else:
        read = commit_grade(
            session.results_root, session.slide_id, reader, grade, started_utc=started_utc
        )
    if state.session is session:
        state.refresh_blinding()
    GRADES.saved.emit(session.slide_id, read)
    return read


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
    """Nancy / activity / agreement / note of the viewer's current slide, and Commit."""

    def __init__(self, viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self._session: Any = None
        self._grading: GradingState | None = None
        self._baseline = SlideGrade()  # what the fields showed before the reader typed
        self._dirty = False
        self._filling = False
        self._shown_utc = ""
        self._make_widgets()
        self._lay_out()
        self._draft_timer = QTimer(self)
        self._draft_timer.setSingleShot(True)
        self._draft_timer.setInterval(DRAFT_DELAY_MS)
        self._draft_timer.timeout.connect(self.keep_draft)
        for combo in (self.nancy_combo, self.activity_combo, self.agreement_combo):
            combo.currentIndexChanged.connect(self._on_edited)
        self.note_edit.textChanged.connect(self._on_edited)
        self.note_edit.editingFinished.connect(self.keep_draft)
        self.nancy_combo.currentIndexChanged.connect(self._show_definition)
        self.save_button.clicked.connect(self.save)
        self.evidence.edited.connect(self._on_edited)
        self.evidence.use_nancy.connect(lambda n: self.nancy_combo.setCurrentIndex(n + 1))
        GRADES.saved.connect(self._on_saved_elsewhere)
        self.show_session(None)

    def _make_widgets(self) -> None:
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
        self.model_label = plain_label("")
        self.note_edit = QLineEdit()
        self.note_edit.setPlaceholderText("note on the slide (optional)")
        self.phase_label = QLabel("")
        self.phase_label.setWordWrap(True)
        self.evidence = EvidencePanel(self.viewer)
        self.save_button = QPushButton("Save grade")
        self.status_label = plain_label("")
        self.status_label.setWordWrap(True)
        for label in (self.phase_label, self.status_label, self.model_label):
            label.setTextFormat(Qt.TextFormat.PlainText)  # names and notes are not markup

    def _lay_out(self) -> None:
        # compact: five rows, so the grade shows beside a cohort table on a laptop screen
        _narrow(self.nancy_combo)
        for combo in (self.activity_combo, self.agreement_combo):  # side by side in one row
            _narrow(combo, characters=6)
        form = QFormLayout()
        form.setVerticalSpacing(2)
        form.addRow("Nancy index", self.nancy_combo)
        form.addRow(self.definition_label)
        form.addRow("Activity", _row(self.activity_combo, QLabel("Verdict"), self.agreement_combo))
        form.addRow("Note", self.note_edit)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        self.model_label.setToolTip("the model's call on this slide")
        title = _row(self.title, self.model_label)
        title.insertStretch(1)
        layout.addLayout(title)
        layout.addWidget(self.phase_label)
        layout.addLayout(form)
        # the evidence's fold button sits beside Save (one row less on a laptop screen); what
        # it unfolds shows under them
        toggle = self.evidence.section.button
        toggle.setText("Items and evidence")
        toggle.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        bottom = _row(self.status_label, toggle, self.save_button)
        bottom.setStretch(0, 1)
        layout.addLayout(bottom)
        layout.addWidget(self.evidence)

    # ------------------------------------------------------------------ showing
    def show_session(self, session: Any) -> None:
        """Show the reader's grade (or draft) of ``session``'s slide; the slide left keeps
        what was typed as its draft."""
        old = self._session
        if old is not None and old is not session:
            self.keep_draft()
            old.prediction_changed.disconnect(self._show_model_call)
        if session is not None and session is not old:
            session.prediction_changed.connect(self._show_model_call)
            self._shown_utc = utc_now()
        self._session = session
        self.setEnabled(session is not None)
        self.reload()

    def reload(self) -> None:
        """Read the reader's grading of the slide again and show it (typing is dropped)."""
        session, self._grading = self._session, None
        grade, problem = None, ""
        if session is not None:
            try:
                self._grading = grading_state(
                    session.results_root, session.slide_id, load_reviewer()
                )
            except ImiliaError as error:  # a damaged study, a slide id outside the root
                problem = str(error)
        grading = self._grading
        if grading is not None:
            committed = grading.committed
            grade = None if committed is None else committed.grade
        self._baseline = grade or SlideGrade()
        draft = None if grading is None else grading.draft
        if draft is not None and draft.phase == grading.next_phase:
            grade = draft.grade
        self.show_grade(grade)
        self._dirty = False
        self.phase_label.setText(phase_cue(grading))
        self.phase_label.setVisible(bool(self.phase_label.text()))
        self.save_button.setText(button_text(grading))
        locked = grading is not None and grading.next_phase is None
        for widget in (self.nancy_combo, self.activity_combo, self.note_edit, self.save_button):
            widget.setEnabled(session is not None and not locked and not problem)
        self.evidence.set_editable(session is not None and not locked and not problem)
        self.evidence.show_session(session)
        self.status_label.setText(problem or draft_text(grading) or saved_text(grading))
        self._show_model_call()

    def show_grade(self, grade: SlideGrade | None) -> None:
        """Fill the fields with ``grade`` (blank for None); not an edit of the reader's."""
        grade = grade or SlideGrade()
        self._filling = True
        try:
            self.nancy_combo.setCurrentIndex(0 if grade.nancy is None else grade.nancy + 1)
            index = self.activity_combo.findData(grade.activity)
            self.activity_combo.setCurrentIndex(max(index, 0))
            agreement = self.agreement_combo.findData(grade.model_agreement)
            self.agreement_combo.setCurrentIndex(max(agreement, 0))
            self.note_edit.setText(grade.note)
            self.evidence.show_items(grade.items)
        finally:
            self._filling = False
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
        hidden = session is not None and bool(session.withheld_reason)
        self.agreement_combo.setEnabled(session is not None and not hidden)
        prediction = None if session is None else session.prediction
        if hidden:
            self.model_label.setText("hidden until you commit your grade")
        elif prediction is None:
            self.model_label.setText("not scored")
        else:
            call = "active" if prediction.score >= 0.5 else "inactive"
            self.model_label.setText(f"{call} (score {prediction.score:.4f})")

    def _on_saved_elsewhere(self, slide_id: str, _read: Any) -> None:
        try:
            if self._session is not None and self._session.slide_id == slide_id:
                self.reload()
        except RuntimeError:  # the Qt side of this form was deleted
            GRADES.saved.disconnect(self._on_saved_elsewhere)

    # ------------------------------------------------------------------ drafts
    def _on_edited(self, *_: Any) -> None:
        if self._filling or self._session is None:
            return
        self._dirty = True
        self._draft_timer.start()

    def keep_draft(self) -> None:
        """Keep what the reader typed and did not commit as the slide's draft (a form whose
        fields the reader did not touch writes nothing)."""
        self._draft_timer.stop()
        session, grading = self._session, self._grading
        if not self._dirty or session is None or grading is None or grading.next_phase is None:
            return
        grade = self.grade()
        if grade.same_content(self._baseline):
            grade = SlideGrade()  # back to what was committed: no draft
        try:
            save_draft(
                session.results_dir, session.slide_id, grading.reader, grade, grading.next_phase
            )
        except (ImiliaError, OSError) as error:
            notify("warning", f"the draft grade of {session.slide_id} was not kept: {error}")
            return
        self.status_label.setText("draft kept: not committed yet" if not grade.is_blank else "")

    def hideEvent(self, event: Any) -> None:
        self.keep_draft()
        super().hideEvent(event)

    def closeEvent(self, event: Any) -> None:
        self.keep_draft()
        super().closeEvent(event)

    # ------------------------------------------------------------------ committing
    def grade(self) -> SlideGrade:
        """The grade as filled in."""
        return SlideGrade(
            nancy=self.nancy_combo.currentData(),
            activity=self.activity_combo.currentData() or "",
            model_agreement=self.agreement_combo.currentData() or "",
            note=self.note_edit.text(),
            items=self.evidence.items(),
        )

    def save(self) -> Any:
        """Commit the form's grade for the current slide; returns the read (None when
        there is no slide or the grade was refused: the reason is shown)."""
        if self._session is None:
            return None
        self._draft_timer.stop()
        try:
            read = save_grade_for_session(
                self.viewer, self._session, self.grade(), started_utc=self._shown_utc
            )
        except ImiliaError as error:
            self.status_label.setText(f"not saved: {error}")
            notify("error", f"slide grade not saved: {error}")
            return None
        self._dirty = False
        return read
