"""The Review dock's form: verdict buttons, class and note; and the reviewer's name, shown
and edited in the dock's header (:class:`ReviewerField`: the one place to change it)."""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_imilia._napari.docks.review.parts import VERDICT_KEYS
from napari_imilia._napari.notify import notify
from napari_imilia._napari.reviewer import REVIEWER, set_reviewer
from napari_imilia.errors import ImiliaError
from napari_imilia.review import SUGGESTED_CLASSES, VERDICTS
from napari_imilia.review.reviewer import load_reviewer


class ReviewerField(QWidget):
    """The "Reviewer" field: the user's one reviewer identity (``review.reviewer``), saved when
    edited (:meth:`remember`), following changes made elsewhere (``REVIEWER.changed``)."""

    def __init__(self) -> None:
        super().__init__()
        self.edit = QLineEdit(load_reviewer())
        self.edit.setPlaceholderText("your name (asked at your first review)")
        self.edit.setToolTip(
            "Written with every verdict, region, note and slide grade, and in the reports"
        )
        layout = QFormLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addRow("Reviewer", self.edit)
        self.edit.editingFinished.connect(self.remember)
        REVIEWER.changed.connect(self._show)
        self.destroyed.connect(lambda *_: REVIEWER.changed.disconnect(self._show))

    def _show(self, name: str) -> None:
        try:
            if self.edit.text().strip() != name:
                self.edit.setText(name)
        except RuntimeError:  # the Qt side of this field was deleted
            REVIEWER.changed.disconnect(self._show)

    def remember(self) -> None:
        """Save the typed name when it differs from the saved one (an invalid name is said
        in a notification and the saved one shown again)."""
        name = self.edit.text().strip()
        if not name or name == load_reviewer():
            return
        try:
            set_reviewer(name)
        except (OSError, ImiliaError) as error:
            notify("warning", f"reviewer name not remembered: {error}")
            self.edit.setText(load_reviewer())


class ReviewForm(QWidget):
    """Verdict buttons and the class / note fields of one review.

    ``verdict_chosen(verdict)`` when a verdict button is clicked; ``fields_edited`` when the
    user finishes editing the class or the note.
    """

    verdict_chosen = Signal(str)
    fields_edited = Signal()
    #: Any change of the class or note text (typing included).
    fields_changed = Signal()

    def __init__(self) -> None:
        super().__init__()
        self.verdict_buttons: dict[str, QPushButton] = {}
        verdicts = QHBoxLayout()
        for verdict in VERDICTS:
            panel_key, _canvas_key = VERDICT_KEYS[verdict]
            button = QPushButton(f"{verdict.capitalize()} ({panel_key})")
            button.setCheckable(True)
            button.setToolTip(f"Record '{verdict}' (key {panel_key}, here or on the canvas)")
            button.clicked.connect(lambda _=False, v=verdict: self.verdict_chosen.emit(v))
            self.verdict_buttons[verdict] = button
            verdicts.addWidget(button)
        self.class_combo = QComboBox()
        self.class_combo.setEditable(True)
        self.class_combo.addItems(["", *SUGGESTED_CLASSES])
        self.class_combo.lineEdit().setPlaceholderText("your class (optional)")
        self.note_edit = QLineEdit()
        self.note_edit.setPlaceholderText("note (optional)")
        form = QFormLayout()
        form.addRow("Class", self.class_combo)
        form.addRow("Note", self.note_edit)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(verdicts)
        layout.addLayout(form)

        self.class_combo.activated.connect(lambda _=0: self.fields_edited.emit())
        self.class_combo.lineEdit().editingFinished.connect(self.fields_edited.emit)
        self.note_edit.editingFinished.connect(self.fields_edited.emit)
        self.class_combo.editTextChanged.connect(lambda _=None: self.fields_changed.emit())
        self.note_edit.textChanged.connect(lambda _=None: self.fields_changed.emit())

    def fields(self) -> dict[str, str]:
        """``reviewer_class`` and ``note`` as typed (class stripped)."""
        return {
            "reviewer_class": self.class_combo.currentText().strip(),
            "note": self.note_edit.text(),
        }

    def show_entry(self, entry: Any) -> None:
        """Check ``entry``'s verdict and show its class and note (None: all cleared)."""
        for verdict, button in self.verdict_buttons.items():
            button.setChecked(entry is not None and entry.verdict == verdict)
        self.class_combo.setEditText("" if entry is None else entry.reviewer_class)
        self.note_edit.setText("" if entry is None else entry.note)
